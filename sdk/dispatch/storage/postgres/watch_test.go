package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/pgtest"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// watcher collects what one process's Watch reports.
type watcher struct {
	mu  sync.Mutex
	got []storage.Change
}

func (w *watcher) add(c storage.Change) {
	w.mu.Lock()
	w.got = append(w.got, c)
	w.mu.Unlock()
}

func (w *watcher) changes() []storage.Change {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]storage.Change(nil), w.got...)
}

// TestWatchSeesTheOtherProcesses: two processes on one database. What A commits (a new order, fixes, an
// event, a status) reaches B's Watch as changes, with the newest fix and the status's state; A's own Watch
// reports none of its own commits. A duplicate commit of fixes announces nothing. Both Watch calls return
// nil when their context ends.
func TestWatchSeesTheOtherProcesses(t *testing.T) {
	dsn := pgtest.Start(t).Database(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx, cancel := context.WithCancel(context.Background())
	var wa, wb watcher
	var wg sync.WaitGroup
	for _, w := range []struct {
		st interface {
			Watch(context.Context, func(storage.Change)) error
		}
		into *watcher
	}{{a, &wa}, {b, &wb}} {
		wg.Go(func() {
			if err := w.st.Watch(ctx, w.into.add); err != nil {
				t.Errorf("Watch: %v", err)
			}
		})
	}
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(300 * time.Millisecond) // both listening

	bg := context.Background()
	t0 := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	e, err := a.Create(bg, sdk.Order{ID: "o-1", Truck: "truck-1", Expires: time.Now().Add(time.Hour), Address: "Quay",
		Lat: 51.5, Lon: -0.1, RadiusM: 80})
	if err != nil {
		t.Fatal(err)
	}
	fixes := []dispatch.Fix{
		{Truck: "truck-1", Epoch: sdk.Epoch{1}, Seq: 1, Fix: sdk.Fix{Time: t0.Add(2 * time.Second), Lat: 51.6, Lon: -0.1, Mode: 3}},
		{Truck: "truck-1", Epoch: sdk.Epoch{1}, Seq: 2, Fix: sdk.Fix{Time: t0, Lat: 51.5, Lon: -0.1, Mode: 3}},
	}
	for range 2 { // the second is a duplicate: nothing new, nothing announced
		if err := a.Commit(bg, dispatch.Update{Fixes: fixes}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Commit(bg, dispatch.Update{Event: &dispatch.Event{Truck: "truck-1", Sent: t0, Event: sdk.Event{
		Kind: sdk.EventReceived, Epoch: sdk.Epoch{1}, RecordSeq: 3, Time: t0, OrderID: "o-1", Revision: 1,
		OrderHash: e.Hash, Via: sdk.ViaAuto}}}); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(bg, dispatch.Update{Status: &dispatch.Status{Truck: "truck-1", Status: sdk.Status{
		State: sdk.StateOnline, Time: t0}}}); err != nil {
		t.Fatal(err)
	}
	sdktest.WaitFor(t, 10*time.Second, "B told of A's four changes", func() bool { return len(wb.changes()) >= 4 })
	time.Sleep(200 * time.Millisecond) // anything more would come now
	got := wb.changes()
	if len(got) != 4 {
		t.Fatalf("B got %d changes, want 4: %+v", len(got), got)
	}
	if c := got[0]; c.Kind != storage.ChangeOrder || c.Truck != "truck-1" || c.Order != "o-1" {
		t.Errorf("first change %+v, want the order o-1", c)
	}
	if c := got[1]; c.Kind != storage.ChangeFix || c.Fix == nil || !c.Fix.Time.Equal(t0.Add(2*time.Second)) || c.Fix.Lat != 51.6 {
		t.Errorf("second change %+v, want the newest fix", c)
	}
	if c := got[2]; c.Kind != storage.ChangeOrder || c.Order != "o-1" {
		t.Errorf("third change %+v, want the order o-1 (its event)", c)
	}
	if c := got[3]; c.Kind != storage.ChangeStatus || !c.Online || !c.Time.Equal(t0) {
		t.Errorf("fourth change %+v, want truck-1 online at %v", c, t0)
	}
	if own := wa.changes(); len(own) != 0 {
		t.Errorf("A was told of its own commits: %+v", own)
	}

	// The listening connections are killed (a database restart, a proxy's idle timeout): Watch listens
	// again, and later changes arrive.
	var killed int
	if err := a.Pool().QueryRow(bg, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE query LIKE 'LISTEN %'`).Scan(&killed); err != nil || killed != 2 {
		t.Fatalf("terminated %d listening connections (%v), want 2", killed, err)
	}
	sdktest.WaitFor(t, 20*time.Second, "B told of a change after its connection was killed", func() bool {
		if _, err := a.Cancel(bg, "truck-1", "o-1", "test"); err != nil {
			t.Fatal(err)
		}
		return len(wb.changes()) > 4
	})
}
