package sdk

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"
)

// crlDER returns a CRL of ca revoking certs, with the given number and this-update (crypto/x509 always
// writes a CRL Number: TestCRLNewer covers lists without one).
func (ca *testCA) crlDER(tb testing.TB, number *big.Int, thisUpdate time.Time, certs ...*x509.Certificate) []byte {
	tb.Helper()
	var entries []x509.RevocationListEntry
	for _, c := range certs {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: thisUpdate})
	}
	tmpl := &x509.RevocationList{Number: number, ThisUpdate: thisUpdate, NextUpdate: thisUpdate.Add(30 * 24 * time.Hour),
		RevokedCertificateEntries: entries}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

func crlPEM(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}) }

// telemetryOf signs a telemetry message of s and verifies it with v.
func telemetryOf(t *testing.T, v *Verifier, s *Signer) error {
	t.Helper()
	tel, err := s.SignTelemetry(&Telemetry{Fixes: drive(2, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(ctx, top(t, KindTelemetry, s.Identity().Name), tel)
	return err
}

func wantCRL(t *testing.T, v *Verifier, number int64, revoked int) {
	t.Helper()
	i := v.CRLInfo()
	if !i.Loaded || i.Number == nil || i.Number.Int64() != number || i.Revoked != revoked {
		t.Fatalf("CRL in use: %v, want #%d with %d revoked", i, number, revoked)
	}
}

// TestUpdateCRLNewestWins: the verifier applies a newer CRL at once, and ignores an equal or older one, so
// an old retained message cannot bring a revoked certificate back.
func TestUpdateCRLNewestWins(t *testing.T) {
	f := newFleet(t, false)
	v := f.v
	if i := v.CRLInfo(); i.Loaded || i.String() != "none" {
		t.Fatalf("a new verifier without CRL reports %+v", i)
	}
	if err := telemetryOf(t, v, f.truck); err != nil {
		t.Fatal(err)
	}
	n := func(i int64) *big.Int { return big.NewInt(i) }
	at := t0.Add(-time.Hour)

	up, err := v.UpdateCRL(f.ca.crlDER(t, n(2), at, f.truck.Certificate()))
	if !up || err != nil {
		t.Fatalf("CRL #2: updated %v, %v", up, err)
	}
	wantCRL(t, v, 2, 1)
	wantReason(t, "revoked by CRL #2", telemetryOf(t, v, f.truck), ReasonRevoked)

	for _, c := range []struct {
		name string
		der  []byte
	}{
		{"older #1, empty", f.ca.crlDER(t, n(1), at.Add(time.Hour))},
		{"same #2, empty", f.ca.crlDER(t, n(2), at.Add(time.Hour))},
		{"same #2 again", f.ca.crlDER(t, n(2), at, f.truck.Certificate())},
	} {
		up, err := v.UpdateCRL(c.der)
		if up || err != nil {
			t.Fatalf("%s: updated %v, %v; want ignored without error", c.name, up, err)
		}
		wantCRL(t, v, 2, 1)
		wantReason(t, c.name+": still revoked", telemetryOf(t, v, f.truck), ReasonRevoked)
	}
	if err := telemetryOf(t, v, f.truck2); err != nil {
		t.Fatalf("truck2 before CRL #3: %v", err)
	}

	// PEM is accepted too; a newer list applies to certificates already known.
	up, err = v.UpdateCRL(crlPEM(f.ca.crlDER(t, n(3), at.Add(2*time.Hour), f.truck.Certificate(), f.truck2.Certificate())))
	if !up || err != nil {
		t.Fatalf("CRL #3 (PEM): updated %v, %v", up, err)
	}
	wantCRL(t, v, 3, 2)
	wantReason(t, "truck2 revoked by CRL #3", telemetryOf(t, v, f.truck2), ReasonRevoked)
	i := v.CRLInfo()
	if !i.ThisUpdate.Equal(at.Add(2*time.Hour)) || !i.NextUpdate.Equal(at.Add(2*time.Hour+30*24*time.Hour)) {
		t.Fatalf("CRLInfo dates: %+v", i)
	}
	if i.String() != "#3 of 2026-03-02T10:30:00Z, 2 revoked" {
		t.Fatalf("CRLInfo.String = %q", i.String())
	}
	i.Number.SetInt64(99) // the caller's copy
	wantCRL(t, v, 3, 2)

	// SetCRL still replaces whatever the number (the operator's explicit choice).
	if err := v.SetCRL(f.ca.crl(t)); err != nil {
		t.Fatal(err)
	}
	wantCRL(t, v, 2, 0)
}

// TestUpdateCRLRefuses: bytes that are not a fleet CRL return a clear error wrapping ErrBadCRL and leave the
// CRL in use as it was.
func TestUpdateCRLRefuses(t *testing.T) {
	f := newFleet(t, false)
	good := f.ca.crlDER(t, big.NewInt(5), t0, f.truck.Certificate())
	if _, err := f.v.UpdateCRL(good); err != nil {
		t.Fatal(err)
	}
	foreign := newTestCA(t, "other-fleet")
	truncated := good[:len(good)-10]
	flipped := bytes.Clone(good)
	flipped[len(flipped)-5] ^= 0xff // the signature
	for _, c := range []struct {
		name string
		raw  []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"garbage", []byte("hello, fleet"), "not a CRL"},
		{"truncated", truncated, "not a CRL"},
		{"bad signature", flipped, "not signed by the fleet CA"},
		{"foreign CA, higher number", foreign.crlDER(t, big.NewInt(99), t0), "not signed by the fleet CA"},
		{"a certificate", f.truck.Certificate().Raw, "not a CRL"},
		{"PEM certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.truck.Certificate().Raw}), `"CERTIFICATE"`},
		{"PEM cut short", crlPEM(good)[:40], "PEM without a complete block"},
		{"oversized", make([]byte, MaxCRLSize+1), "limit"},
	} {
		up, err := f.v.UpdateCRL(c.raw)
		if up || !errors.Is(err, ErrBadCRL) || !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
			t.Errorf("%s: updated %v, err %v; want ErrBadCRL saying %q", c.name, up, err, c.want)
		}
		wantCRL(t, f.v, 5, 1)
	}
	if err := f.v.SetCRL(nil); !errors.Is(err, ErrBadCRL) {
		t.Errorf("SetCRL(nil) = %v", err)
	}
}

// TestUpdateCRLConcurrent: messages are verified while CRLs arrive in any order from several goroutines;
// the newest ends in use (run with -race).
func TestUpdateCRLConcurrent(t *testing.T) {
	f := newFleet(t, false)
	const lists = 40
	ders := make([][]byte, lists)
	for i := range ders {
		ders[i] = f.ca.crlDER(t, big.NewInt(int64(i+1)), t0.Add(time.Duration(i)*time.Minute), f.truck.Certificate())
	}
	tels := make([][]byte, 200)
	for i := range tels {
		tels[i], _ = f.truck2.SignTelemetry(&Telemetry{Fixes: drive(1, 1)})
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < lists; i += 4 {
				if _, err := f.v.UpdateCRL(ders[lists-1-i]); err != nil {
					t.Error(err)
				}
				_ = f.v.CRLInfo()
			}
		})
	}
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < len(tels); i += 4 {
				if _, err := f.v.Verify(ctx, top(t, KindTelemetry, "truck-0002"), tels[i]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	wantCRL(t, f.v, lists, 1)
	wantReason(t, "revoked", telemetryOf(t, f.v, f.truck), ReasonRevoked)
}

// TestCRLNewer: a higher number wins; without a number on either side, a later this-update.
func TestCRLNewer(t *testing.T) {
	l := func(n int64, at time.Time) *x509.RevocationList {
		r := &x509.RevocationList{ThisUpdate: at}
		if n >= 0 {
			r.Number = big.NewInt(n)
		}
		return r
	}
	for _, c := range []struct {
		a, b *x509.RevocationList
		want bool
	}{
		{l(1, t0), nil, true},
		{l(-1, t0), nil, true},
		{l(2, t0), l(1, t0.Add(time.Hour)), true}, // the number decides, not the date
		{l(1, t0.Add(time.Hour)), l(2, t0), false},
		{l(2, t0), l(2, t0.Add(-time.Hour)), false},
		{l(-1, t0.Add(time.Second)), l(2, t0), true},
		{l(3, t0), l(-1, t0), false},
		{l(-1, t0), l(-1, t0), false},
	} {
		if got := crlNewer(c.a, c.b); got != c.want {
			t.Errorf("crlNewer(%v@%v, %v) = %v", c.a.Number, c.a.ThisUpdate, c.b, got)
		}
	}
}

func TestStatusHealthCRL(t *testing.T) {
	for _, c := range []struct {
		name string
		crl  *CRLInfo
	}{
		{"not reported", nil},
		{"none", &CRLInfo{}},
		{"loaded", &CRLInfo{Loaded: true, Number: big.NewInt(7), ThisUpdate: t0, NextUpdate: t0.Add(time.Hour), Revoked: 3}},
		{"loaded, no number", &CRLInfo{Loaded: true, ThisUpdate: t0, Revoked: 0}},
		{"20-octet number", &CRLInfo{Loaded: true, Number: new(big.Int).Lsh(big.NewInt(1), 159), ThisUpdate: t0}},
	} {
		s := &Status{State: StateOnline, Time: t0, Health: &Health{Sats: 4, CRL: c.crl}}
		body, err := s.MarshalBody()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got, err := UnmarshalStatus(body)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		g := got.Health.CRL
		switch {
		case c.crl == nil:
			if g != nil {
				t.Errorf("%s: decoded %+v", c.name, g)
			}
		case g == nil || g.Loaded != c.crl.Loaded || !g.ThisUpdate.Equal(c.crl.ThisUpdate) ||
			!g.NextUpdate.Equal(c.crl.NextUpdate) || g.Revoked != c.crl.Revoked ||
			(g.Number == nil) != (c.crl.Number == nil) || (g.Number != nil && g.Number.Cmp(c.crl.Number) != 0):
			t.Errorf("%s: decoded %+v, want %+v", c.name, g, c.crl)
		}
	}
	// A CRL without this-update but with a number is not something a truck sends.
	body, _ := encMode.Marshal(statusWire{State: 1, Time: t0.UnixMilli(), Health: &healthWire{CRL: &crlWire{Number: []byte{1}}}})
	if _, err := UnmarshalStatus(body); err == nil {
		t.Error("a CRL number without this-update decoded")
	}
	body, _ = encMode.Marshal(statusWire{State: 1, Time: t0.UnixMilli(), Health: &healthWire{CRL: &crlWire{
		ThisUpdate: 1, Number: make([]byte, 21)}}})
	if _, err := UnmarshalStatus(body); err == nil {
		t.Error("a 21-octet CRL number decoded")
	}
}

// FuzzUpdateCRL: any bytes given as a CRL never panic; they are applied, ignored as not newer, or refused
// with an error wrapping ErrBadCRL; an applied CRL is a fleet CA's.
func FuzzUpdateCRL(f *testing.F) {
	ca := newTestCAKey(f, "fleet-ca", ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize)))
	other := newTestCAKey(f, "other", ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, ed25519.SeedSize)))
	truck, _ := ca.issue(f, "truck-0001", "truck", certOpts{ed25519: true, seed: 5})
	good := ca.crlDER(f, big.NewInt(2), t0, truck)
	for _, s := range [][]byte{good, crlPEM(good), ca.crlDER(f, big.NewInt(1), t0), other.crlDER(f, big.NewInt(3), t0),
		truck.Raw, {}, {0x30, 0x80}, []byte("-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n")} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		v, err := NewVerifier(VerifierConfig{CA: []*x509.Certificate{ca.cert}, Clock: func() time.Time { return t0 }})
		if err != nil {
			t.Fatal(err)
		}
		up, err := v.UpdateCRL(raw)
		switch {
		case err != nil:
			if up || !errors.Is(err, ErrBadCRL) {
				t.Fatalf("updated %v, error %v does not wrap ErrBadCRL", up, err)
			}
			if v.CRLInfo().Loaded {
				t.Fatal("a refused CRL is in use")
			}
		case !up:
			t.Fatal("the first valid CRL was not applied")
		default:
			if err := v.CRL().CheckSignatureFrom(ca.cert); err != nil {
				t.Fatalf("applied a CRL the fleet CA did not sign: %v", err)
			}
			if up, err := v.UpdateCRL(raw); up || err != nil {
				t.Fatalf("the same CRL again: updated %v, %v", up, err)
			}
		}
	})
}
