package office_test

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	service "github.com/waybill-iot/waybill/sdk/dispatch/office"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// A client that stalls cannot hold a connection: a request body that never completes is cut at
// ReadTimeout, a kept-alive connection that sends nothing more at IdleTimeout, one that never finishes its
// headers at the header timeout.
func TestStalledClientsAreCut(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	officeCl := b.ClientFiles("office")
	st := engines(t)[0].open(t, officeCl)
	o := startOfficeConfig(t, b, officeCl, st, "", func(c *service.Config) {
		c.ReadTimeout, c.IdleTimeout = 500*time.Millisecond, 500*time.Millisecond
	})
	addr := strings.TrimPrefix(o.base, "http://")
	for _, c := range []struct{ name, send string }{
		{"a stalled body", "POST /api/orders HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + token +
			"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"truck\":"},
		{"idle after a request", "GET /healthz HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"},
		{"unfinished headers", "GET /healthz HTTP/1.1\r\nHost: " + addr + "\r\n"},
		{"nothing at all", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, c.send); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second)) // the test's own bound, far above the server's
			_, err = io.Copy(io.Discard, conn)                         // until the server closes the connection
			if took := time.Since(start); err != nil || took > 15*time.Second {
				t.Fatalf("the server kept the connection %v (%v); its timeouts are 0.5 s (10 s for headers)", took, err)
			}
		})
	}
}
