package office_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/dispatch"
	service "github.com/waybill-iot/waybill/sdk/dispatch/office"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/embedded"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// startTLSOffice runs a service with HTTPS and the fleet CA as ClientCAs (the broker is unreachable: the
// API does not need it). token may be empty.
func startTLSOffice(t *testing.T, p *pki.PKI, tok string, crl func() *x509.RevocationList) string {
	t.Helper()
	office := sdktest.Client{Name: "office", CAFile: p.CAPath(), CertFile: p.CertPath("office"), KeyFile: p.KeyPath("office")}
	cert, key := office.CertKey(t)
	st, err := embedded.Open(embedded.Options{Dir: t.TempDir(), Outbox: dispatch.OutboxConfig{Certificate: cert, Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the service stopped: cleanups run last in, first out
	server, err := pki.LoadKeyPair(p.CertPath("office-api"), p.KeyPath("office-api"))
	if err != nil {
		t.Fatal(err)
	}
	return startBareOffice(t, office, st, func(c *service.Config) {
		c.Token, c.ClientCAs, c.ClientCRL = tok, []*x509.Certificate{p.CACert()}, crl
		c.TLS = &tls.Config{Certificates: []tls.Certificate{server}}
	})
}

// client is an HTTPS client trusting the fleet CA, presenting the named certificate of pk ("" none).
func tlsClient(t *testing.T, ca *x509.Certificate, pk *pki.PKI, name string) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	c := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	if name != "" {
		pair, err := pki.LoadKeyPair(pk.CertPath(name), pk.KeyPath(name))
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	tr := &http.Transport{TLSClientConfig: c}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func call(t *testing.T, c *http.Client, method, url, ctype, body, bearer string) (int, string, error) {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// TestAPIClientCertificates: with HTTPS and the fleet CA as client CA, a dispatch certificate authenticates
// the API (GET, and a JSON POST), a truck's certificate, a revoked one and one of another CA are refused,
// no certificate needs the token (which keeps working), and without a token a certificate is the only way
// in while the tracking pages stay public.
func TestAPIClientCertificates(t *testing.T) {
	p := sdktest.NewPKI(t, "truck-1")
	for _, id := range []struct {
		role pki.Role
		name string
	}{{pki.RoleDispatch, "office"}, {pki.RoleDispatch, "operator-1"}, {pki.RoleDispatch, "operator-2"},
		{pki.RoleBroker, "office-api"}} {
		if _, err := p.Issue(id.role, id.name, pki.IssueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Revoke("operator-2"); err != nil {
		t.Fatal(err)
	}
	crl, err := p.CRL()
	if err != nil {
		t.Fatal(err)
	}
	other := sdktest.NewPKI(t) // another fleet: its dispatch certificate must not get in
	if _, err := other.Issue(pki.RoleDispatch, "operator-1", pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	base := startTLSOffice(t, p, token, func() *x509.RevocationList { return crl })
	ca := p.CACert()
	order := `{"truck":"truck-1","id":"o-1","address":"Quay","lat":51.5,"lon":-0.1,"radius_m":80}`

	good := tlsClient(t, ca, p, "operator-1")
	if code, body, err := call(t, good, "GET", base+"/api/orders", "", "", ""); err != nil || code != 200 {
		t.Fatalf("dispatch certificate: %d %v %s", code, err, body)
	}
	if code, body, err := call(t, good, "POST", base+"/api/orders", "application/json", order, ""); err != nil || code != 201 {
		t.Fatalf("dispatch certificate, create: %d %v %s", code, err, body)
	}
	// A browser sends its certificate with cross-site requests too: a form's POST is not JSON.
	if code, body, _ := call(t, good, "POST", base+"/api/orders", "text/plain", order, ""); code != 403 ||
		!strings.Contains(body, "application/json") {
		t.Fatalf("dispatch certificate, a form's POST: %d %s", code, body)
	}
	if code, body, _ := call(t, tlsClient(t, ca, p, "truck-1"), "GET", base+"/api/orders", "", "", ""); code != 403 ||
		!strings.Contains(body, "role truck") {
		t.Fatalf("truck certificate: %d %s", code, body)
	}
	if code, body, _ := call(t, tlsClient(t, ca, p, "operator-2"), "GET", base+"/api/orders", "", "", ""); code != 403 ||
		!strings.Contains(body, "revoked") {
		t.Fatalf("revoked certificate: %d %s", code, body)
	}
	none := tlsClient(t, ca, p, "")
	if code, body, _ := call(t, none, "GET", base+"/api/orders", "", "", ""); code != 401 {
		t.Fatalf("no certificate, no token: %d %s", code, body)
	}
	if code, body, err := call(t, none, "GET", base+"/api/orders", "", "", token); err != nil || code != 200 {
		t.Fatalf("no certificate, the token: %d %v %s", code, err, body)
	}
	code, body, err := call(t, tlsClient(t, ca, other, "operator-1"), "GET", base+"/api/orders", "", "", "")
	if err == nil {
		t.Fatalf("a certificate of another CA: %d %s, want the handshake refused", code, body)
	}
	t.Logf("another CA's certificate: %v", err)

	// Certificates only: no token, no sign-in with an empty one.
	base = startTLSOffice(t, p, "", nil)
	if code, body, _ := call(t, none, "GET", base+"/api/orders", "", "", ""); code != 401 || !strings.Contains(body, "client certificate") {
		t.Fatalf("certificates only, none given: %d %s", code, body)
	}
	if code, body, err := call(t, good, "GET", base+"/api/orders", "", "", ""); err != nil || code != 200 {
		t.Fatalf("certificates only, a dispatch certificate: %d %v %s", code, err, body)
	}
	noRedirect := *none
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noRedirect.Post(base+"/login", "application/x-www-form-urlencoded", bytes.NewBufferString("token="))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(resp.Cookies()) != 0 || !strings.Contains(resp.Header.Get("Location"), "failed") {
		t.Fatalf("sign-in with an empty token: cookies %v, to %s", resp.Cookies(), resp.Header.Get("Location"))
	}
	if code, _, err := call(t, none, "GET", base+"/t/AAAAAAAAAAAAAAAAAAAAAA/status", "", "", ""); err != nil || code != 404 {
		t.Fatalf("a tracking link without a certificate: %d %v, want 404 (public, unknown token)", code, err)
	}
}
