package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/truck"
	"github.com/waybill-iot/waybill/store"
)

// TestStoreInspectWhileOpen: inspect reads a store another handle holds open and locked (a running agent),
// lanes oldest first, records decoded.
func TestStoreInspectWhileOpen(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "queue.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	for i := range 3 {
		e, _ := truck.EncodeFix(sdk.Fix{Time: time.Now().UTC(), Lat: 52.5 + float64(i)/1000, Lon: 13.4, Mode: 3})
		st.Append(ctx, e)
	}
	ev, _ := truck.EncodeEvent(sdk.Event{Kind: sdk.EventDelivered, Time: time.Now().UTC(), OrderID: "o-7", Revision: 2, Via: sdk.ViaButton})
	st.Append(ctx, ev)

	var out, errb strings.Builder
	if code := run(ctx, streams{nil, &out, &errb}, []string{"store", "inspect", dir}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	text := out.String()
	for _, want := range []string{"critical: 1 records", "normal:   3 records", "delivered order o-7 rev 2 via button",
		"52.500000,13.400000", "origin: created since "} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Index(text, "o-7") > strings.Index(text, "52.500000") {
		t.Errorf("critical lane not first:\n%s", text)
	}
	out.Reset()
	if code := run(ctx, streams{nil, &out, &errb}, []string{"store", "inspect", "--json", dir}); code != 0 {
		t.Fatal(errb.String())
	}
	var r inspectReport
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil || len(r.Records) != 4 {
		t.Fatalf("json: %v, %d records", err, len(r.Records))
	}
	if epoch := fmt.Sprintf("%016x", st.Epoch()); r.Epoch != epoch || r.Origin.Kind != "created" || r.Records[0].Epoch != epoch ||
		r.Stats.Critical.Records != 1 {
		t.Fatalf("json: epoch %s, origin %+v, first record %+v, stats %+v; want epoch %s, created", r.Epoch, r.Origin,
			r.Records[0], r.Stats.Stats, epoch)
	}
	if strings.Contains(out.String(), `"Origin"`) {
		t.Errorf("json has the store's raw Origin in its stats:\n%s", out.String())
	}
	// The agent's store is untouched: still 4 records, and writable.
	if s := st.Stats(); s.Critical.Records+s.Normal.Records != 4 {
		t.Fatalf("store changed: %+v", s)
	}
	if _, err := st.Append(ctx, ev); err != nil {
		t.Fatal(err)
	}
}

