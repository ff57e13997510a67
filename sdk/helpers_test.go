package sdk

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// The test PKI is built with crypto/x509 directly, following the identity contract of sdk/pki (CN = name,
// OU = role, clientAuth for trucks and dispatch), so these tests do not depend on sdk/pki's CA code.

// t0 is the tests' "now": certificates are valid around it and the verifier's clock starts there.
var t0 = time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)

type testCA struct {
	cert   *x509.Certificate
	key    crypto.Signer
	serial atomic.Int64
}

func newTestCA(tb testing.TB, cn string) *testCA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return newTestCAKey(tb, cn, key)
}

// newTestCAKey makes a CA with the given key: with an Ed25519 key from a fixed seed, the CA and every
// certificate it issues from fixed seeds are the same bytes in every process (fuzz workers).
func newTestCAKey(tb testing.TB, cn string, key crypto.Signer) *testCA {
	tb.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             t0.Add(-24 * time.Hour),
		NotAfter:              t0.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key}
	ca.serial.Store(1)
	return ca
}

type certOpts struct {
	ed25519   bool
	seed      byte // with ed25519: the key is derived from this seed byte (deterministic)
	notBefore time.Time
	notAfter  time.Time
	usage     []x509.ExtKeyUsage
}

// issue makes a certificate for name with role.
func (ca *testCA) issue(tb testing.TB, name string, role pki.Role, o certOpts) (*x509.Certificate, crypto.Signer) {
	tb.Helper()
	var key crypto.Signer
	var err error
	if o.ed25519 && o.seed != 0 {
		key = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{o.seed}, ed25519.SeedSize))
	} else if o.ed25519 {
		_, key, err = ed25519.GenerateKey(rand.Reader)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		tb.Fatal(err)
	}
	if o.notBefore.IsZero() {
		o.notBefore = t0.Add(-time.Hour)
	}
	if o.notAfter.IsZero() {
		o.notAfter = t0.Add(365 * 24 * time.Hour)
	}
	if o.usage == nil {
		o.usage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		if role == pki.RoleBroker {
			o.usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)),
		Subject:      pkix.Name{CommonName: name, OrganizationalUnit: []string{string(role)}},
		NotBefore:    o.notBefore,
		NotAfter:     o.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  o.usage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return cert, key
}

// crl returns a CRL revoking certs.
func (ca *testCA) crl(tb testing.TB, certs ...*x509.Certificate) *x509.RevocationList {
	tb.Helper()
	var entries []x509.RevocationListEntry
	for _, c := range certs {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: t0})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(2), ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(30 * 24 * time.Hour),
		RevokedCertificateEntries: entries,
	}, ca.cert, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		tb.Fatal(err)
	}
	return crl
}

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func (ca *testCA) signer(tb testing.TB, name string, role pki.Role, o certOpts, now func() time.Time) *Signer {
	tb.Helper()
	cert, key := ca.issue(tb, name, role, o)
	s, err := NewSigner(SignerConfig{Certificate: cert, Key: key, Clock: now})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// fleet is a CA, a dispatch signer, two truck signers and a verifier, all on one test clock.
type fleet struct {
	ca       *testCA
	clk      *clock
	dispatch *Signer
	truck    *Signer // truck-0001
	truck2   *Signer // truck-0002
	v        *Verifier
}

func newFleet(tb testing.TB, ed bool) *fleet {
	tb.Helper()
	f := &fleet{ca: newTestCA(tb, "fleet-ca"), clk: newClock(t0)}
	o := certOpts{ed25519: ed}
	f.dispatch = f.ca.signer(tb, "dispatch-1", pki.RoleDispatch, o, f.clk.Now)
	f.truck = f.ca.signer(tb, "truck-0001", pki.RoleTruck, o, f.clk.Now)
	f.truck2 = f.ca.signer(tb, "truck-0002", pki.RoleTruck, o, f.clk.Now)
	f.v = f.verifier(tb, VerifierConfig{})
	return f
}

// verifier returns a new verifier for the fleet's CA and clock, knowing the trucks' certificates.
func (f *fleet) verifier(tb testing.TB, cfg VerifierConfig) *Verifier {
	tb.Helper()
	cfg.CA = []*x509.Certificate{f.ca.cert}
	if cfg.Clock == nil {
		cfg.Clock = f.clk.Now
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	for _, s := range []*Signer{f.truck, f.truck2} {
		if err := v.AddCertificate(s.Certificate()); err != nil {
			tb.Fatal(err)
		}
	}
	return v
}

func testOrder(id string, rev uint32, truck string) *Order {
	return &Order{
		ID: id, Revision: rev, Truck: truck, Created: t0, Expires: t0.Add(48 * time.Hour),
		Recipient: "Ada Lovelace", Address: "Unter den Linden 1, 10117 Berlin",
		Lat: 52.5170365, Lon: 13.3888599, RadiusM: 150, Notes: "Ring twice; parcel is fragile",
	}
}

func testEvent(kind EventKind, recordSeq uint64) *Event {
	return &Event{
		Kind: kind, Epoch: Epoch{1, 2, 3, 4, 5, 6, 7, 8}, RecordSeq: recordSeq, Time: t0,
		OrderID: "ord-42", Revision: 1, Via: ViaButton,
		Fix: &Fix{Time: t0, Lat: 52.5170001, Lon: 13.3888002, Alt: 41.3, Speed: 0, Mode: 3, Sats: 11, HDOP: 0.9,
			Has: FixAlt | FixSpeed | FixSats | FixHDOP},
	}
}

// top builds a topic under the default prefix.
func top(tb testing.TB, k Kind, truck string, order ...string) string {
	tb.Helper()
	tp := Topic{Truck: truck, Kind: k}
	if len(order) > 0 {
		tp.Order = order[0]
	}
	s, err := Topics{}.Build(tp)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
