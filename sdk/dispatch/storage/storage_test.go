package storage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
)

// Every case runs on both engines.
func TestStorage(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, st storage.Store, c *clock)
	}{
		{"orders", testOrders},
		{"fixes and track", testTrack},
		{"events apply once", testEvents},
		{"reused record identities are kept", testReusedIdentities},
		{"status and trucks", testTrucks},
		{"new truck store reopens orders", testNewStore},
		{"sender sends until confirmed", testSender},
		{"bad input", testBadInput},
		{"tracking tokens", testTracking},
		{"one truck", testOneTruck},
		{"prune fixes", testPrune},
	}
	id := newIdentity(t)
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					c := newClock()
					tc.run(t, e.open(t, id, c.Now), c)
				})
			}
		})
	}
}

func testOrders(t *testing.T, st storage.Store, c *clock) {
	ctx := context.Background()
	e, err := st.Create(ctx, testOrder("o-1", "truck-1", c.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if e.State != dispatch.StatePending || e.Order.Revision != 1 || e.Order.Created.IsZero() {
		t.Fatalf("created %+v", e)
	}
	again, err := st.Create(ctx, testOrder("o-1", "truck-1", c.Now()))
	if err != nil || again.Hash != e.Hash {
		t.Fatalf("a repeated create: %v, hash %x want %x", err, again.Hash, e.Hash)
	}
	other := testOrder("o-1", "truck-1", c.Now())
	other.Address = "2 Quay St"
	if _, err := st.Create(ctx, other); !errors.Is(err, dispatch.ErrExists) {
		t.Fatalf("create with other content: %v, want ErrExists", err)
	}
	c.Add(time.Minute)
	rev, err := st.Revise(ctx, other)
	if err != nil || rev.Order.Revision != 2 || rev.Order.Address != "2 Quay St" || !rev.Order.Created.Equal(e.Order.Created) {
		t.Fatalf("revise: %v %+v", err, rev.Order)
	}
	if _, err := st.Create(ctx, testOrder("o-2", "truck-2", c.Now())); err != nil {
		t.Fatal(err)
	}
	can, err := st.Cancel(ctx, "truck-1", "o-1", "customer away")
	if err != nil || can.Order.Status != sdk.OrderCancelled || can.Order.Revision != 3 {
		t.Fatalf("cancel: %v %+v", err, can.Order)
	}
	if _, err := st.Revise(ctx, other); !errors.Is(err, dispatch.ErrCancelled) {
		t.Fatalf("revise a cancelled order: %v", err)
	}
	got, err := st.Order(ctx, "truck-1", "o-1")
	if err != nil || got.Order.Revision != 3 || got.Hash != can.Hash {
		t.Fatalf("order: %v %+v", err, got)
	}
	if _, err := st.Order(ctx, "truck-1", "nope"); !errors.Is(err, dispatch.ErrNotFound) {
		t.Fatalf("missing order: %v", err)
	}
	if _, err := st.Cancel(ctx, "truck-1", "nope", ""); !errors.Is(err, dispatch.ErrNotFound) {
		t.Fatalf("cancel a missing order: %v", err)
	}
	list, err := st.Orders(ctx)
	if err != nil || len(list) != 2 || list[0].Order.ID != "o-1" || list[1].Order.ID != "o-2" {
		t.Fatalf("orders: %v %d", err, len(list))
	}
}

func testTrack(t *testing.T, st storage.Store, c *clock) {
	ctx := context.Background()
	ep := sdk.Epoch{1, 2, 3}
	t0 := c.Now()
	var all []dispatch.Fix
	for i := range 120 {
		all = append(all, fixAt("truck-1", ep, uint64(i+1), t0.Add(time.Duration(i)*10*time.Second)))
	}
	// In batches, the newest first, then the backlog, each batch twice (a redelivery).
	for _, b := range [][]dispatch.Fix{all[100:], all[:50], all[50:100], all[:50]} {
		if err := st.Commit(ctx, dispatch.Update{Fixes: b}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.Track(ctx, "truck-1", t0.Add(100*time.Second), t0.Add(200*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 {
		t.Fatalf("got %d fixes in [100 s, 200 s), want 10", len(got))
	}
	for i, f := range got {
		w := all[10+i]
		if f.Seq != w.Seq || f.Epoch != ep || !f.Fix.Time.Equal(w.Fix.Time) || f.Fix.Lat != w.Fix.Lat ||
			f.Fix.Speed != w.Fix.Speed || f.Fix.Course != w.Fix.Course || f.Fix.Sats != w.Fix.Sats ||
			f.Fix.HDOP != w.Fix.HDOP || f.Fix.Alt != w.Fix.Alt || f.Fix.Has != w.Fix.Has || f.Fix.Mode != 3 {
			t.Fatalf("fix %d: %+v, want %+v", i, f, w)
		}
	}
	whole, err := st.Track(ctx, "truck-1", t0, t0.Add(time.Hour))
	if err != nil || len(whole) != len(all) {
		t.Fatalf("whole track: %v, %d fixes, want %d", err, len(whole), len(all))
	}
	if _, err := st.Track(ctx, "truck-1", t0, t0); !errors.Is(err, storage.ErrBadRange) {
		t.Fatalf("empty range: %v", err)
	}
	trucks, err := st.Trucks(ctx)
	if err != nil || len(trucks) != 1 || trucks[0].LastFix == nil || trucks[0].LastFix.Seq != 120 {
		t.Fatalf("trucks: %v %+v", err, trucks)
	}
}

func testEvents(t *testing.T, st storage.Store, c *clock) {
	ctx := context.Background()
	e, err := st.Create(ctx, testOrder("o-1", "truck-1", c.Now()))
	if err != nil {
		t.Fatal(err)
	}
	ep := sdk.Epoch{9}
	c.Add(time.Minute)
	rcv := eventFor(e, sdk.EventReceived, ep, 7, c.Now())
	for range 2 { // the second is a redelivery
		if err := st.Commit(ctx, rcv); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := st.Order(ctx, "truck-1", "o-1")
	if got.State != dispatch.StateReceived || got.Confirmed != 1 {
		t.Fatalf("after received: %s confirmed %d", got.State, got.Confirmed)
	}
	c.Add(time.Hour)
	del := eventFor(e, sdk.EventDelivered, ep, 8, c.Now())
	del.Event.Event.Fix = &sdk.Fix{Time: c.Now(), Lat: 51.5, Lon: -0.1, Mode: 3}
	if err := st.Commit(ctx, del); err != nil {
		t.Fatal(err)
	}
	got, _ = st.Order(ctx, "truck-1", "o-1")
	if got.State != dispatch.StateDelivered || got.LastEvent == nil || got.LastEvent.Fix == nil {
		t.Fatalf("after delivered: %s %+v", got.State, got.LastEvent)
	}
	if _, err := st.Cancel(ctx, "truck-1", "o-1", ""); !errors.Is(err, dispatch.ErrClosed) {
		t.Fatalf("cancel a delivered order: %v", err)
	}
	// An event about an order the store does not hold is archived and changes nothing.
	stray := eventFor(dispatch.Entry{Order: sdk.Order{ID: "zz", Truck: "truck-1", Revision: 1}}, sdk.EventReceived, ep, 9, c.Now())
	if err := st.Commit(ctx, stray); err != nil {
		t.Fatal(err)
	}
	evs, err := st.Events(ctx, "truck-1", time.Time{}, c.Now().Add(time.Second))
	if err != nil || len(evs) != 3 {
		t.Fatalf("events: %v %d, want 3", err, len(evs))
	}
	if evs[1].Event.Kind != sdk.EventDelivered || evs[1].Event.Fix == nil {
		t.Fatalf("second event %+v", evs[1])
	}
}

func testTrucks(t *testing.T, st storage.Store, c *clock) {
	ctx := context.Background()
	older := dispatch.Status{Truck: "truck-2", Status: sdk.Status{State: sdk.StateOffline, Time: c.Now()}}
	newer := dispatch.Status{Truck: "truck-2", Status: sdk.Status{State: sdk.StateOnline, Time: c.Now().Add(time.Second),
		Health: &sdk.Health{QueueDepth: 42, CertDaysLeft: 300}}}
	for _, s := range []dispatch.Status{newer, older} { // the older one arrives late and is not kept
		if err := st.Commit(ctx, dispatch.Update{Status: &s}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Create(ctx, testOrder("o-1", "truck-1", c.Now())); err != nil {
		t.Fatal(err)
	}
	trucks, err := st.Trucks(ctx)
	if err != nil || len(trucks) != 2 || trucks[0].Name != "truck-1" || trucks[1].Name != "truck-2" {
		t.Fatalf("trucks: %v %+v", err, trucks)
	}
	s := trucks[1].Status
	if s == nil || s.Status.State != sdk.StateOnline || s.Status.Health == nil || s.Status.Health.QueueDepth != 42 ||
		s.Status.Health.CertDaysLeft != 300 {
		t.Fatalf("truck-2 status %+v", s)
	}
	if trucks[0].Status != nil || trucks[0].LastFix != nil {
		t.Fatalf("truck-1 has only an order: %+v", trucks[0])
	}
}

func testNewStore(t *testing.T, st storage.Store, c *clock) {
	ctx := context.Background()
	e, err := st.Create(ctx, testOrder("o-1", "truck-1", c.Now()))
	if err != nil {
		t.Fatal(err)
	}
	online := func(ep sdk.Epoch) dispatch.Status {
		return dispatch.Status{Truck: "truck-1", Changed: true, Status: sdk.Status{State: sdk.StateOnline, Time: c.Now(),
			Health: &sdk.Health{StoreEpoch: ep, StoreOrigin: "created"}}}
	}
	if ch, err := st.NoteStatus(ctx, online(sdk.Epoch{1})); err != nil || ch != nil {
		t.Fatalf("first epoch: %v %+v", err, ch)
	}
	if err := st.Commit(ctx, eventFor(e, sdk.EventReceived, sdk.Epoch{1}, 1, c.Now())); err != nil {
		t.Fatal(err)
	}
	ch, err := st.NoteStatus(ctx, online(sdk.Epoch{2}))
	if err != nil || ch == nil || ch.Reopened != 1 {
		t.Fatalf("new epoch: %v %+v", err, ch)
	}
	got, _ := st.Order(ctx, "truck-1", "o-1")
	if got.State != dispatch.StatePending || got.Awaiting != (sdk.Epoch{2}) {
		t.Fatalf("reopened: %s awaiting %x", got.State, got.Awaiting)
	}
	if ch, err := st.NoteStatus(ctx, online(sdk.Epoch{2})); err != nil || ch != nil {
		t.Fatalf("same epoch again: %v %+v", err, ch)
	}
}

func testSender(t *testing.T, st storage.Store, c *clock) {
	ctx, cancel := context.WithCancel(context.Background())
	pub := &recorder{}
	done := make(chan error, 1)
	go func() { done <- st.RunSender(ctx, pub) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunSender: %v", err)
		}
	}()
	e, err := st.Create(ctx, testOrder("o-1", "truck-1", c.Now()))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first send", func() bool { return pub.count() == 1 })
	// The send is recorded after the publish returned, its backoff counted from the clock then: move the
	// clock only after that, or the next attempt moves along with it (a flake under load).
	waitFor(t, "the first send recorded", func() bool {
		got, err := st.Order(ctx, "truck-1", "o-1")
		return err == nil && got.Sends == 1
	})
	// Not due again until the backoff has passed.
	c.Add(10 * time.Minute)
	waitFor(t, "the re-send after the backoff", func() bool { return pub.count() == 2 })
	if err := st.Commit(ctx, eventFor(e, sdk.EventReceived, sdk.Epoch{1}, 1, c.Now())); err != nil {
		t.Fatal(err)
	}
	got, _ := st.Order(ctx, "truck-1", "o-1")
	if got.Unconfirmed() || got.Sends < 1 {
		t.Fatalf("after the received event: %+v", got)
	}
	n := pub.count()
	c.Add(time.Hour)
	if _, err := st.Create(ctx, testOrder("o-2", "truck-1", c.Now())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second order's send", func() bool { return pub.count() == n+1 })
	pub.mu.Lock()
	last := pub.msgs[len(pub.msgs)-1].Topic
	pub.mu.Unlock()
	if last != "fleet/trucks/truck-1/orders/o-2" {
		t.Fatalf("after confirming o-1 the sender sent %s", last)
	}
}

func testBadInput(t *testing.T, st storage.Store, c *clock) {
	ctx := context.Background()
	bad := testOrder("o 1", "truck-1", c.Now())
	if _, err := st.Create(ctx, bad); err == nil {
		t.Fatal("an order id with a space was accepted")
	}
	bad = testOrder("o-1", "Truck/1", c.Now())
	if _, err := st.Create(ctx, bad); err == nil {
		t.Fatal("a truck name with a slash was accepted")
	}
	bad = testOrder("o-1", "truck-1", c.Now())
	bad.Lat = 91
	if _, err := st.Create(ctx, bad); err == nil {
		t.Fatal("latitude 91 was accepted")
	}
	if err := st.Commit(ctx, dispatch.Update{Status: &dispatch.Status{}}); err == nil {
		t.Fatal("a status without a truck was accepted")
	}
}

// testOneTruck: Truck answers what Trucks says of that truck, follows later commits (a newer fix replaces
// the last one, an older late one does not), and knows nothing of an unknown truck without an error.
func testOneTruck(t *testing.T, st storage.Store, c *clock) {
	ctx := context.Background()
	if got, err := st.Truck(ctx, "truck-9"); err != nil || got.Name != "truck-9" || got.Status != nil || got.LastFix != nil {
		t.Fatalf("unknown truck: %v %+v", err, got)
	}
	ep := sdk.Epoch{4}
	t0 := c.Now()
	for _, tr := range []string{"truck-1", "truck-2"} {
		fs := []dispatch.Fix{fixAt(tr, ep, 1, t0), fixAt(tr, ep, 2, t0.Add(10*time.Second))}
		if err := st.Commit(ctx, dispatch.Update{Fixes: fs}); err != nil {
			t.Fatal(err)
		}
	}
	on := dispatch.Status{Truck: "truck-1", Status: sdk.Status{State: sdk.StateOnline, Time: t0,
		Health: &sdk.Health{QueueDepth: 3}}}
	if err := st.Commit(ctx, dispatch.Update{Status: &on}); err != nil {
		t.Fatal(err)
	}
	got, err := st.Truck(ctx, "truck-1")
	if err != nil || got.Name != "truck-1" || got.Status == nil || got.Status.Status.State != sdk.StateOnline ||
		got.Status.Status.Health == nil || got.Status.Status.Health.QueueDepth != 3 || got.LastFix == nil ||
		got.LastFix.Seq != 2 || got.LastFix.Truck != "truck-1" || !got.LastFix.Fix.Time.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("truck-1: %v %+v", err, got)
	}
	all, err := st.Trucks(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("trucks: %v %+v", err, all)
	}
	if two, err := st.Truck(ctx, "truck-2"); err != nil || two.Status != nil || two.LastFix == nil ||
		two.LastFix.Seq != all[1].LastFix.Seq || two.LastFix.Fix.Lat != all[1].LastFix.Fix.Lat {
		t.Fatalf("truck-2: %v %+v, Trucks says %+v", err, two, all[1])
	}
	// After the first read: a newer fix is the last one, an older one arriving late is not.
	for _, f := range []dispatch.Fix{fixAt("truck-1", ep, 3, t0.Add(time.Minute)), fixAt("truck-1", sdk.Epoch{3}, 9, t0.Add(-time.Hour))} {
		if err := st.Commit(ctx, dispatch.Update{Fixes: []dispatch.Fix{f}}); err != nil {
			t.Fatal(err)
		}
	}
	off := dispatch.Status{Truck: "truck-1", Status: sdk.Status{State: sdk.StateOffline, Time: t0.Add(time.Minute)}}
	if err := st.Commit(ctx, dispatch.Update{Status: &off}); err != nil {
		t.Fatal(err)
	}
	got, err = st.Truck(ctx, "truck-1")
	if err != nil || got.LastFix == nil || got.LastFix.Seq != 3 || got.Status == nil || got.Status.Status.State != sdk.StateOffline {
		t.Fatalf("truck-1 later: %v %+v", err, got)
	}
}

// testPrune: PruneFixes deletes exactly the fixes older than the cutoff (by GPS time, whatever their
// store epoch or record order), at most limit a call, until a call deletes fewer; events, statuses, orders
// and the last fix stay; a fix that comes again after it was pruned (a redelivery) goes at the next pass.
func testPrune(t *testing.T, st storage.Store, c *clock) {
	ctx := context.Background()
	// What must stay: an order delivered two months ago with its proof, and a status from then.
	e, err := st.Create(ctx, testOrder("o-1", "truck-1", c.Now()))
	if err != nil {
		t.Fatal(err)
	}
	del := eventFor(e, sdk.EventDelivered, sdk.Epoch{1}, 100, c.Now().Add(time.Hour))
	del.Event.Event.Fix = &sdk.Fix{Time: c.Now().Add(time.Hour), Lat: 51.5, Lon: -0.1, Mode: 3}
	if err := st.Commit(ctx, del); err != nil {
		t.Fatal(err)
	}
	status := dispatch.Status{Truck: "truck-1", Status: sdk.Status{State: sdk.StateOnline, Time: c.Now()}}
	if err := st.Commit(ctx, dispatch.Update{Status: &status}); err != nil {
		t.Fatal(err)
	}
	c.Add(60 * 24 * time.Hour)
	now := c.Now()
	before := now.Add(-30 * 24 * time.Hour)
	commit := func(fs ...dispatch.Fix) {
		t.Helper()
		if err := st.Commit(ctx, dispatch.Update{Fixes: fs}); err != nil {
			t.Fatal(err)
		}
	}
	var old1, young1 []dispatch.Fix
	for i := range 50 {
		old1 = append(old1, fixAt("truck-1", sdk.Epoch{1}, uint64(i+1), before.Add(time.Duration(i-50)*time.Minute)))
	}
	young1 = append(young1, fixAt("truck-1", sdk.Epoch{1}, 51, before)) // at the cutoff: kept
	for i := range 20 {
		young1 = append(young1, fixAt("truck-1", sdk.Epoch{1}, uint64(52+i), now.Add(time.Duration(i-20)*time.Minute)))
	}
	commit(old1...)
	commit(young1...)
	// truck-2: a new store whose epoch sorts before the old one's, and a GPS clock that jumped back.
	var two []dispatch.Fix
	for i := range 30 {
		two = append(two, fixAt("truck-2", sdk.Epoch{9}, uint64(i+1), before.Add(-time.Duration(40-i)*24*time.Hour)))
	}
	two = append(two, fixAt("truck-2", sdk.Epoch{9}, 31, now.Add(-time.Hour)), fixAt("truck-2", sdk.Epoch{9}, 32, before.Add(-time.Second)))
	commit(two...)
	var young2 []dispatch.Fix
	for i := range 10 {
		young2 = append(young2, fixAt("truck-2", sdk.Epoch{2}, uint64(i+1), now.Add(-time.Duration(i)*time.Minute)))
	}
	commit(young2...)
	const wantOld = 50 + 30 + 1
	const limit = 7
	pass := func() int {
		t.Helper()
		total := 0
		for calls := 0; ; calls++ {
			n, err := st.PruneFixes(ctx, before, limit)
			if err != nil || n > limit || calls > 100 {
				t.Fatalf("PruneFixes: %d, %v after %d calls", n, err, calls)
			}
			total += n
			if n < limit {
				return total
			}
		}
	}
	if n := pass(); n != wantOld {
		t.Fatalf("pruned %d fixes, want the %d older than the cutoff", n, wantOld)
	}
	if n := pass(); n != 0 {
		t.Fatalf("a second pass pruned %d, want 0", n)
	}
	far := now.Add(24 * time.Hour)
	for _, w := range []struct {
		truck string
		want  []dispatch.Fix
	}{{"truck-1", young1}, {"truck-2", append(young2, two[30])}} {
		got, err := st.Track(ctx, w.truck, time.Time{}.Add(time.Hour), far)
		if err != nil || len(got) != len(w.want) {
			t.Fatalf("%s after pruning: %v, %d fixes, want %d", w.truck, err, len(got), len(w.want))
		}
		for _, f := range got {
			if f.Fix.Time.Before(before) {
				t.Fatalf("%s kept a fix of %v, before the cutoff %v", w.truck, f.Fix.Time, before)
			}
		}
	}
	if got, err := st.Order(ctx, "truck-1", "o-1"); err != nil || got.State != dispatch.StateDelivered {
		t.Fatalf("the order after pruning: %v %s", err, got.State)
	}
	evs, err := st.Events(ctx, "truck-1", time.Time{}.Add(time.Hour), far)
	if err != nil || len(evs) != 1 || evs[0].Event.Fix == nil {
		t.Fatalf("the proof of delivery after pruning: %v %+v", err, evs)
	}
	tr, err := st.Truck(ctx, "truck-1")
	if err != nil || tr.Status == nil || tr.LastFix == nil || !tr.LastFix.Fix.Time.Equal(young1[20].Fix.Time) {
		t.Fatalf("truck-1 after pruning: %v %+v", err, tr)
	}
	commit(old1[3]) // the broker delivers an old batch again
	if n := pass(); n != 1 {
		t.Fatalf("the pass after an old fix came again pruned %d, want 1", n)
	}
}

// testReusedIdentities: a truck whose store went back to an older copy of itself (an SD image restored from
// a backup) numbers new records with identities the store already holds. Those records have other content
// and are kept, and the delivery among them is applied to the outbox; re-sends of either stay duplicates.
func testReusedIdentities(t *testing.T, st storage.Store, c *clock) {
	ctx := context.Background()
	e, err := st.Create(ctx, testOrder("o-1", "truck-1", c.Now()))
	if err != nil {
		t.Fatal(err)
	}
	ep := sdk.Epoch{5}
	t0 := c.Now()
	commit := func(u dispatch.Update) {
		t.Helper()
		if err := st.Commit(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	// Before the backup was restored: fixes 1 and 2, received as 3.
	commit(dispatch.Update{Fixes: []dispatch.Fix{fixAt("truck-1", ep, 1, t0), fixAt("truck-1", ep, 2, t0.Add(time.Second))}})
	commit(eventFor(e, sdk.EventReceived, ep, 3, t0.Add(2*time.Second)))
	// After: 2 and 3 again, for a new fix and the delivery; each twice (a lost receipt).
	c.Add(time.Hour)
	for range 2 {
		commit(dispatch.Update{Fixes: []dispatch.Fix{fixAt("truck-1", ep, 2, c.Now())}})
		commit(eventFor(e, sdk.EventDelivered, ep, 3, c.Now().Add(time.Second)))
	}
	got, _ := st.Order(ctx, "truck-1", "o-1")
	if got.State != dispatch.StateDelivered {
		t.Errorf("the delivery under a reused identity: order %s, want delivered", got.State)
	}
	fixes, err := st.Track(ctx, "truck-1", t0.Add(-time.Minute), c.Now().Add(time.Minute))
	if err != nil || len(fixes) != 3 {
		t.Errorf("track: %v, %d fixes; want 3 (2 before the restore, 1 after)", err, len(fixes))
	}
	evs, err := st.Events(ctx, "truck-1", time.Time{}, c.Now().Add(time.Minute))
	if err != nil || len(evs) != 2 || evs[0].Event.Kind != sdk.EventReceived || evs[1].Event.Kind != sdk.EventDelivered {
		t.Errorf("events: %v %+v; want received and delivered", err, evs)
	}
}
