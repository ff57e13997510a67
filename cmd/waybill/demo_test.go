package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/archive"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// TestDemoSummary runs `waybill demo` (the real agent binary, three trucks, real Mosquitto) and checks that
// its summary comes out right: three deliveries with verified proofs, one cancellation, truck-03's link cut
// and nothing lost, in under two minutes. Nothing lost means end to end: per truck, the fixes the agent
// stored are the distinct fixes in dispatch's archive (read here from the file the demo leaves), and the
// truck's queue is empty with nothing waiting for a receipt: every record left the truck on a receipt.
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
	dir := filepath.Join(t.TempDir(), "demo")
	code := run(ctx, streams{nil, &out, &errb}, []string{"demo", "--dir", dir, "--agent", bin})
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
		"receipts (a truck deletes a record only when dispatch's signed receipt names it): truck-01 ",
		"everything delivered, every proof verified, nothing lost.",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	// Per truck: stored = in the archive, nothing left; and the archive the demo left says the same.
	a, err := archive.Open(filepath.Join(dir, "dispatch", archive.File), archive.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	line := regexp.MustCompile(`(truck-0\d): fixes stored (\d+), in dispatch's archive (\d+); events in the archive (\d+); ` +
		`left on the truck: (\d+) records, (\d+) waiting for a receipt`)
	seen := 0
	for _, m := range line.FindAllStringSubmatch(text, -1) {
		seen++
		stored, _ := strconv.Atoi(m[2])
		archived, _ := strconv.Atoi(m[3])
		events, _ := strconv.Atoi(m[4])
		if stored == 0 || stored != archived || m[5] != "0" || m[6] != "0" {
			t.Errorf("%s: want every stored fix in the archive and nothing left on the truck: %q", m[1], m[0])
		}
		c, err := a.Counts(m[1])
		if err != nil || c.Fixes != archived || c.Events != events || events < 3 {
			t.Errorf("%s: the archive holds %+v (%v); the summary says %d fixes, %d events (at least received, "+
				"arrived, delivered)", m[1], c, err, archived, events)
		}
	}
	if seen != 3 {
		t.Errorf("summary has %d per-truck count lines, want 3", seen)
	}
	if strings.Contains(text, "PROBLEM") || strings.Contains(text, "REFUSED") {
		t.Error("the demo reported a problem")
	}
	if took > 2*time.Minute {
		t.Errorf("the demo took %s, more than two minutes", took)
	}
}

// TestDemoProofFailureCounted (issue 11.9): a proof of delivery that does not check out is said in words
// (not a Go struct), noted as a problem (so the summary fails and the demo exits non-zero), and stays failed
// when a good copy of the event arrives later.
func TestDemoProofFailureCounted(t *testing.T) {
	dir := newCmdPKI(t)
	p, err := pki.Open(pki.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.LoadCertificate(p.CertPath("office"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.LoadPrivateKey(p.KeyPath("office"))
	if err != nil {
		t.Fatal(err)
	}
	ob, err := dispatch.NewOutbox(dispatch.OutboxConfig{Path: filepath.Join(t.TempDir(), "outbox.db"), Certificate: cert, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e, err := ob.Create(ctx, sdk.Order{ID: "o-1", Truck: "truck-1", Expires: time.Now().Add(time.Hour), Lat: 51.5, Lon: -0.1, RadiusM: 80})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	d := &demo{s: streams{nil, &out, &out}, t0: time.Now(), seen: map[string]bool{}, proof: map[string]bool{},
		proofFailed: map[string]string{}, acted: map[string]bool{}}
	fix := &sdk.Fix{Time: time.Now(), Lat: 51.5, Lon: -0.1, Mode: 3}
	bad := &sdk.Event{Kind: sdk.EventDelivered, OrderID: "o-1", Revision: 1, Time: time.Now(), Fix: fix, OffSite: true,
		OrderHash: sdk.OrderHash{1, 2, 3}}
	d.handle(ctx, ob, dispatch.Update{Event: &dispatch.Event{Truck: "truck-1", Event: *bad}})
	good := *bad
	good.OffSite, good.OrderHash = false, e.Hash
	d.handle(ctx, ob, dispatch.Update{Event: &dispatch.Event{Truck: "truck-1", Event: good}})

	text := out.String()
	if strings.Contains(text, "{Kind:") || !strings.Contains(text, "does NOT check out: its order hash") ||
		!strings.Contains(text, "OFF SITE") {
		t.Errorf("the failure is not readable:\n%s", text)
	}
	if len(d.notes) != 1 || !strings.Contains(d.notes[0], "proof of delivery for o-1") || d.proofFailed["o-1"] == "" {
		t.Errorf("the failure is not counted: notes %q, failed %v", d.notes, d.proofFailed)
	}
	if why := checkProof(e, nil, &good); why != "" {
		t.Errorf("a good proof: %q", why)
	}
}
