package main

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/archive"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// TestDemoSummary runs `waybill demo --keep` (the real agent binary, three trucks, real Mosquitto, the
// office process in-process) and checks that its summary comes out right: three deliveries with proofs the
// office verified, one cancellation, truck-03's link cut and nothing lost, in under two minutes. Nothing
// lost means end to end: per truck, the fixes the agent stored are the distinct fixes in the office's
// archive (read here from the file the demo leaves), and the truck's queue is empty with nothing waiting
// for a receipt: every record left the truck on a receipt. While it is kept running, the console it
// printed answers (the page, a sign-in with the token from its file), the API lists the four orders and
// the tracking link works; Ctrl-C (the context) ends it with exit code 0.
func TestDemoSummary(t *testing.T) {
	sdktest.MosquittoPath(t) // fails with the install command when Mosquitto is missing
	bin := filepath.Join(t.TempDir(), "waybill-agent")
	if out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "../waybill-agent").CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errb lockedBuffer
	start := time.Now()
	dir := filepath.Join(t.TempDir(), "demo")
	done := make(chan struct{})
	var code int
	go func() {
		defer close(done)
		code = run(ctx, streams{nil, &out, &errb}, []string{"demo", "--dir", dir, "--agent", bin, "--keep"})
	}()
	defer func() { cancel(); <-done }() // also when a check below stops the test
	var took time.Duration
	for took == 0 {
		select {
		case <-done:
			t.Fatalf("demo exited %d before it was stopped:\n%s%s", code, out.String(), errb.String())
		case <-time.After(200 * time.Millisecond):
		}
		if strings.Contains(out.String(), "Ctrl-C to stop.") {
			took = time.Since(start)
		}
	}
	checkKeptOffice(t, out.String())
	cancel() // Ctrl-C
	<-done
	text := out.String()
	t.Logf("demo took %s (to its summary):\n%s%s", took.Round(time.Second), text, errb.String())
	if code != 0 {
		t.Fatalf("demo exited %d", code)
	}
	for _, want := range []string{
		"broker: Mosquitto",
		"orders delivered: 3 of 3, cancelled: 1 of 1",
		"proofs of delivery verified by the office (signature, order hash, fix on site): 3 of 3",
		"office: PROOF OF DELIVERY for o-1003 verified",
		"truck-03: cellular link CUT for 30 s",
		"truck-03: link RESTORED",
		"nothing lost: true",
		"receipts (a truck deletes a record only when the office's signed receipt names it): truck-01 ",
		"everything delivered, every proof verified, nothing lost.",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	if n := strings.Count(text, "  console   http://127.0.0.1:"); n != 2 {
		t.Errorf("the console's address is printed %d times, want 2 (at the start and after the summary)", n)
	}
	// Per truck: stored = in the archive, nothing left; and the archive the demo left says the same.
	a, err := archive.Open(filepath.Join(dir, "dispatch", archive.File), archive.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	line := regexp.MustCompile(`(truck-0\d): fixes stored (\d+), in the office's archive (\d+); events in the archive (\d+); ` +
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
	if strings.Contains(text, "PROBLEM") || strings.Contains(text, "REFUSED") || strings.Contains(text, "does NOT check out") {
		t.Error("the demo reported a problem")
	}
	if took > 2*time.Minute {
		t.Errorf("the demo took %s to its summary, more than two minutes", took)
	}
}

// checkKeptOffice checks the office a --keep demo left running, from what the demo printed: the console's
// page, a sign-in with the token read from the printed file (0600), the orders in the API, a proof, and the
// customer's tracking link.
func checkKeptOffice(t *testing.T, text string) {
	t.Helper()
	m := regexp.MustCompile(`console   (http://127\.0\.0\.1:\d+)/   sign in with the token in (\S+): (\S+)\n`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("the demo did not print the console's address and token:\n%s", text)
	}
	base, tokenFile, printed := m[1], m[2], m[3]
	fi, err := os.Stat(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", tokenFile, fi.Mode().Perm())
	}
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(b))
	if token != printed || len(token) < 16 {
		t.Errorf("the token file holds %q, the demo printed %q", token, printed)
	}
	c := &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(url string, hdr http.Header) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		maps.Copy(req.Header, hdr)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get(base+"/", nil); code != http.StatusOK || !strings.Contains(strings.ToLower(body), "<html") {
		t.Errorf("GET / (the console): %d %.200s", code, body)
	}
	// The console's sign-in: the token from the file sets the cookie, and the cookie is a session.
	resp, err := c.PostForm(base+"/login", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie string
	for _, ck := range resp.Cookies() {
		cookie = ck.Name + "=" + ck.Value
	}
	if resp.StatusCode != http.StatusSeeOther || cookie == "" {
		t.Errorf("POST /login with the token: %s, cookie %q", resp.Status, cookie)
	}
	if code, body := get(base+"/", http.Header{"Cookie": {cookie}}); code != http.StatusOK {
		t.Errorf("GET / signed in: %d %.200s", code, body)
	}
	if code, body := get(base+"/api/session", http.Header{"Cookie": {cookie}}); code != http.StatusOK {
		t.Errorf("GET /api/session with the console's cookie: %d %s", code, body)
	}
	bearer := http.Header{"Authorization": {"Bearer " + token}}
	code, body := get(base+"/api/orders", bearer)
	var orders []officeOrder
	if err := json.Unmarshal([]byte(body), &orders); code != http.StatusOK || err != nil {
		t.Fatalf("GET /api/orders: %d %v %.300s", code, err, body)
	}
	states := map[string]dispatch.State{}
	for _, o := range orders {
		states[o.Order.ID] = o.State
	}
	want := map[string]dispatch.State{"o-1001": dispatch.StateDelivered, "o-1002": dispatch.StateDelivered,
		"o-1003": dispatch.StateDelivered, "o-1004": dispatch.StateCancelled}
	if !maps.Equal(states, want) {
		t.Errorf("GET /api/orders: %v, want %v", states, want)
	}
	code, body = get(base+"/api/proofs", bearer)
	var proofs []officeProof
	if err := json.Unmarshal([]byte(body), &proofs); code != http.StatusOK || err != nil || len(proofs) < 3 {
		t.Errorf("GET /api/proofs: %d %v, %d proofs", code, err, len(proofs))
	}
	for _, p := range proofs {
		if why := checkProof(p, 60); why != "" {
			t.Errorf("the office's proof for %s: %s", p.Order, why)
		}
	}
	if code, _ := get(base+"/api/orders", nil); code != http.StatusUnauthorized {
		t.Errorf("GET /api/orders without the token: %d, want 401", code)
	}
	tm := regexp.MustCompile(`tracking  (http://127\.0\.0\.1:\d+/t/[A-Za-z0-9_-]+) `).FindStringSubmatch(text)
	if tm == nil {
		t.Fatalf("the demo printed no tracking link:\n%s", text)
	}
	if code, body := get(tm[1], nil); code != http.StatusOK {
		t.Errorf("GET %s (the customer's page): %d %.200s", tm[1], code, body)
	}
	code, body = get(tm[1]+"/status", nil)
	if code != http.StatusOK || !strings.Contains(body, `"state": "delivered"`) {
		t.Errorf("GET %s/status: %d %s", tm[1], code, body)
	}
}

// lockedBuffer is an io.Writer the demo's goroutines write to while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDemoProofFailureCounted (issue 11.9): a proof of delivery that does not check out, as the office
// reports it, is said in words (not a Go struct), noted as a problem (so the summary fails and the demo
// exits non-zero), and stays failed when a good copy of the event arrives later.
func TestDemoProofFailureCounted(t *testing.T) {
	var out strings.Builder
	d := &demo{s: streams{nil, &out, &out}, t0: time.Now(), proof: map[string]bool{}, proofFailed: map[string]string{},
		acted: map[string]bool{}}
	fix := &sdk.Fix{Time: time.Now(), Lat: 51.5, Lon: -0.1, Mode: 3}
	far, near, in, outside := 412.0, 12.0, true, false
	bad := officeProof{Truck: "truck-1", Order: "o-1", Revision: 1, Kind: sdk.EventDelivered, Via: sdk.ViaHTTP, Fix: fix}
	bad.Verified.Signature, bad.Verified.OffSite = true, true
	bad.Verified.DistanceM, bad.Verified.WithinRadius = &far, &outside
	bad.Event.Event.OrderHash = sdk.OrderHash{1, 2, 3}
	d.noteProof(bad, 80)
	good := bad
	good.Verified.OrderHash, good.Verified.OffSite = true, false
	good.Verified.DistanceM, good.Verified.WithinRadius = &near, &in
	d.noteProof(good, 80)

	text := out.String()
	if strings.Contains(text, "{Kind:") || !strings.Contains(text, "does NOT check out: its order hash") ||
		!strings.Contains(text, "OFF SITE") {
		t.Errorf("the failure is not readable:\n%s", text)
	}
	if len(d.notes) != 1 || !strings.Contains(d.notes[0], "proof of delivery for o-1") || d.proofFailed["o-1"] == "" ||
		d.proof["o-1"] {
		t.Errorf("the failure is not counted: notes %q, failed %v, verified %v", d.notes, d.proofFailed, d.proof)
	}
	if why := checkProof(good, 80); why != "" {
		t.Errorf("a good proof: %q", why)
	}
	// The office's own measure: a fix outside the radius fails even when the truck did not say so.
	odd := good
	odd.Verified.DistanceM, odd.Verified.WithinRadius = &far, &outside
	if why := checkProof(odd, 80); !strings.Contains(why, "412 m from the destination, OFF SITE") {
		t.Errorf("a fix outside the radius: %q", why)
	}
	unsigned := good
	unsigned.Verified.Signature = false
	if why := checkProof(unsigned, 80); !strings.Contains(why, "signature") {
		t.Errorf("an unverified signature: %q", why)
	}
}
