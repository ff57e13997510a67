package sdktest

import (
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
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
