package sdktest

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// WaitFor polls cond every 20 ms until it holds, and fails the test with what it waited for once d has
// passed. It is for waiting on other processes and goroutines, never for timing assertions.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CertKey loads the client's certificate and private key: what an outbox or a hand-made signer needs.
func (c Client) CertKey(t testing.TB) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	cert, err := pki.LoadCertificate(c.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.LoadPrivateKey(c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// Signer returns a signer for the client's identity, its sequence numbers in memory (seeded from the clock):
// enough for a dispatch tool or a test truck that does not restart.
func (c Client) Signer(t testing.TB) *sdk.Signer {
	t.Helper()
	pair, err := pki.LoadKeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sdk.NewSignerTLS(pair, sdk.SignerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Office is a fleet PKI with one dispatch identity ("office"), for tests that feed signed orders straight to a
// truck's order book, without a broker, and for outbox engines, which sign with Certificate and Key.
type Office struct {
	Signer      *sdk.Signer
	CA          *x509.Certificate
	Certificate *x509.Certificate
	Key         crypto.Signer
}

// NewOffice makes the PKI in a temporary directory.
func NewOffice(t testing.TB) *Office {
	t.Helper()
	p, err := pki.Init(pki.Config{Dir: filepath.Join(t.TempDir(), "pki")}, pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Issue(pki.RoleDispatch, "office", pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	pair, err := pki.LoadKeyPair(p.CertPath("office"), p.KeyPath("office"))
	if err != nil {
		t.Fatal(err)
	}
	return &Office{Signer: Client{CertFile: p.CertPath("office"), KeyFile: p.KeyPath("office")}.Signer(t), CA: p.CACert(),
		Certificate: pair.Leaf, Key: pair.PrivateKey.(crypto.Signer)}
}

// Verifier returns a verifier of the office's fleet CA, as a truck has.
func (o *Office) Verifier(t testing.TB) *sdk.Verifier {
	t.Helper()
	v, err := sdk.NewVerifier(sdk.VerifierConfig{CA: []*x509.Certificate{o.CA}})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Order signs an order revision and returns it as the truck's connection would deliver it.
func (o *Office) Order(t testing.TB, ord sdk.Order) transport.Message {
	t.Helper()
	payload, err := o.Signer.SignOrder(&ord)
	if err != nil {
		t.Fatal(err)
	}
	topic, err := sdk.Topics{}.Order(ord.Truck, ord.ID)
	if err != nil {
		t.Fatal(err)
	}
	return transport.Message{Topic: topic, Payload: payload, QoS: 1}
}

// Verifier returns a verifier of the client's fleet CA (cfg.CA is set from CAFile; the rest of cfg as given).
func (c Client) Verifier(t testing.TB, cfg sdk.VerifierConfig) *sdk.Verifier {
	t.Helper()
	ca, err := pki.LoadCertificates(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg.CA = ca
	v, err := sdk.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// NewPKI makes a fleet PKI in a temporary directory, as StartMosquitto and StartDevBroker do when
// Options.PKI is nil (fleet "test", a broker certificate named BrokerName), with a truck certificate for each
// name. Give it as Options.PKI (and dispatch names as Options.Dispatch): the broker then knows every
// identity from its start, with nothing to tell it at run time (Issue, Sync).
func NewPKI(t testing.TB, trucks ...string) *pki.PKI {
	t.Helper()
	p, err := pki.Init(pki.Config{Dir: filepath.Join(t.TempDir(), "pki")}, pki.CAOptions{Fleet: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Issue(pki.RoleBroker, BrokerName, pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range trucks {
		if _, err := p.Issue(pki.RoleTruck, name, pki.IssueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// SyncBuffer is a bytes.Buffer safe for a writer (a process, a logger, a running command) and the test
// reading it at the same time.
type SyncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Tail returns the last n lines written, for failure messages.
func (s *SyncBuffer) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(s.String(), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// DamagePages overwrites with garbage, the way a bad flash block reads back, the 4 KiB page of the file at
// path that holds the first copy of marker, or with every, each page holding a copy (stale copies in free
// pages included). It fails the test when marker is nowhere, and returns how many pages it damaged.
func DamagePages(t testing.TB, path string, marker []byte, every bool) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pages := map[int]bool{}
	for off := 0; ; {
		i := bytes.Index(b[off:], marker)
		if i < 0 {
			break
		}
		pages[(off+i)/4096] = true
		if !every {
			break
		}
		off += i + 1
	}
	if len(pages) == 0 {
		t.Fatalf("sdktest: %q not found in %s", marker, path)
	}
	for p := range pages {
		for j := p * 4096; j < (p+1)*4096 && j < len(b); j++ {
			b[j] = byte(j*7 + 3)
		}
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return len(pages)
}
