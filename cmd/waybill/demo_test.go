package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// TestDemoSummary runs `waybill demo` (the real agent binary, three trucks, real Mosquitto) and checks that
// its summary comes out right: three deliveries with verified proofs, one cancellation, truck-03's link cut
// and nothing lost, in under two minutes.
func TestDemoSummary(t *testing.T) {
	sdktest.MosquittoPath(t) // fails with the install command when Mosquitto is missing
	bin := filepath.Join(t.TempDir(), "waybill-agent")
	if out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "../waybill-agent").CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errb strings.Builder
	start := time.Now()
	code := run(ctx, streams{nil, &out, &errb}, []string{"demo", "--dir", filepath.Join(t.TempDir(), "demo"), "--agent", bin})
	took := time.Since(start)
	text := out.String()
	t.Logf("demo took %s:\n%s%s", took.Round(time.Second), text, errb.String())
	if code != 0 {
		t.Fatalf("demo exited %d", code)
	}
	for _, want := range []string{
		"broker: Mosquitto",
		"orders delivered: 3 of 3, cancelled: 1 of 1",
		"proofs of delivery verified (signature, order hash, fix on site): 3 of 3",
		"truck-03: cellular link CUT for 30 s",
		"truck-03: link RESTORED",
		"nothing lost: true",
		"everything delivered, every proof verified, nothing lost.",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if strings.Contains(text, "PROBLEM") || strings.Contains(text, "REFUSED") {
		t.Error("the demo reported a problem")
	}
	if took > 2*time.Minute {
		t.Errorf("the demo took %s, more than two minutes", took)
	}
}
