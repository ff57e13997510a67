package office_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	service "github.com/waybill-iot/waybill/sdk/dispatch/office"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// install writes data to path as a renewal tool does: a new file renamed over the old one.
func install(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// served is the serial number of the certificate a new TLS connection to addr gets.
func served(t *testing.T, addr string, ca *x509.Certificate) string {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("TLS to the office: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

// TestCertificateReload: with the certificate files configured, a renewed certificate renamed into place
// is served to new connections without a restart; a changed pair that does not load (a half-done renewal:
// the new certificate with the old key; garbage; an expired certificate; a key others can read) is logged
// and the certificate read before is served on, until the files are right. A second CA appended to the
// client CA file lets that CA's dispatch certificates in, likewise without a restart.
func TestCertificateReload(t *testing.T) {
	p, officeCl := officePKI(t)
	issue := func(name string, o pki.IssueOptions) (serial string) {
		e, err := p.Issue(pki.RoleBroker, name, o)
		if err != nil {
			t.Fatal(err)
		}
		return e.Serial
	}
	first, second, third := issue("api-1", pki.IssueOptions{}), issue("api-2", pki.IssueOptions{}), issue("api-3", pki.IssueOptions{})
	issue("api-old", pki.IssueOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	dir := t.TempDir()
	crt, key, caFile := filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key"), filepath.Join(dir, "ca.crt")
	put := func(name string) { // the pair of name, the key first as certbot writes
		install(t, key, readFile(t, p.KeyPath(name)), 0o600)
		install(t, crt, readFile(t, p.CertPath(name)), 0o644)
	}
	put("api-1")
	install(t, caFile, readFile(t, p.CAPath()), 0o644)
	// A pair that does not load at start fails New, naming the files.
	if _, err := service.New(service.Config{Store: openEmbedded(t, officeCl), Token: token, Listen: "127.0.0.1:0",
		TLSCertFile: crt, TLSKeyFile: filepath.Join(dir, "missing.key")}); err == nil || !strings.Contains(err.Error(), "missing.key") {
		t.Fatalf("New with a missing key: %v", err)
	}
	logs := &sdktest.SyncBuffer{}
	base := startBareOffice(t, officeCl, openEmbedded(t, officeCl), func(c *service.Config) {
		c.TLSCertFile, c.TLSKeyFile, c.ClientCAFile, c.CertCheck = crt, key, caFile, 20*time.Millisecond
		c.Logger = logger(logs)
	})
	addr := strings.TrimPrefix(base, "https://")
	ca := p.CACert()
	if got := served(t, addr, ca); got != first {
		t.Fatalf("serves %s, want the configured certificate %s", got, first)
	}
	waitServed := func(want, what string) {
		t.Helper()
		sdktest.WaitFor(t, 10*time.Second, what, func() bool { return served(t, addr, ca) == want })
	}
	put("api-2")
	waitServed(second, "the renewed certificate served")
	if !strings.Contains(logs.String(), "read again after a change") {
		t.Fatalf("the reload is not logged:\n%s", logs)
	}

	// Changes that do not load: the old certificate is served on and each is logged.
	bad := []struct {
		what string
		do   func()
	}{
		{"a new certificate with the old key", func() { install(t, crt, readFile(t, p.CertPath("api-3")), 0o644) }},
		{"garbage", func() { install(t, crt, []byte("not a certificate\n"), 0o644) }},
		{"an expired certificate", func() { put("api-old") }},
		{"a key others can read", func() {
			install(t, crt, readFile(t, p.CertPath("api-3")), 0o644)
			install(t, key, readFile(t, p.KeyPath("api-3")), 0o644)
		}},
	}
	for i, b := range bad {
		b.do()
		sdktest.WaitFor(t, 10*time.Second, "the failed reload logged: "+b.what, func() bool {
			if got := served(t, addr, ca); got != second {
				t.Fatalf("after %s: serves %s, want the old %s", b.what, got, second)
			}
			return strings.Count(logs.String(), "do not load") == i+1
		})
	}
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	waitServed(third, "the certificate served once its key is private")
	if n := strings.Count(logs.String(), "do not load"); n != len(bad) {
		t.Fatalf("%d failed reloads logged, want %d (once per change):\n%s", n, len(bad), logs)
	}
	code, metrics, err := call(t, tlsClient(t, ca, p, ""), "GET", base+"/metrics", "", "", token)
	if err != nil || code != 200 || !strings.Contains(metrics, "waybill_dispatch_tls_reload_errors_total 4\n") ||
		!strings.Contains(metrics, "waybill_dispatch_tls_certificate_expiry_seconds ") {
		t.Fatalf("metrics: %d %v\n%s", code, err, metrics)
	}

	// The client CA file: another fleet's dispatch certificate fails the handshake until its CA is added.
	other := sdktest.NewPKI(t)
	if _, err := other.Issue(pki.RoleDispatch, "operator-1", pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	pair, err := pki.LoadKeyPair(other.CertPath("operator-1"), other.KeyPath("operator-1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tryTLS(base, ca, &pair, "/api/orders"); err == nil {
		t.Fatal("another CA's certificate got in before its CA was added")
	}
	install(t, caFile, append(readFile(t, p.CAPath()), readFile(t, other.CAPath())...), 0o644)
	sdktest.WaitFor(t, 10*time.Second, "the added CA's dispatch certificate let in", func() bool {
		code, err := tryTLS(base, ca, &pair, "/api/orders")
		return err == nil && code == 200
	})
}

// tryTLS GETs path over a new HTTPS connection with the client certificate (nil: none) and no token.
func tryTLS(base string, ca *x509.Certificate, cert *tls.Certificate, path string) (int, error) {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	c := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: c}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(base + path)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
