package transport

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCRL writes a PEM CRL signed by signer (the CA unless given) revoking serials.
func (p *testPKI) writeCRL(t testing.TB, name string, signer *testPKI, serials ...*big.Int) string {
	t.Helper()
	if signer == nil {
		signer = p
	}
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: entries,
	}, signer.ca, signer.caKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(p.dir, name)
	writePEM(t, path, "X509 CRL", der)
	return path
}

// TestCRLRefusesRevokedBroker: the client checks the broker's certificate against the fleet CRL.
func TestCRLRefusesRevokedBroker(t *testing.T) {
	p := newPKI(t)
	brokerID := p.valid(t, "broker", "broker", "broker", true)
	b := startMosquitto(t, p, brokerOpts{serverCert: &brokerID})
	id := p.valid(t, "truck-1", "truck-1", "truck", false)

	for _, tc := range []struct {
		name, want string
		crl        func() string
	}{
		{"revoked", "revoked", func() string { return p.writeCRL(t, "revoked.crl", nil, brokerID.serial) }},
		{"foreign signer", "not signed", func() string { return p.writeCRL(t, "foreign.crl", newPKI(t)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clientConfig(t, p, id, "truck-1", b.url())
			cfg.CRLFile = tc.crl()
			c := newConn(t, cfg)
			stop := running(t, c)
			st := waitState(t, c, "refused", func(s State) bool { return s.Err != nil || s.Connected })
			if st.Connected || !strings.Contains(st.Err.Error(), tc.want) {
				t.Fatalf("state %+v, want refused with %q", st, tc.want)
			}
			stop()
		})
	}
	// A CRL that revokes someone else lets the broker through.
	cfg := clientConfig(t, p, id, "truck-1", b.url())
	cfg.CRLFile = p.writeCRL(t, "other.crl", nil, big.NewInt(99999))
	c := newConn(t, cfg)
	running(t, c)
	waitUp(t, c)
}

// TestGetCertificateCalledPerHandshake: a certificate from a function (a hardware key, a secrets store).
func TestGetCertificateCalledPerHandshake(t *testing.T) {
	p := newPKI(t)
	b := startMosquitto(t, p, brokerOpts{})
	proxy := startProxy(t, b.addr())
	id := p.valid(t, "truck-1", "truck-1", "truck", false)
	calls := make(chan struct{}, 16)
	cfg := clientConfig(t, p, id, "truck-1", "mqtts://"+proxy.Addr())
	cfg.CertFile, cfg.KeyFile = "", ""
	cfg.GetCertificate = func(ctx context.Context) (*tls.Certificate, error) {
		calls <- struct{}{}
		c, err := tls.LoadX509KeyPair(id.certFile, id.keyFile)
		return &c, err
	}
	c := newConn(t, cfg)
	running(t, c)
	st := waitState(t, c, "connected", func(s State) bool { return s.Connected })
	if st.Info.CertSerial != id.serial.String() {
		t.Fatalf("serial %s, want %s", st.Info.CertSerial, id.serial)
	}
	proxy.DropAll()
	waitState(t, c, "reconnected", func(s State) bool { return s.Connected })
	if n := len(calls); n < 2 {
		t.Fatalf("GetCertificate called %d times for 2 connections", n)
	}
}

// TestStopBoundedOnBlackHole: Run returns promptly even when the DISCONNECT cannot get through.
func TestStopBoundedOnBlackHole(t *testing.T) {
	p := newPKI(t)
	b := startMosquitto(t, p, brokerOpts{})
	proxy := startProxy(t, b.addr())
	cfg := clientConfig(t, p, p.valid(t, "truck-1", "truck-1", "truck", false), "truck-1", "mqtts://"+proxy.Addr())
	cfg.DisconnectTimeout = 500 * time.Millisecond
	c := newConn(t, cfg)
	stop := running(t, c) // fails the test if Run does not return within 15 s
	waitUp(t, c)
	proxy.SetBlackHole(true)
	stop()
	if st := c.Current(); !st.Closed || st.Connected {
		t.Fatalf("state after Run returned: %+v", st)
	}
	if err := c.Wait(context.Background()); err != ErrClosed {
		t.Fatalf("Wait after Run: %v, want ErrClosed", err)
	}
	if err := c.Publish(context.Background(), "fleet/trucks/truck-1/telemetry", nil, PublishOptions{QoS: 1}); err != ErrClosed {
		t.Fatalf("Publish after Run: %v, want ErrClosed", err)
	}
}
