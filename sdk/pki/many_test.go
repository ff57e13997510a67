package pki

import (
	"fmt"
	"os"
	"testing"
)

func fleetNames(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%05d", prefix, i+1)
	}
	return names
}

// IssueMany gives every name a working key pair, records each once, and refuses the whole batch (before
// writing anything) when one name is bad, listed twice or held by another role.
func TestIssueMany(t *testing.T) {
	p := newTestPKI(t)
	names := fleetNames("truck-", 2*issueChunk+3) // three index writes
	entries, err := p.IssueMany(RoleTruck, names, IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(names) {
		t.Fatalf("%d entries for %d names", len(entries), len(names))
	}
	listed, err := p.Names(RoleTruck)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != len(names) {
		t.Fatalf("index lists %d trucks, want %d", len(listed), len(names))
	}
	for _, i := range []int{0, issueChunk, len(names) - 1} {
		if _, err := LoadKeyPair(p.CertPath(names[i]), p.KeyPath(names[i])); err != nil {
			t.Fatalf("%s: %v", names[i], err)
		}
	}
	if _, err := p.Issue(RoleDispatch, "office", IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{"new-1", "new-1"}, {"new-2", "bad name"}, {"new-3", "office"}} {
		if _, err := p.IssueMany(RoleTruck, bad, IssueOptions{}); err == nil {
			t.Fatalf("IssueMany(%q) succeeded", bad)
		}
		if _, err := os.Stat(p.CertPath(bad[0])); !os.IsNotExist(err) {
			t.Fatalf("a refused batch %q wrote %s (%v)", bad, p.CertPath(bad[0]), err)
		}
	}
}

// A batch that stops half way (here: one certificate file cannot be written) leaves no certificate on
// disk that the index does not know, so every certificate that exists can be revoked.
func TestIssueManyInterruptedKeepsIndexComplete(t *testing.T) {
	p := newTestPKI(t)
	names := fleetNames("truck-", issueChunk+10)
	blocked := names[issueChunk+4]
	if err := os.MkdirAll(p.CertPath(blocked)+"/x", 0o755); err != nil { // a directory where the file goes
		t.Fatal(err)
	}
	if _, err := p.IssueMany(RoleTruck, names, IssueOptions{}); err == nil {
		t.Fatal("IssueMany succeeded over a directory in the way")
	}
	idx, err := p.readIndex()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, e := range idx.Entries {
		known[e.Name] = true
	}
	written := 0
	for _, n := range names {
		if _, err := os.Stat(p.KeyPath(n)); err == nil {
			written++
			if !known[n] {
				t.Fatalf("%s has a key on disk but no index entry: it could never be revoked", n)
			}
		}
	}
	if written < issueChunk {
		t.Fatalf("only %d keys written; the first chunk should be complete", written)
	}
	if _, err := p.Revoke(names[issueChunk+1]); err != nil {
		t.Fatalf("revoke a certificate of the interrupted chunk: %v", err)
	}
}

// Issuing a fleet one name at a time (what `pki issue` did per truck) against one batch.
func BenchmarkIssueFleet(b *testing.B) {
	for _, n := range []int{1000} {
		b.Run(fmt.Sprintf("one-by-one/%d", n), func(b *testing.B) {
			for range b.N {
				p, _ := Init(Config{Dir: b.TempDir() + "/pki"}, CAOptions{})
				for _, name := range fleetNames("t-", n) {
					if _, err := p.Issue(RoleTruck, name, IssueOptions{}); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N*n), "ms/cert")
		})
		b.Run(fmt.Sprintf("many/%d", n), func(b *testing.B) {
			for range b.N {
				p, _ := Init(Config{Dir: b.TempDir() + "/pki"}, CAOptions{})
				if _, err := p.IssueMany(RoleTruck, fleetNames("t-", n), IssueOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N*n), "ms/cert")
		})
	}
}
