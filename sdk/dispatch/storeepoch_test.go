package dispatch

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// topicsPublisher records the topics it publishes to.
type topicsPublisher struct {
	mu     sync.Mutex
	topics []string
}

func (p *topicsPublisher) Publish(_ context.Context, topic string, _ []byte, _ transport.PublishOptions) error {
	p.mu.Lock()
	p.topics = append(p.topics, topic)
	p.mu.Unlock()
	return nil
}

func (p *topicsPublisher) Wait(context.Context) error { return nil }

// sentIDs returns the order ids published since the last call, sorted.
func (p *topicsPublisher) sentIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for _, tp := range p.topics {
		ids = append(ids, tp[strings.LastIndex(tp, "/")+1:])
	}
	p.topics = nil
	slices.Sort(ids)
	return ids
}

// TestNoteStoreReopensOpenOrders: the first store epoch of a truck is only recorded; a new one reopens the
// truck's open orders (received, arrived, unconfirmed), not delivered, failed, cancelled or expired ones, nor
// another truck's; they are sent at once; the same epoch again does nothing, also in another process; the
// lost store's received event does not confirm a reopened order, the new store's does.
func TestNoteStoreReopensOpenOrders(t *testing.T) {
	office := officeIdentity(t)
	var clockMu sync.Mutex
	now := time.Now().UTC()
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	advance := func(d time.Duration) { clockMu.Lock(); now = now.Add(d); clockMu.Unlock() }
	ob := newOutbox(t, office, OutboxConfig{Clock: clock, BackoffMin: time.Hour, BackoffMax: time.Hour})
	ctx := context.Background()
	const tr = "truck-1"
	create := func(truck, id string, expires time.Duration) Entry {
		t.Helper()
		o := testOrder(truck, id)
		o.Expires = clock().Add(expires)
		e, err := ob.Create(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	apply := func(truck string, ev *sdk.Event) {
		t.Helper()
		if err := ob.Apply(ctx, TruckEvent{Truck: truck, Event: ev}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(truck, id string) Entry {
		t.Helper()
		e, err := ob.Get(ctx, truck, id)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	e1, e2 := sdk.Epoch{1, 1, 1, 1, 1, 1, 1, 1}, sdk.Epoch{2, 2, 2, 2, 2, 2, 2, 2}
	at := clock()
	for _, id := range []string{"received", "arrived", "delivered", "failed", "cancelled", "expiring"} {
		exp := 48 * time.Hour
		if id == "expiring" {
			exp = time.Minute
		}
		e := create(tr, id, exp)
		apply(tr, event(sdk.EventReceived, e, at))
		switch id {
		case "arrived":
			apply(tr, event(sdk.EventArrived, e, at.Add(time.Second)))
		case "delivered":
			apply(tr, event(sdk.EventDelivered, e, at.Add(time.Second)))
		case "failed":
			apply(tr, event(sdk.EventFailed, e, at.Add(time.Second)))
		case "cancelled":
			c, err := ob.Cancel(ctx, tr, id, "")
			if err != nil {
				t.Fatal(err)
			}
			apply(tr, event(sdk.EventReceived, c, at))
		}
	}
	create(tr, "unconfirmed", 48*time.Hour)
	other := create("truck-2", "received", 48*time.Hour)
	apply("truck-2", event(sdk.EventReceived, other, at))

	pub := &topicsPublisher{}
	round := func() []string {
		t.Helper()
		if _, _, err := ob.round(ctx, pub); err != nil {
			t.Fatal(err)
		}
		return pub.sentIDs()
	}
	if got := round(); !slices.Equal(got, []string{"unconfirmed"}) {
		t.Fatalf("first round sent %q, want the unconfirmed order only", got)
	}
	if got := round(); len(got) != 0 {
		t.Fatalf("second round sent %q, want nothing (backoff 1 h)", got)
	}
	advance(2 * time.Minute) // "expiring" is past its expiry, though confirmed

	note := func(ob *Outbox, truck string, ep sdk.Epoch) *StoreChange {
		t.Helper()
		ch, err := ob.NoteStore(ctx, truck, &sdk.Health{StoreEpoch: ep, StoreOrigin: "created", StoreSince: clock()})
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	if ch := note(ob, tr, e1); ch != nil {
		t.Fatalf("the first epoch seen: %+v, want only recorded", ch)
	}
	if ch := note(ob, tr, e1); ch != nil {
		t.Fatalf("the same epoch again: %+v", ch)
	}
	if ch, err := ob.NoteStore(ctx, tr, &sdk.Health{}); err != nil || ch != nil {
		t.Fatalf("a status without a store epoch: %+v, %v", ch, err)
	}
	if ch := note(ob, "truck-2", e1); ch != nil {
		t.Fatalf("truck-2's first epoch: %+v", ch)
	}
	if got := round(); len(got) != 0 {
		t.Fatalf("after the first epochs a round sent %q, want nothing", got)
	}

	ch := note(ob, tr, e2)
	if ch == nil || ch.Reopened != 3 || ch.Epoch != e2 || ch.Previous != e1 || ch.Origin != "created" {
		t.Fatalf("new epoch: %+v, want 3 reopened, e2 after e1", ch)
	}
	for _, id := range []string{"received", "arrived", "unconfirmed"} {
		e := get(tr, id)
		if !e.Unconfirmed() || e.Confirmed != 0 || e.Awaiting != e2 || !e.NextAttempt.IsZero() || e.Note == "" {
			t.Errorf("%s after the new epoch: %+v", id, e)
		}
	}
	if e := get(tr, "received"); e.State != StatePending {
		t.Errorf("received order after the new epoch is %s, want pending", e.State)
	}
	if e := get(tr, "arrived"); e.State != StateArrived {
		t.Errorf("arrived order after the new epoch is %s, want arrived still", e.State)
	}
	for _, id := range []string{"delivered", "failed", "cancelled", "expiring"} {
		if e := get(tr, id); e.Unconfirmed() || e.Awaiting != (sdk.Epoch{}) {
			t.Errorf("closed order %s was reopened: %+v", id, e)
		}
	}
	if e := get("truck-2", "received"); e.Unconfirmed() {
		t.Errorf("another truck's order was reopened: %+v", e)
	}
	// Sent at once, whatever the backoff (1 h) said.
	if got, want := round(), []string{"arrived", "received", "unconfirmed"}; !slices.Equal(got, want) {
		t.Fatalf("after the new epoch a round sent %q, want %q", got, want)
	}

	// Idempotent: the same epoch again, here and in another process sharing the outbox (no memory of it).
	if ch := note(ob, tr, e2); ch != nil {
		t.Fatalf("the new epoch seen again: %+v", ch)
	}
	ob2 := newOutbox(t, office, OutboxConfig{Path: ob.cfg.Path, Clock: clock, BackoffMin: time.Hour, BackoffMax: time.Hour})
	if ch := note(ob2, tr, e2); ch != nil {
		t.Fatalf("the new epoch seen by another process: %+v", ch)
	}
	if got := round(); len(got) != 0 {
		t.Fatalf("after the repeated epoch a round sent %q, want nothing (backoff)", got)
	}

	// The lost store's received event (a salvaged store re-sends its old records) does not confirm; the new
	// store's does.
	rcv := get(tr, "received")
	old := event(sdk.EventReceived, rcv, at)
	old.Epoch = e1
	apply(tr, old)
	if e := get(tr, "received"); !e.Unconfirmed() {
		t.Fatalf("the old store's received event confirmed a reopened order: %+v", e)
	}
	fresh := event(sdk.EventReceived, rcv, clock())
	fresh.Epoch = e2
	apply(tr, fresh)
	if e := get(tr, "received"); e.Unconfirmed() || e.State != StateReceived || e.Awaiting != (sdk.Epoch{}) {
		t.Fatalf("the new store's received event: %+v", e)
	}
}
