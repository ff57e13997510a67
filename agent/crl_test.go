package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// TestCheckSaysWhichFleetCRL: `waybill-agent check` warns, with what to do, when the truck has no CRL at
// all, and otherwise names the CRL the agent will use: the newer of identity.crl and the one kept from the
// broker. A missing cache is normal; an unusable one is a warning.
func TestCheckSaysWhichFleetCRL(t *testing.T) {
	dir := t.TempDir()
	p, err := pki.Init(pki.Config{Dir: filepath.Join(dir, "pki")}, pki.CAOptions{Fleet: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"truck-0001", "truck-0002"} {
		if _, err := p.Issue(pki.RoleTruck, n, pki.IssueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	crl1, err := os.ReadFile(p.CRLPath())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Revoke("truck-0002"); err != nil {
		t.Fatal(err)
	}
	crl2, err := p.CRL()
	if err != nil {
		t.Fatal(err)
	}
	crl1File := filepath.Join(dir, "crl1.pem")
	if err := os.WriteFile(crl1File, crl1, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name        string
		identityCRL string
		cache       []byte // nil: none
		sev         Severity
		want        []string
	}{
		{"none at all", "", nil, Warn, []string{"none: neither identity.crl nor a CRL received from the broker",
			"revoked dispatch key are accepted", "waybill broker sync", "set identity.crl"}},
		{"identity.crl only", crl1File, nil, OK, []string{"#1 of", "0 revoked"}},
		{"a newer one from the broker", crl1File, crl2.Raw, OK, []string{"#2 of", "1 revoked"}},
		{"from the broker only", "", crl2.Raw, OK, []string{"#2 of"}},
		{"damaged cache", crl1File, []byte("junk"), Warn, []string{"#1 of", "received from the broker", "not usable"}},
		{"damaged cache, no file", "", []byte("junk"), Warn, []string{"none:", "not usable"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			if err := os.MkdirAll(data, 0o700); err != nil {
				t.Fatal(err)
			}
			if c.cache != nil {
				if err := os.WriteFile(filepath.Join(data, CRLCacheFile), c.cache, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cfg := Config{DataDir: data, Identity: IdentityConfig{Cert: p.CertPath("truck-0001"),
				Key: p.KeyPath("truck-0001"), CA: p.CAPath(), CRL: c.identityCRL}}
			if err := cfg.Defaults(); err != nil {
				t.Fatal(err)
			}
			results := Check(context.Background(), cfg, CheckOptions{Offline: true, Now: time.Now})
			var got *CheckResult
			for i := range results {
				if results[i].Name == "fleet CRL for orders" {
					got = &results[i]
				}
			}
			var report bytes.Buffer
			FormatCheck(&report, results)
			if got == nil {
				t.Fatalf("no fleet CRL line:\n%s", report.String())
			}
			line := got.Detail + " " + got.Fix
			if got.Severity != c.sev {
				t.Errorf("severity %s, want %s:\n%s", got.Severity, c.sev, report.String())
			}
			for _, w := range c.want {
				if !strings.Contains(line, w) {
					t.Errorf("the line lacks %q:\n%s", w, report.String())
				}
			}
			t.Logf("\n%s", report.String())
		})
	}
}
