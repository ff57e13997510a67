package archive_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/archive"
)

// TestArchiveKeepsReusedIdentities: a truck whose store went back to an older copy of itself (an SD image
// restored from a backup) numbers new records again with (epoch, seq) the archive already holds. Such a
// record has other content: it is kept beside the first, not dropped as a duplicate (it is receipted, and
// the truck deletes it). Re-sends of either, an event signed again included, stay duplicates; the
// records survive a reopen and are read in identity order.
func TestArchiveKeepsReusedIdentities(t *testing.T) {
	path := filepath.Join(t.TempDir(), archive.File)
	a := openArchive(t, path)
	ctx := context.Background()
	e := sdk.Epoch{7}
	fix := func(q uint64, at int64) dispatch.Fix {
		return dispatch.Fix{Truck: "truck-1", Epoch: e, Seq: q, Fix: sdk.Fix{Time: time.Unix(1700000000+at, 0).UTC(),
			Lat: 51.5, Lon: -0.1, Mode: 3, Sats: 9, Has: sdk.FixSats}}
	}
	event := func(q uint64, at int64, kind sdk.EventKind) *dispatch.Event {
		return &dispatch.Event{Truck: "truck-1", ID: sdk.MsgID{byte(at % 256)}, Sent: time.Unix(1700000000+at, 0).UTC(),
			Event: sdk.Event{Kind: kind, Epoch: e, RecordSeq: q, Time: time.Unix(1700000000+at, 0).UTC(),
				OrderID: "o-1", Revision: 1, Via: sdk.ViaButton}}
	}
	commit := func(u dispatch.Update) {
		t.Helper()
		if err := a.Commit(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	// Before the backup was restored: fixes 1 and 2, event 3.
	commit(dispatch.Update{Fixes: []dispatch.Fix{fix(1, 10), fix(2, 11)}})
	commit(dispatch.Update{Event: event(3, 12, sdk.EventReceived)})
	// After: the store hands out 2 and 3 again, for a new fix and the delivery.
	for range 2 {
		commit(dispatch.Update{Fixes: []dispatch.Fix{fix(2, 500), fix(1, 10)}}) // 1 is a true re-send
		delivered := event(3, 501, sdk.EventDelivered)
		commit(dispatch.Update{Event: delivered})
		again := *delivered
		again.ID, again.Sent = sdk.MsgID{99}, again.Sent.Add(time.Minute) // signed again, the same record
		commit(dispatch.Update{Event: &again})
		commit(dispatch.Update{Event: event(3, 12, sdk.EventReceived)}) // the first one, late
	}
	check := func(when string) {
		t.Helper()
		c, err := a.Counts("truck-1")
		if err != nil || c.Fixes != 3 || c.Events != 2 {
			t.Fatalf("%s: counts %+v, %v; want 3 fixes and 2 events", when, c, err)
		}
		fixes, err := a.Fixes("truck-1")
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, f := range fixes {
			got = append(got, f.Fix.Time.Unix()-1700000000)
		}
		if len(fixes) != 3 || fixes[0].Seq != 1 || fixes[1].Seq != 2 || fixes[2].Seq != 2 || got[1] != 11 || got[2] != 500 {
			t.Errorf("%s: fixes (seq, time) %v %v; want seq 1, 2, 2 at 10, 11, 500", when, fixes, got)
		}
		events, err := a.Events("truck-1")
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != 2 || events[0].Event.Kind != sdk.EventReceived || events[1].Event.Kind != sdk.EventDelivered ||
			events[1].ID != (sdk.MsgID{byte(501 % 256)}) {
			t.Errorf("%s: events %+v; want received, then the first copy of delivered", when, events)
		}
	}
	check("after the commits")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a = openArchive(t, path)
	defer a.Close()
	check("after a reopen")
}

// TestArchiveDuplicateOfAnOlderEncoding: a fix stored in another encoding of the same content (an older
// version's, here re-indented JSON) is still the same record when it is sent again: no second copy.
func TestArchiveDuplicateOfAnOlderEncoding(t *testing.T) {
	path := filepath.Join(t.TempDir(), archive.File)
	a := openArchive(t, path)
	ctx := context.Background()
	f := dispatch.Fix{Truck: "truck-1", Epoch: sdk.Epoch{3}, Seq: 9, Fix: sdk.Fix{Time: time.Unix(1700000000, 0).UTC(),
		Lat: 51.5, Lon: -0.1, Mode: 3, Sats: 9, Has: sdk.FixSats}}
	if err := a.Commit(ctx, dispatch.Update{Fixes: []dispatch.Fix{f}}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("trucks")).Bucket([]byte("truck-1")).Bucket([]byte("fixes"))
		k, v := b.Cursor().First()
		var out bytes.Buffer
		if err := json.Indent(&out, v, "", "  "); err != nil {
			return err
		}
		return b.Put(bytes.Clone(k), out.Bytes())
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	a = openArchive(t, path)
	defer a.Close()
	if err := a.Commit(ctx, dispatch.Update{Fixes: []dispatch.Fix{f}}); err != nil {
		t.Fatal(err)
	}
	if c, err := a.Counts("truck-1"); err != nil || c.Fixes != 1 {
		t.Fatalf("counts %+v, %v; want the one fix", c, err)
	}
}

// TestFixPages: FixPage reads a truck's fixes in pages that together are Fixes, reused identities
// included, whatever the page size; an unknown truck has none, and a page size below 1 is an error.
func TestFixPages(t *testing.T) {
	a := openArchive(t, filepath.Join(t.TempDir(), archive.File))
	defer a.Close()
	ctx := context.Background()
	var batch []dispatch.Fix
	for q := range uint64(25) {
		batch = append(batch, dispatch.Fix{Truck: "truck-1", Epoch: sdk.Epoch{byte(1 + q%2)}, Seq: q, Fix: sdk.Fix{
			Time: time.Unix(1700000000+int64(q), 0).UTC(), Lat: 51.5, Lon: -0.1, Mode: 3}})
	}
	reused := batch[3]
	reused.Fix.Time = reused.Fix.Time.Add(time.Hour)
	for _, u := range [][]dispatch.Fix{batch, {reused}} {
		if err := a.Commit(ctx, dispatch.Update{Fixes: u}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := a.Fixes("truck-1")
	if err != nil || len(all) != 26 {
		t.Fatalf("Fixes: %d, %v; want 26", len(all), err)
	}
	for _, size := range []int{1, 7, 13, 26, 27, 1000} {
		var got []dispatch.Fix
		var after []byte
		pages := 0
		for {
			page, next, err := a.FixPage("truck-1", after, size)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > size {
				t.Fatalf("page of %d for a limit of %d", len(page), size)
			}
			got, pages = append(got, page...), pages+1
			if next == nil {
				break
			}
			after = next
		}
		if len(got) != len(all) {
			t.Fatalf("pages of %d: %d fixes in %d pages, want %d", size, len(got), pages, len(all))
		}
		for i := range got {
			if got[i] != all[i] {
				t.Fatalf("pages of %d: fix %d is %+v, Fixes has %+v", size, i, got[i], all[i])
			}
		}
	}
	if page, next, err := a.FixPage("truck-2", nil, 10); err != nil || len(page) != 0 || next != nil {
		t.Errorf("unknown truck: %v %v %v", page, next, err)
	}
	if _, _, err := a.FixPage("truck-1", nil, 0); err == nil {
		t.Error("a page limit of 0 was accepted")
	}
}
