package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// startLocalAgent runs an agent (development broker, simulated GPS) with tweak applied to its configuration.
func startLocalAgent(t *testing.T, tweak func(*Config)) *Agent {
	t.Helper()
	b := sdktest.StartDevBroker(t, sdktest.Options{Dispatch: []string{"office"}})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	dir := t.TempDir()
	dev := startSim(t, ctx, &wg, 1, 5)
	cfg, err := LoadConfig(writeConfig(t, dir, b, b.Truck("truck-0001"), dev, ""), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	tweak(&cfg)
	ready := make(chan *Agent, 1)
	result := make(chan error, 1)
	go func() {
		result <- Run(ctx, cfg, Options{Version: "test", Logger: testLogger(t), Ready: func(a *Agent) { ready <- a }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-result:
			if err != nil {
				t.Errorf("agent stopped with %v", err)
			}
		case <-time.After(StopTimeout + 5*time.Second):
			t.Error("agent did not stop")
		}
		wg.Wait()
	})
	select {
	case a := <-ready:
		return a
	case err := <-result:
		t.Fatalf("agent did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("agent not ready within 20 s")
	}
	return nil
}

// TestHealthzMetricsGuarded: /healthz and /metrics refuse a missing or wrong token when one is set (401,
// connection closed), take the Bearer header or the page's cookie, and without a token refuse a foreign Host.
func TestHealthzMetricsGuarded(t *testing.T) {
	const token = "s3cret-token"
	a := startLocalAgent(t, func(c *Config) { c.HTTP.Token = token })
	base := "http://" + a.HTTPAddr()
	do := func(path string, hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		if r := do(path); r.StatusCode != 401 || !r.Close {
			t.Errorf("%s without token: %d, close %v; want 401 and the connection closed", path, r.StatusCode, r.Close)
		}
		if r := do(path, "Authorization", "Bearer wrong"); r.StatusCode != 401 || !r.Close {
			t.Errorf("%s with a wrong token: %d, close %v", path, r.StatusCode, r.Close)
		}
		ok := func(code int) bool { return code == 200 || path == "/healthz" && code == 503 } // 503: no GPS, no link yet
		if r := do(path, "Authorization", "Bearer "+token); !ok(r.StatusCode) {
			t.Errorf("%s with the Bearer token: %d", path, r.StatusCode)
		}
		if r := do(path, "Cookie", "waybill_token="+token); !ok(r.StatusCode) {
			t.Errorf("%s with the page's cookie: %d", path, r.StatusCode)
		}
	}
	// A 401 closes the connection on the server's side too.
	c, err := net.Dial("tcp", a.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("the connection was not closed after the 401: %v", err)
	}
}

// TestHealthzMetricsHostCheck: without a token, /healthz and /metrics answer loopback names only (DNS
// rebinding), as the driver page does.
func TestHealthzMetricsHostCheck(t *testing.T) {
	a := startLocalAgent(t, func(c *Config) {})
	for _, path := range []string{"/healthz", "/metrics"} {
		for host, want := range map[string]int{"evil.example": 403, "evil.example:8080": 403, "192.168.1.5": 403,
			"localhost:8080": 200, "127.0.0.1": 200} {
			req, _ := http.NewRequest("GET", "http://"+a.HTTPAddr()+path, nil)
			req.Host = host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want && !(want == 200 && resp.StatusCode == 503) { // 503: healthz with no GPS and no link
				t.Errorf("%s with Host %s: %d, want %d", path, host, resp.StatusCode, want)
			}
		}
	}
}

func openFiles(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestListenerFlood floods the local listener with 200 connections (idle keep-alive and silent ones,
// /events streams, stalled request bodies) and checks the caps hold: open connections never above
// max_conns, streams never above max_streams (the oldest are closed with a clear event), goroutines and open
// files bounded, the server answers a normal request, and idle and stalled connections are closed after
// the (short) timeouts.
func TestListenerFlood(t *testing.T) {
	const maxConns, maxStreams = 20, 4
	a := startLocalAgent(t, func(c *Config) {
		c.HTTP.MaxConns, c.HTTP.MaxStreams = maxConns, maxStreams
		c.HTTP.ReadTimeout, c.HTTP.WriteTimeout, c.HTTP.IdleTimeout = time.Second, 3*time.Second, time.Second
	})
	addr := a.HTTPAddr()
	baseG, baseF := runtime.NumGoroutine(), openFiles(t)

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		return c
	}
	normal := func() (int, error) {
		cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := cl.Get("http://" + addr + "/api/orders")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	checkCaps := func(when string) {
		t.Helper()
		st := a.conns.stats()
		if st.Peak > maxConns || st.Open > maxConns {
			t.Fatalf("%s: %+v: more than %d connections", when, st, maxConns)
		}
		if n := a.driver.Streams(); n > maxStreams {
			t.Fatalf("%s: %d streams, cap %d", when, n, maxStreams)
		}
		t.Logf("%s: connections %+v, streams %d, goroutines +%d, open files +%d", when, st, a.driver.Streams(),
			runtime.NumGoroutine()-baseG, openFiles(t)-baseF)
	}

	// 1. 80 idle keep-alive connections (one answered request each) and 40 that send nothing.
	for range 80 {
		c := dial()
		fmt.Fprintf(c, "GET /api/orders HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		} // else: taken over by a later one already; fine
	}
	for range 40 {
		dial()
	}
	checkCaps("idle and silent flood")
	// Idle and silent connections make room: a normal request is answered at once.
	if code, err := normal(); err != nil || code != 200 {
		t.Fatalf("normal request during the idle flood: %d %v", code, err)
	}

	// 2. 40 event streams: the oldest are closed, each told why.
	var streams []*bufio.Reader
	for range 40 {
		c := dial()
		fmt.Fprintf(c, "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		streams = append(streams, bufio.NewReader(c))
		time.Sleep(5 * time.Millisecond) // keep the order of arrival
	}
	streamsOpened := time.Now()
	checkCaps("stream flood")
	sdktest.WaitFor(t, 10*time.Second, "streams at the cap", func() bool { return a.driver.Streams() == maxStreams })
	// The first stream was accepted and then closed for a newer one, with a clear event.
	first := streams[0]
	conns[len(conns)-40].SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, _ := io.ReadAll(first)
	if !strings.Contains(string(rest), "event: closed") || !strings.Contains(string(rest), "too_many_streams") ||
		!strings.Contains(string(rest), "retry: 30000") {
		t.Fatalf("the oldest stream ended without the closed event:\n%s", rest)
	}

	// 3. 40 stalled request bodies.
	for range 40 {
		c := dial()
		fmt.Fprintf(c, "POST /api/orders/x/delivered HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"+
			"Content-Length: 1000\r\n\r\n{\"via\":")
	}
	checkCaps("stalled-body flood")
	if g, f := runtime.NumGoroutine()-baseG, openFiles(t)-baseF; g > 4*maxConns+20 {
		t.Fatalf("%d goroutines more than before the flood (%d open files)", g, f)
	}

	// After the timeouts: idle, silent and stalled connections are closed by the server; only the
	// streams at the cap stay open; a normal request is answered.
	sdktest.WaitFor(t, 15*time.Second, "flood connections closed", func() bool {
		st := a.conns.stats()
		return st.Open <= maxStreams
	})
	// The streams outlive the write timeout (3 s) too.
	time.Sleep(time.Until(streamsOpened.Add(4 * time.Second)))
	var open int
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := io.Copy(io.Discard, c); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				open++
				continue
			}
		}
		c.Close() // closed by the server: free our end too
	}
	if open != maxStreams || a.driver.Streams() != maxStreams {
		t.Fatalf("%d flood connections and %d streams open after the timeouts; want only the %d streams, which "+
			"the read and write timeouts must not end", open, a.driver.Streams(), maxStreams)
	}
	if code, err := normal(); err != nil || code != 200 {
		t.Fatalf("normal request after the flood: %d %v", code, err)
	}
	checkCaps("after the timeouts")
	if f := openFiles(t) - baseF; f > 2*maxStreams+10 {
		t.Fatalf("%d more open files than before the flood", f)
	}
}
