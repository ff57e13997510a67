package devbroker_test

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/devbroker"
	"github.com/waybill-iot/waybill/sdk/pki"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start runs a broker on a free port with clock now and returns its address; it stops at cleanup.
func start(t *testing.T, p *pki.PKI, now func() time.Time) string {
	t.Helper()
	cfg, err := devbroker.FromPKI(p, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr, cfg.Now = "127.0.0.1:0", now
	b, err := devbroker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return b.Addr().String()
}

// handshake completes a TLS handshake and one read, where a TLS 1.3 server reports a refused client
// certificate; a refusal is an error, an accepted connection times out waiting for MQTT data.
func handshake(t *testing.T, p *pki.PKI, addr, name string) error {
	t.Helper()
	pair, err := pki.LoadKeyPair(p.CertPath(name), p.KeyPath(name))
	if err != nil {
		t.Fatal(err)
	}
	roots, _ := pki.LoadCertPool(p.CAPath())
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "localhost"})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
		return nil
	}
	return err
}

func newPKI(t *testing.T, now func() time.Time) *pki.PKI {
	t.Helper()
	p, err := pki.Init(pki.Config{Dir: filepath.Join(t.TempDir(), "pki"), Now: now}, pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"mqtt", "truck-1", "truck-2"} {
		role := pki.RoleTruck
		if n == "mqtt" {
			role = pki.RoleBroker
		}
		if _, err := p.Issue(role, n, pki.IssueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestCRLReloadedWithoutRestart(t *testing.T) {
	p := newPKI(t, nil)
	addr := start(t, p, time.Now)
	if err := handshake(t, p, addr, "truck-1"); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	if _, err := p.Revoke("truck-1"); err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, p, addr, "truck-1"); err == nil {
		t.Fatal("revoked certificate accepted")
	}
	if err := handshake(t, p, addr, "truck-2"); err != nil {
		t.Fatalf("other truck after revocation: %v", err)
	}
}

// A stale CRL locks every client out, as in Mosquitto, so the problem shows in development too.
func TestStaleCRLRefusesEveryone(t *testing.T) {
	p := newPKI(t, nil)
	crl, err := p.CRL()
	if err != nil {
		t.Fatal(err)
	}
	later := func() time.Time { return crl.NextUpdate.Add(time.Hour) }
	addr := start(t, p, later)
	if err := handshake(t, p, addr, "truck-1"); err == nil {
		t.Fatal("accepted a client with a stale CRL")
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	p := newPKI(t, nil)
	cfg, err := devbroker.FromPKI(p, "")
	if err != nil {
		t.Fatal(err)
	}
	bad := cfg
	bad.CertFile = p.CertPath("truck-1") // a client certificate cannot serve
	bad.KeyFile = p.KeyPath("truck-1")
	if _, err := devbroker.New(bad); err == nil {
		t.Error("truck certificate accepted as the broker's")
	}
	bad = cfg
	bad.CRLFile = ""
	if _, err := devbroker.New(bad); err == nil {
		t.Error("missing CRL accepted")
	}
}
