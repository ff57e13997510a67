package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// TestStoreRestoredFromBackup: the truck's data directory is restored from an older copy of itself (an SD
// image from a backup): queue.db and queue.db.seq go back, with the same store epoch, to before a delivery
// and some fixes that dispatch has. The agent then hands out the same record numbers again for new records:
// the next delivery and fixes. Dispatch keeps them beside the first ones (same identity, other content)
// rather than dropping them as duplicates after receipting them, so the new delivery reaches the outbox
// and the archive and every fix stored after the restore is in the archive.
func TestStoreRestoredFromBackup(t *testing.T) {
	r := newRig(t, sdktest.Options{})
	const name = "truck-0001"
	r.b.Truck(name)
	of := r.startOffice(officeOptions{})
	a := r.newAgent(name, agentOptions{GPS: r.startGPS(8)})
	a.start(false)
	r.createOrders(name, "o-1", "o-2")
	a.waitOrders(20*time.Second, "o-1", "o-2")
	a.finish(60 * time.Second) // drained: the backup holds no record dispatch lacks

	backup := t.TempDir()
	files := []string{a.queueDB(), a.queueDB() + ".seq"}
	copyFiles := func(from, to func(string) string) {
		t.Helper()
		for _, f := range files {
			b, err := os.ReadFile(from(f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(to(f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	inBackup := func(f string) string { return filepath.Join(backup, filepath.Base(f)) }
	same := func(f string) string { return f }
	copyFiles(same, inBackup)

	a.start(false)
	a.act("o-1", "delivered", "")
	time.Sleep(3 * time.Second) // fixes numbered after the backup
	a.finish(60 * time.Second)
	ctx := context.Background()
	counts := func() (fixes, events int) {
		t.Helper()
		c, err := of.Archive.Counts(name)
		if err != nil {
			t.Fatal(err)
		}
		return c.Fixes, c.Events
	}
	fixesBefore, eventsBefore := counts()
	epoch := a.epochs[len(a.epochs)-1]

	copyFiles(inBackup, same) // the restore
	a.start(false)
	h := a.waitHealth(5*time.Second, "healthz", func(health) bool { return true })
	if h.Store.Epoch != epoch {
		t.Fatalf("after the restore the store's epoch is %x, want the backup's %x", h.Store.Epoch, epoch)
	}
	a.waitOrders(20*time.Second, "o-2")
	a.act("o-2", "delivered", "")
	time.Sleep(3 * time.Second)
	stored := int(a.metric(t, "waybill_gps_fixes_stored_total"))
	a.finish(60 * time.Second)
	fixesAfter, eventsAfter := counts()

	waitFor(t, 20*time.Second, "o-2 delivered in the outbox", func() bool {
		e, err := of.Outbox.Get(ctx, name, "o-2")
		return err == nil && e.State == dispatch.StateDelivered
	}, func() string { return r.handled.summary() })
	events, err := of.Archive.Events(name)
	if err != nil {
		t.Fatal(err)
	}
	var delivered []string
	for _, e := range events {
		if e.Event.Kind == sdk.EventDelivered {
			delivered = append(delivered, e.Event.OrderID)
		}
	}
	if len(delivered) != 2 {
		t.Errorf("the archive holds deliveries of %v, want o-1 and o-2", delivered)
	}
	if stored == 0 || fixesAfter-fixesBefore < stored {
		t.Errorf("after the restore the agent stored at least %d fixes; the archive gained %d", stored, fixesAfter-fixesBefore)
	}
	t.Logf("store restored from a backup of epoch %x: the archive went from %d fixes and %d events to %d and %d "+
		"(the agent stored %d fixes after the restore, before its drain); deliveries %v",
		epoch, fixesBefore, eventsBefore, fixesAfter, eventsAfter, stored, delivered)
}
