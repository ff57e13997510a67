package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/embedded"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/pgtest"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/postgres"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// TestDispatchMigrate fills a real embedded office (orders in every state, tracking tokens, fixes, events,
// statuses, store epochs), copies it into a throwaway PostgreSQL with `waybill dispatch migrate`, twice
// (the second copies nothing), and checks that `waybill dispatch run` on PostgreSQL serves it all: the same
// orders and states, the whole track in the export, the proofs, a tracking link. While the embedded office
// holds sender.lock the command refuses.
func TestDispatchMigrate(t *testing.T) {
	p := sdktest.NewPKI(t, "truck-1", "truck-2")
	if _, err := p.Issue(pki.RoleDispatch, "office", pki.IssueOptions{}); err != nil {
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
	dsn := pgtest.Start(t).Database(t)
	dir := filepath.Join(t.TempDir(), "dispatch")
	ctx := context.Background()

	// The embedded office's data.
	src, err := embedded.Open(embedded.Options{Dir: dir, Outbox: dispatch.OutboxConfig{Certificate: cert, Key: key,
		Poll: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	ep := sdk.Epoch{1, 2, 3, 4}
	const nFixes = 4500 // more than one batch of the copy
	for i := 0; i < nFixes; i += 60 {
		var fs []dispatch.Fix
		for j := i; j < min(i+60, nFixes); j++ {
			fs = append(fs, dispatch.Fix{Truck: "truck-1", Epoch: ep, Seq: uint64(j + 1), Fix: sdk.Fix{
				Time: t0.Add(time.Duration(j) * time.Second), Lat: 51.5 + float64(j)*1e-6, Lon: -0.1, Speed: 8.5, Mode: 3,
				Has: sdk.FixSpeed}})
		}
		if err := src.Commit(ctx, dispatch.Update{Fixes: fs}); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.Commit(ctx, dispatch.Update{Fixes: []dispatch.Fix{{Truck: "truck-2", Epoch: sdk.Epoch{9}, Seq: 1,
		Fix: sdk.Fix{Time: t0, Lat: 48.1, Lon: 11.5, Mode: 2}}}}); err != nil {
		t.Fatal(err)
	}
	online := dispatch.Status{Truck: "truck-1", Changed: true, Status: sdk.Status{State: sdk.StateOnline, Time: t0.Add(time.Hour),
		Health: &sdk.Health{StoreEpoch: ep, QueueDepth: 4}}}
	if err := src.Commit(ctx, dispatch.Update{Status: &online}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.NoteStatus(ctx, online); err != nil {
		t.Fatal(err)
	}
	ids := []string{"o-1", "o-2", "o-3", "o-4"}
	entries := map[string]dispatch.Entry{}
	for _, id := range ids {
		e, err := src.Create(ctx, sdk.Order{ID: id, Truck: "truck-1", Expires: time.Now().Add(48 * time.Hour),
			Recipient: "A. Jones", Address: "1 Quay St " + id, Lat: 51.5, Lon: -0.1, RadiusM: 80})
		if err != nil {
			t.Fatal(err)
		}
		entries[id] = e
	}
	// Sent once (sends, the order sequence number), then: o-1 delivered, o-2 received, o-3 pending,
	// o-4 cancelled.
	sctx, scancel := context.WithCancel(ctx)
	pub := &sdktest.CountingPublisher{}
	sdone := make(chan error, 1)
	go func() { sdone <- src.RunSender(sctx, pub) }()
	sdktest.WaitFor(t, 10*time.Second, "the orders sent", func() bool { return pub.N.Load() >= 4 })
	scancel()
	if err := <-sdone; err != nil {
		t.Fatal(err)
	}
	event := func(id string, kind sdk.EventKind, seq uint64, at time.Time) {
		e := entries[id]
		u := dispatch.Update{Event: &dispatch.Event{Truck: "truck-1", Sent: at, Event: sdk.Event{Kind: kind, Epoch: ep,
			RecordSeq: seq, Time: at, OrderID: id, Revision: e.Order.Revision, OrderHash: e.Hash, Via: sdk.ViaButton}}}
		if kind == sdk.EventDelivered {
			u.Event.Event.Fix = &sdk.Fix{Time: at, Lat: 51.5, Lon: -0.1, Mode: 3}
		}
		if err := src.Commit(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	event("o-1", sdk.EventReceived, 10001, now)
	event("o-2", sdk.EventReceived, 10002, now)
	event("o-1", sdk.EventDelivered, 10003, now.Add(time.Second))
	if _, err := src.Cancel(ctx, "truck-1", "o-4", "customer away"); err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{}
	for _, id := range []string{"o-1", "o-2"} {
		if tokens[id], err = src.TrackingToken(ctx, "truck-1", id); err != nil {
			t.Fatal(err)
		}
	}
	want, err := src.Orders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}

	cfgPath := filepath.Join(t.TempDir(), "dispatch.toml")
	cfg := fmt.Sprintf(`[broker]
urls = ["mqtts://127.0.0.1:1"]
cert = %q
key = %q
ca = %q
[storage]
engine = "postgres"
dsn = %q
[http]
listen = "127.0.0.1:0"
`, p.CertPath("office"), p.KeyPath("office"), p.CAPath(), dsn)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	const tok = "migrate-test-token-0123456789"
	t.Setenv("WAYBILL_DISPATCH_TOKEN", tok)
	t.Setenv("WAYBILL_DISPATCH_DSN", "")
	migrateCmd := func() (int, string, string) {
		var out, errb strings.Builder
		code := run(ctx, streams{strings.NewReader(""), &out, &errb}, []string{"dispatch", "migrate", "--config", cfgPath, "--from", dir})
		return code, out.String(), errb.String()
	}

	// Refused while the embedded office runs (it holds sender.lock).
	lock, got, _, err := tryLock(dir, "waybill dispatch run")
	if err != nil || !got {
		t.Fatalf("taking the lock: %v %v", got, err)
	}
	code, out, errs := migrateCmd()
	lock.release()
	if code == 0 || !strings.Contains(errs, "sender.lock") || !strings.Contains(errs, "Stop it first") {
		t.Fatalf("migrate while the office runs: exit %d\n%s%s", code, out, errs)
	}

	start := time.Now()
	code, out, errs = migrateCmd()
	t.Logf("first run (%s):\n%s%s", time.Since(start).Round(time.Millisecond), out, errs)
	if code != 0 {
		t.Fatalf("migrate: exit %d", code)
	}
	for _, w := range []string{"orders:        4 copied, 0 already there, 0 differ", "tracking tokens: 2 copied",
		fmt.Sprintf("fixes:         %d copied, 0 already there", nFixes+1), "events:        3 copied, 0 already there",
		"statuses:      1 copied", "store epochs:  1 copied"} {
		if !strings.Contains(out, w) {
			t.Errorf("first run: no %q", w)
		}
	}
	code, out, errs = migrateCmd()
	t.Logf("second run:\n%s%s", out, errs)
	if code != 0 {
		t.Fatalf("migrate again: exit %d", code)
	}
	for _, w := range []string{"orders:        0 copied, 4 already there, 0 differ", "tracking tokens: 0 copied",
		fmt.Sprintf("fixes:         0 copied, %d already there", nFixes+1), "events:        0 copied, 3 already there",
		"statuses:      0 copied, 1 already there", "store epochs:  0 copied, 1 already there"} {
		if !strings.Contains(out, w) {
			t.Errorf("second run: no %q", w)
		}
	}

	// The database holds what the embedded office held.
	octx, ocancel := context.WithTimeout(ctx, 30*time.Second)
	defer ocancel()
	dst, err := postgres.Open(octx, postgres.Options{DSN: dsn, Certificate: cert, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	got2, err := dst.Orders(ctx)
	if err != nil || len(got2) != len(want) {
		t.Fatalf("orders in PostgreSQL: %v, %d, want %d", err, len(got2), len(want))
	}
	for i, w := range want {
		g := got2[i]
		a, _ := json.Marshal(w)
		b, _ := json.Marshal(g)
		// PostgreSQL keeps the next attempt to the microsecond, and a zero one (as soon as possible) as the
		// update time.
		w.NextAttempt = w.NextAttempt.Truncate(time.Microsecond)
		if w.NextAttempt.IsZero() {
			g.NextAttempt = time.Time{}
		}
		a, _ = json.Marshal(w)
		b, _ = json.Marshal(g)
		if string(a) != string(b) {
			t.Errorf("order %d:\nembedded %s\npostgres %s", i, a, b)
		}
	}
	var epoch []byte
	var seq int64
	if err := dst.Pool().QueryRow(ctx, "SELECT epoch FROM truck_epochs WHERE truck = 'truck-1'").Scan(&epoch); err != nil ||
		sdk.Epoch(epoch) != ep {
		t.Errorf("truck-1's store epoch: %v %x", err, epoch)
	}
	if err := dst.Pool().QueryRow(ctx, "SELECT last FROM signer_seq WHERE identity = 'office'").Scan(&seq); err != nil || seq == 0 {
		t.Errorf("the order sequence number: %v %d", err, seq)
	}

	// `waybill dispatch run` on PostgreSQL serves it (the broker is unreachable: the API works regardless).
	rctx, rcancel := context.WithCancel(ctx)
	outb := &sdktest.SyncBuffer{}
	errb := &sdktest.SyncBuffer{}
	rdone := make(chan int, 1)
	go func() {
		rdone <- run(rctx, streams{strings.NewReader(""), outb, errb}, []string{"dispatch", "run", "--config", cfgPath})
	}()
	defer func() {
		rcancel()
		if code := <-rdone; code != 0 {
			t.Errorf("dispatch run: exit %d\n%s", code, errb.Tail(20))
		}
	}()
	var base string
	sdktest.WaitFor(t, 20*time.Second, "the office's address", func() bool {
		m := regexp.MustCompile(`API on (http://\S+)`).FindStringSubmatch(outb.String())
		if m != nil {
			base = m[1]
		}
		return m != nil
	})
	get := func(path string, auth bool) (int, []byte) {
		req, _ := http.NewRequest("GET", base+path, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	from, to := t0.Add(-time.Minute).Format(time.RFC3339), t0.Add(2*time.Hour).Format(time.RFC3339)
	code, body := get("/api/trucks/truck-1/track?format=csv&from="+from+"&to="+to, true)
	rows, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if code != 200 || err != nil || len(rows) != nFixes+1 {
		t.Errorf("track export: %d %v, %d rows, want a header and %d fixes", code, err, len(rows), nFixes)
	}
	code, body = get("/api/proofs?truck=truck-1", true) // the last 24 h
	if code != 200 || !strings.Contains(string(body), `"o-1"`) {
		t.Errorf("proofs: %d %s", code, body)
	}
	code, body = get("/api/orders/truck-1/o-1", true)
	var one struct {
		State    string
		History  []json.RawMessage
		Tracking struct{ Token string }
	}
	if err := json.Unmarshal(body, &one); code != 200 || err != nil || one.State != "delivered" || len(one.History) != 2 ||
		one.Tracking.Token != tokens["o-1"] {
		t.Errorf("o-1: %d %v: state %s, %d events, token %q (want %q)", code, err, one.State, len(one.History),
			one.Tracking.Token, tokens["o-1"])
	}
	for id, tk := range tokens {
		code, body = get("/t/"+tk+"/status", false)
		var v struct{ Order, State string }
		if err := json.Unmarshal(body, &v); code != 200 || err != nil || v.Order != id {
			t.Errorf("tracking link of %s: %d %v %s", id, code, err, body)
		}
	}
}
