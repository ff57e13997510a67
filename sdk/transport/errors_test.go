package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBrokerHostMissingFromCertificate: a broker certificate that does not name the host the client dialled
// is explained on the client side (the broker only sees an alert), with the names it does carry and the
// command that reissues it.
func TestBrokerHostMissingFromCertificate(t *testing.T) {
	p := newPKI(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "broker-1", OrganizationalUnit: []string{"broker"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"broker.example"}, IPAddresses: []net.IP{net.ParseIP("10.1.2.3")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() { // a TLS server that only does handshakes
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
	cfg := clientConfig(t, p, p.valid(t, "truck-1", "truck-1", "truck", false), "truck-1", "mqtts://"+ln.Addr().String())
	c := newConn(t, cfg)
	stop := running(t, c)
	st := waitState(t, c, "refused", func(s State) bool { return s.Err != nil })
	stop()
	for _, want := range []string{
		"the broker certificate is for broker.example, 10.1.2.3; you connected to 127.0.0.1",
		"waybill pki issue --role broker --host 127.0.0.1 broker-1",
	} {
		if !strings.Contains(st.Err.Error(), want) {
			t.Errorf("error %q\ndoes not say %q", st.Err, want)
		}
	}
}

// TestConnectionRefusedSaysWhy: nothing listening on the broker's port says so and what to check.
func TestConnectionRefusedSaysWhy(t *testing.T) {
	p := newPKI(t)
	url := "mqtts://127.0.0.1:" + strconv.Itoa(freePort(t))
	c := newConn(t, clientConfig(t, p, p.valid(t, "truck-1", "truck-1", "truck", false), "truck-1", url))
	stop := running(t, c)
	st := waitState(t, c, "refused", func(s State) bool { return s.Err != nil })
	stop()
	want := "broker " + url + ": connection refused — is Mosquitto running"
	if !strings.Contains(st.Err.Error(), want) || !strings.Contains(st.Err.Error(), "systemctl status mosquitto") {
		t.Fatalf("error %q\ndoes not say %q and the command to check", st.Err, want)
	}
}

// TestBrokerURLErrorsSayWhatToWrite: a URL without a scheme gets the corrected URL, and a plaintext URL
// names the settings a user can change (not only the Go field).
func TestBrokerURLErrorsSayWhatToWrite(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"127.0.0.1:29183", "write mqtts://127.0.0.1:29183"},
		{"broker.example:8883", "write mqtts://broker.example:8883"},
		{"mqtt://127.0.0.1:1883", "broker.allow_plaintext = true"},
		{"mqtt://127.0.0.1:1883", "--allow-plaintext"},
	} {
		_, err := New(Config{Brokers: []string{tc.url}, ClientID: "truck-1", CAFile: "ca.pem"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to say %q", tc.url, err, tc.want)
		}
	}
}
