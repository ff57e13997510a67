package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// check names the broker certificate's hosts and the command that adds the one dialled, instead of
// "see the broker's log" (the broker only sees a TLS alert).
func TestCheckBrokerHostMissingFromCertificate(t *testing.T) {
	p := sdktest.NewPKI(t, "truck-0001")
	caKey, err := pki.LoadPrivateKey(filepath.Join(p.Dir(), pki.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "mqtt", OrganizationalUnit: []string{"broker"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"mqtt.fleet.example"}, IPAddresses: []net.IP{net.ParseIP("10.1.2.3")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CACert(), &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() { // handshakes only
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	pair, err := pki.LoadKeyPair(p.CertPath("truck-0001"), p.KeyPath("truck-0001"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.CACert())
	r := probeBroker(context.Background(), "mqtts://"+ln.Addr().String(), roots, pair, time.Now(), 5*time.Second)
	if r.Severity != Fail {
		t.Fatalf("%+v: want a failure", r)
	}
	for _, want := range []string{"mqtt.fleet.example, 10.1.2.3, not 127.0.0.1", "waybill pki issue --role broker --host 127.0.0.1 mqtt"} {
		if !strings.Contains(r.Fix, want) {
			t.Errorf("fix %q does not say %q", r.Fix, want)
		}
	}
}
