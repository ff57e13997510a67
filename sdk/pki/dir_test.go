package pki

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newTestPKI(t *testing.T) *PKI {
	t.Helper()
	p, err := Init(Config{Dir: filepath.Join(t.TempDir(), "pki")}, CAOptions{Fleet: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestInitLayout(t *testing.T) {
	p := newTestPKI(t)
	if got := mode(t, p.Dir()); got != 0o700 {
		t.Errorf("dir mode %o, want 700", got)
	}
	if got := mode(t, filepath.Join(p.Dir(), CAKeyFile)); got != 0o600 {
		t.Errorf("ca.key mode %o, want 600", got)
	}
	if got := mode(t, filepath.Join(p.Dir(), PrivateDir)); got != 0o700 {
		t.Errorf("private/ mode %o, want 700", got)
	}
	ca := p.CACert()
	if !ca.IsCA || !ca.MaxPathLenZero || ca.Subject.CommonName != "acme fleet CA" {
		t.Errorf("CA: IsCA %v MaxPathLenZero %v CN %q", ca.IsCA, ca.MaxPathLenZero, ca.Subject.CommonName)
	}
	crl, err := p.CRL()
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca); err != nil {
		t.Errorf("CRL signature: %v", err)
	}
	if len(crl.RevokedCertificateEntries) != 0 {
		t.Errorf("new CRL lists %d certificates", len(crl.RevokedCertificateEntries))
	}
	if left := time.Until(crl.NextUpdate); left < 89*24*time.Hour {
		t.Errorf("CRL NextUpdate only %s ahead", left)
	}
	if _, err := Init(Config{Dir: p.Dir()}, CAOptions{}); !errors.Is(err, ErrExists) {
		t.Errorf("second Init: %v, want ErrExists", err)
	}
	q, err := Open(Config{Dir: p.Dir()})
	if err != nil {
		t.Fatal(err)
	}
	if !q.CACert().Equal(ca) {
		t.Error("Open read another CA")
	}
}

func TestOpenMissing(t *testing.T) {
	_, err := Open(Config{Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "waybill pki init") {
		t.Fatalf("Open of an empty dir: %v", err)
	}
}

func TestIssueRoles(t *testing.T) {
	p := newTestPKI(t)
	cases := []struct {
		role  Role
		name  string
		usage x509.ExtKeyUsage
		opts  IssueOptions
	}{
		{RoleTruck, "truck-7", x509.ExtKeyUsageClientAuth, IssueOptions{}},
		{RoleDispatch, "office-1", x509.ExtKeyUsageClientAuth, IssueOptions{KeyType: Ed25519}},
		{RoleBroker, "mqtt", x509.ExtKeyUsageServerAuth, IssueOptions{Hosts: []string{"broker.example.com", "10.0.0.5"}}},
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.CACert())
	for _, tc := range cases {
		t.Run(string(tc.role), func(t *testing.T) {
			e, err := p.Issue(tc.role, tc.name, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if e.Name != tc.name || e.Role != tc.role || e.Revoked() {
				t.Errorf("entry %+v", e)
			}
			if got := mode(t, p.KeyPath(tc.name)); got != 0o600 {
				t.Errorf("key mode %o", got)
			}
			pair, err := LoadKeyPair(p.CertPath(tc.name), p.KeyPath(tc.name))
			if err != nil {
				t.Fatal(err)
			}
			id, err := Verifier{Roots: roots}.Verify(pair.Leaf, nil, time.Now(), tc.usage)
			if err != nil {
				t.Fatal(err)
			}
			if id != (Identity{Name: tc.name, Role: tc.role}) {
				t.Errorf("identity %+v", id)
			}
			other := x509.ExtKeyUsageServerAuth
			if tc.usage == other {
				other = x509.ExtKeyUsageClientAuth
			}
			if _, err := (Verifier{Roots: roots}).Verify(pair.Leaf, nil, time.Now(), other); err == nil {
				t.Errorf("%s certificate also verifies for the other usage", tc.role)
			}
			if tc.opts.KeyType == Ed25519 {
				if _, ok := pair.PrivateKey.(ed25519.PrivateKey); !ok {
					t.Errorf("key is %T, want ed25519", pair.PrivateKey)
				}
			}
			if tc.role == RoleBroker {
				for _, h := range []string{"localhost", "mqtt", "broker.example.com", "127.0.0.1", "10.0.0.5"} {
					if err := pair.Leaf.VerifyHostname(h); err != nil {
						t.Errorf("broker SAN %s: %v", h, err)
					}
				}
				if pair.Leaf.VerifyHostname("evil.example.com") == nil {
					t.Error("broker certificate valid for an unlisted host")
				}
				if !pair.Leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
					t.Errorf("IPs %v", pair.Leaf.IPAddresses)
				}
			}
		})
	}
	list, err := p.List()
	if err != nil || len(list) != 3 {
		t.Fatalf("List: %d entries, %v", len(list), err)
	}
}

func TestIssueRefusals(t *testing.T) {
	p := newTestPKI(t)
	if _, err := p.Issue(RoleTruck, "truck-1", IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		role    Role
		n       string
		opts    IssueOptions
		wantErr error
		wantMsg string
	}{
		{"other role", RoleDispatch, "truck-1", IssueOptions{}, ErrRoleConflict, "is a truck"},
		{"slash", RoleTruck, "a/b", IssueOptions{}, ErrInvalidName, ""},
		{"plus", RoleTruck, "a+", IssueOptions{}, ErrInvalidName, ""},
		{"hash", RoleTruck, "#", IssueOptions{}, ErrInvalidName, ""},
		{"upper", RoleTruck, "Truck1", IssueOptions{}, ErrInvalidName, ""},
		{"reserved", RoleDispatch, "dispatch", IssueOptions{}, ErrInvalidName, "reserved"},
		{"empty", RoleTruck, "", IssueOptions{}, ErrInvalidName, ""},
		{"bad role", Role("admin"), "x1", IssueOptions{}, nil, "unknown role"},
		{"hosts on truck", RoleTruck, "t2", IssueOptions{Hosts: []string{"x"}}, nil, "broker"},
		{"inverted window", RoleTruck, "t3", IssueOptions{NotBefore: time.Now(), NotAfter: time.Now().Add(-time.Hour)}, nil, "ends before"},
		{"key type", RoleTruck, "t4", IssueOptions{KeyType: "rsa"}, nil, "unknown key type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Issue(tc.role, tc.n, tc.opts)
			if err == nil {
				t.Fatal("issued")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("err %q does not mention %q", err, tc.wantMsg)
			}
		})
	}
	// Renewal with the same role is allowed and keeps both entries.
	if _, err := p.Issue(RoleTruck, "truck-1", IssueOptions{}); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	if list, _ := p.List(); len(list) != 2 {
		t.Errorf("after renewal: %d entries, want 2", len(list))
	}
}

func TestExpiredAndRevoked(t *testing.T) {
	now := time.Now()
	p := newTestPKI(t)
	if _, err := p.Issue(RoleTruck, "old", IssueOptions{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Issue(RoleTruck, "gone", IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Issue(RoleTruck, "gone", IssueOptions{}); err != nil { // two serials, both revoked below
		t.Fatal(err)
	}
	if _, err := p.Issue(RoleTruck, "fine", IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	revoked, err := p.Revoke("gone")
	if err != nil || len(revoked) != 2 {
		t.Fatalf("Revoke: %v, %d entries", err, len(revoked))
	}
	if _, err := p.Revoke("gone"); !errors.Is(err, ErrUnknownName) {
		t.Errorf("second revoke: %v", err)
	}
	crl, err := p.CRL()
	if err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != 2 || crl.Number.Int64() != 2 {
		t.Errorf("CRL: %d entries, number %v", len(crl.RevokedCertificateEntries), crl.Number)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.CACert())
	v := Verifier{Roots: roots, CRL: crl}
	load := func(name string) *x509.Certificate {
		c, err := LoadCertificate(p.CertPath(name))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if _, err := v.Verify(load("gone"), nil, now, x509.ExtKeyUsageClientAuth); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked: %v", err)
	}
	if _, err := v.Verify(load("old"), nil, now, x509.ExtKeyUsageClientAuth); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired: %v", err)
	}
	if _, err := v.Verify(load("fine"), nil, now, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("fine: %v", err)
	}
	// A stale CRL is refused like Mosquitto refuses it.
	if _, err := v.Verify(load("fine"), nil, crl.NextUpdate.Add(time.Second), x509.ExtKeyUsageClientAuth); !errors.Is(err, ErrCRLStale) {
		t.Errorf("stale CRL: %v", err)
	}
	names, err := p.Names(RoleTruck)
	if err != nil || strings.Join(names, ",") != "fine" {
		t.Errorf("Names(truck) = %v, %v; want only fine", names, err)
	}
	// A foreign CA does not verify ours.
	foreign := newTestPKI(t)
	fr := x509.NewCertPool()
	fr.AddCert(foreign.CACert())
	if _, err := (Verifier{Roots: fr}).Verify(load("fine"), nil, now, x509.ExtKeyUsageClientAuth); err == nil {
		t.Error("foreign CA verified our certificate")
	}
	// and a CRL from a foreign CA is not trusted.
	fcrl, _ := foreign.CRL()
	if _, err := (Verifier{Roots: roots, CRL: fcrl}).Verify(load("fine"), nil, now, x509.ExtKeyUsageClientAuth); err == nil {
		t.Error("accepted a CRL signed by another CA")
	}
}

func TestCRLFreshness(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p, err := Init(Config{Dir: t.TempDir(), Now: func() time.Time { return clock }, CRLValidity: 60 * 24 * time.Hour}, CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crl, err := p.CRL()
	if err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	cases := []struct {
		at   time.Time
		want error
	}{
		{clock, nil},
		{clock.Add(29 * day), nil},
		{clock.Add(31 * day), ErrCRLExpiringSoon},
		{clock.Add(60*day - time.Second), ErrCRLExpiringSoon},
		{clock.Add(60 * day), ErrCRLStale},
		{clock.Add(400 * day), ErrCRLStale},
	}
	for _, tc := range cases {
		err := CheckCRL(crl, tc.at, 0)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("at %s: %v, want %v", tc.at, err, tc.want)
		}
		if err != nil && !strings.Contains(err.Error(), "waybill pki crl") {
			t.Errorf("message does not name the fix: %v", err)
		}
	}
	clock = clock.Add(50 * day)
	if err := p.RefreshCRL(); err != nil {
		t.Fatal(err)
	}
	if err := CheckCRLFile(p.CRLPath(), clock.Add(20*day), 0); err != nil {
		t.Errorf("after refresh: %v", err)
	}
}

func TestCheckKeyFile(t *testing.T) {
	p := newTestPKI(t)
	if _, err := p.Issue(RoleTruck, "t1", IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	path := p.KeyPath("t1")
	if err := CheckKeyFile(path); err != nil {
		t.Fatal(err)
	}
	for _, m := range []os.FileMode{0o640, 0o604, 0o660, 0o644} {
		if err := os.Chmod(path, m); err != nil {
			t.Fatal(err)
		}
		err := CheckKeyFile(path)
		if !errors.Is(err, ErrKeyFilePermissions) || !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %o: %v", m, err)
		}
		if _, err := LoadKeyPair(p.CertPath("t1"), path); !errors.Is(err, ErrKeyFilePermissions) {
			t.Errorf("LoadKeyPair with mode %o: %v", m, err)
		}
	}
	if err := CheckKeyFile(filepath.Join(p.Dir(), "nope.key")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestLoadKeyPairMismatch(t *testing.T) {
	p := newTestPKI(t)
	for _, n := range []string{"a1", "b1"} {
		if _, err := p.Issue(RoleTruck, n, IssueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadKeyPair(p.CertPath("a1"), p.KeyPath("b1")); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("mismatched pair: %v", err)
	}
	pair, err := LoadKeyPair(p.CertPath("a1"), p.KeyPath("a1"))
	if err != nil {
		t.Fatal(err)
	}
	// The pair works in a real handshake config.
	_ = &tls.Config{Certificates: []tls.Certificate{pair}}
}

func FuzzParsePEM(f *testing.F) {
	p, err := Init(Config{Dir: f.TempDir()}, CAOptions{})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := p.Issue(RoleTruck, "t1", IssueOptions{}); err != nil {
		f.Fatal(err)
	}
	for _, path := range []string{p.CAPath(), p.CRLPath(), p.KeyPath("t1"), p.CertPath("t1")} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(data[:len(data)/2])
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		ParseCertificatesPEM(data)
		ParsePrivateKeyPEM(data)
		x509.ParseRevocationList(data)
	})
}