// TestStoreInspectSalvaged: a store salvaged from a damaged file shows its origin (salvaged, when, the
// previous epoch, what happened), and each record its own origin epoch: the old file's for the records
// carried over, the new one's for records appended since; events are decoded with the record's epoch.
func TestStoreInspectSalvaged(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "queue.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	old := st.Epoch()
	pad := strings.Repeat("x", 50)
	var entries []store.Entry
	for i := range 1500 { // many pages, so that one damaged page loses only some
		ev, err := truck.EncodeEvent(sdk.Event{Kind: sdk.EventDelivered, Time: time.Now().UTC(),
			OrderID: fmt.Sprintf("o-%05d-%s", i, pad), Revision: 1, Via: sdk.ViaButton})
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, ev)
	}
	if _, err := st.Append(ctx, entries...); err != nil {
		t.Fatal(err)
	}
	st.Close()
	sdktest.DamagePages(t, path, []byte("o-00700-"), false)
	if st, err = store.Open(path, store.Options{}); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if o := st.Origin(); o.Kind != store.OriginSalvaged || o.PreviousEpoch != old {
		t.Fatalf("origin %+v, want salvaged from %016x", o, old)
	}
	ev, _ := truck.EncodeEvent(sdk.Event{Kind: sdk.EventFailed, Time: time.Now().UTC(), OrderID: "o-new", Revision: 3,
		Via: sdk.ViaHTTP})
	if _, err := st.Append(ctx, ev); err != nil {
		t.Fatal(err)
	}
	oldHex, newHex := fmt.Sprintf("%016x", old), fmt.Sprintf("%016x", st.Epoch())

	var out, errb strings.Builder
	if code := run(ctx, streams{nil, &out, &errb}, []string{"store", "inspect", "--json", "--limit", "0", dir}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var r inspectReport
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
		t.Fatal(err)
	}
	if r.Epoch != newHex || r.Origin.Kind != "salvaged" || r.Origin.PreviousEpoch != oldHex || r.Origin.Since.IsZero() ||
		r.Origin.Detail == "" {
		t.Fatalf("report epoch %s, origin %+v; want salvaged from %s into %s", r.Epoch, r.Origin, oldHex, newHex)
	}
	carried, fresh := 0, 0
	for _, rec := range r.Records {
		switch {
		case strings.Contains(rec.Summary, "o-new"):
			fresh++
			if rec.Epoch != newHex || !strings.HasPrefix(rec.Summary, "failed order o-new rev 3") {
				t.Errorf("new record: %+v, want epoch %s", rec, newHex)
			}
		case strings.HasPrefix(rec.Summary, "delivered order o-0"):
			carried++
			if rec.Epoch != oldHex {
				t.Errorf("salvaged record %d: epoch %s, want %s", rec.Seq, rec.Epoch, oldHex)
			}
		default:
			t.Errorf("unexpected record %+v", rec)
		}
	}
	if fresh != 1 || carried < 1000 || carried >= 1500 {
		t.Fatalf("%d records carried over (of 1500, one page lost), %d new", carried, fresh)
	}

	out.Reset()
	if code := run(ctx, streams{nil, &out, &errb}, []string{"store", "inspect", dir}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	text := out.String()
	for _, want := range []string{"epoch " + newHex, "origin: salvaged since ", "(previous epoch " + oldHex + "): ",
		"(epoch " + oldHex + ")"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}

// TestStoreInspectLimitAndOrderBook (issue 11.9): the limit is the agent's store.max_mb from --config (or
// says it is not in the file), not the 1 TiB the copy is opened with; the order book shows counts by state
// and the open orders.
func TestStoreInspectLimitAndOrderBook(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "queue.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	put := func(id string, state truck.State) {
		raw, err := json.Marshal(truck.Entry{Order: sdk.Order{ID: id, Revision: 1, Truck: "truck-1", Expires: now.Add(time.Hour),
			Recipient: "A. Jones", Address: "1 Quay St"}, State: state, Received: now})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Update(ctx, func(tx *store.Tx) error { return tx.Put(bookBucket, []byte(id), raw) }); err != nil {
			t.Fatal(err)
		}
	}
	put("o-open", truck.StateActive)
	put("o-done", truck.StateDelivered)
	put("o-done2", truck.StateDelivered)
	put("o-gone", truck.StateCancelled)
	st.Close()

	conf := filepath.Join(t.TempDir(), "agent.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("data_dir = %q\n[store]\nmax_mb = 16\n", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, "store", "inspect", "--config", conf)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"limit 16 MiB (store.max_mb = 16 in " + conf, "order book: 1 active, 2 delivered, 0 failed, 1 cancelled",
		"open o-open", "A. Jones, 1 Quay St"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "1099511627776") || strings.Contains(out, "o-done ") {
		t.Errorf("output shows the 1 TiB limit or a closed order as open:\n%s", out)
	}
	code, out, errOut = runCmd(t, "store", "inspect", "--json", dir)
	var r inspectReport
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("json: exit %d: %s\n%s", code, errOut, out)
	}
	if r.Stats.MaxBytes != 0 || r.Limit.Bytes != 0 || !strings.Contains(r.Limit.Source, "store.max_mb") ||
		r.Book.Counts["delivered"] != 2 || len(r.Book.Open) != 1 || r.Book.Open[0].ID != "o-open" {
		t.Fatalf("json without --config: limit %+v, max %d, book %+v", r.Limit, r.Stats.MaxBytes, r.Book)
	}
}
