package dispatch

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/store"
)

// officeIdentity makes a PKI with one dispatch identity, without a broker.
func officeIdentity(t *testing.T) sdktest.Client {
	t.Helper()
	p, err := pki.Init(pki.Config{Dir: filepath.Join(t.TempDir(), "pki")}, pki.CAOptions{Fleet: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Issue(pki.RoleDispatch, "office", pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	return sdktest.Client{Name: "office", CAFile: p.CAPath(), CertFile: p.CertPath("office"), KeyFile: p.KeyPath("office")}
}

func TestOutboxCreateReviseCancel(t *testing.T) {
	office := officeIdentity(t)
	ob := newOutbox(t, office, OutboxConfig{})
	ctx := context.Background()
	o := testOrder("truck-1", "o-1")
	e, err := ob.Create(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if e.State != StatePending || e.Order.Revision != 1 || !e.Unconfirmed() {
		t.Fatalf("new entry %+v", e)
	}
	if h, _ := e.Order.Hash(); h != e.Hash {
		t.Fatal("entry hash is not the order's hash")
	}
	// The same create again (as a retried command does, with a later Expires) is harmless.
	o2 := o
	o2.Expires = o.Expires.Add(time.Hour)
	if again, err := ob.Create(ctx, o2); err != nil || again.Order.Revision != 1 || again.Hash != e.Hash {
		t.Fatalf("repeated create: %+v, %v", again, err)
	}
	o2.Address = "2 Quay Street"
	if _, err := ob.Create(ctx, o2); !errors.Is(err, ErrExists) {
		t.Fatalf("create with other content: %v, want ErrExists", err)
	}
	bad := o
	bad.ID = "no/slash"
	if _, err := ob.Create(ctx, bad); err == nil {
		t.Fatal("an invalid order id was stored")
	}
	r, err := ob.Revise(ctx, o2)
	if err != nil || r.Order.Revision != 2 || r.Order.Address != "2 Quay Street" || !r.Order.Created.Equal(e.Order.Created) {
		t.Fatalf("revise: %+v, %v", r, err)
	}
	if _, err := ob.Revise(ctx, testOrder("truck-1", "o-404")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revise unknown: %v", err)
	}
	c, err := ob.Cancel(ctx, "truck-1", "o-1", "customer moved")
	if err != nil || c.Order.Revision != 3 || c.Order.Status != sdk.OrderCancelled {
		t.Fatalf("cancel: %+v, %v", c, err)
	}
	if c2, err := ob.Cancel(ctx, "truck-1", "o-1", ""); err != nil || c2.Order.Revision != 3 {
		t.Fatalf("cancel again: %+v, %v", c2, err)
	}
	if _, err := ob.Revise(ctx, o); !errors.Is(err, ErrCancelled) {
		t.Fatalf("revise cancelled: %v", err)
	}
	list, err := ob.List(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %d entries, %v", len(list), err)
	}
}

func event(kind sdk.EventKind, e Entry, at time.Time) *sdk.Event {
	return &sdk.Event{Kind: kind, Time: at, OrderID: e.Order.ID, Revision: e.Order.Revision, OrderHash: e.Hash}
}

func TestOutboxApplyEvents(t *testing.T) {
	office := officeIdentity(t)
	ob := newOutbox(t, office, OutboxConfig{})
	ctx := context.Background()
	e, err := ob.Create(ctx, testOrder("truck-1", "o-1"))
	if err != nil {
		t.Fatal(err)
	}
	get := func() Entry {
		t.Helper()
		g, err := ob.Get(ctx, "truck-1", "o-1")
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	now := time.Now()
	apply := func(truck string, ev *sdk.Event) {
		t.Helper()
		if err := ob.Apply(ctx, TruckEvent{Truck: truck, Event: ev}); err != nil {
			t.Fatal(err)
		}
	}
	// Another truck's event about an order with the same id changes nothing; nor does a wrong hash.
	apply("truck-2", event(sdk.EventReceived, e, now))
	wrong := event(sdk.EventReceived, e, now)
	wrong.OrderHash = sha256.Sum256([]byte("another order"))
	apply("truck-1", wrong)
	if g := get(); g.State != StatePending || g.Confirmed != 0 || g.Note == "" {
		t.Fatalf("after foreign and mismatched receipts: %+v", g)
	}
	apply("truck-1", event(sdk.EventReceived, e, now))
	if g := get(); g.State != StateReceived || g.Confirmed != 1 {
		t.Fatalf("after the receipt: %+v", g)
	}
	apply("truck-1", event(sdk.EventArrived, e, now.Add(time.Minute)))
	apply("truck-1", event(sdk.EventDelivered, e, now.Add(2*time.Minute)))
	apply("truck-1", event(sdk.EventArrived, e, now.Add(90*time.Second))) // late, older
	apply("truck-1", event(sdk.EventReceived, e, now))                    // again
	if g := get(); g.State != StateDelivered || g.LastEvent.Kind != sdk.EventDelivered {
		t.Fatalf("after delivery: %+v", g)
	}
	// A revision after delivery is pending confirmation but keeps showing the delivery.
	r, err := ob.Revise(ctx, testOrder("truck-1", "o-1"))
	if err != nil {
		t.Fatal(err)
	}
	if g := get(); g.State != StateDelivered || !g.Unconfirmed() {
		t.Fatalf("revised after delivery: %+v", g)
	}
	apply("truck-1", event(sdk.EventReceived, e, now)) // the old revision's receipt does not confirm the new
	if g := get(); !g.Unconfirmed() {
		t.Fatal("an old revision's receipt confirmed the new revision")
	}
	// The truck holding a newer revision than ours (another outbox) stops the re-sending.
	newer := event(sdk.EventReceived, r, now)
	newer.Revision = 7
	apply("truck-1", newer)
	if g := get(); g.Unconfirmed() || g.Note == "" {
		t.Fatalf("after a newer revision's receipt: %+v", g)
	}
}

// failingPublisher injects publish failures: the link is up but every publish is refused.
type failingPublisher struct {
	mu    sync.Mutex
	calls int
}

func (f *failingPublisher) Publish(context.Context, string, []byte, transport.PublishOptions) error {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	return &transport.PublishError{ReasonCode: 135}
}

func (f *failingPublisher) Wait(context.Context) error { return nil }

// TestOutboxSharedPathAndFailures: with a Path, a second Outbox (another process) can create orders while
// the first runs its re-sender; a failed publish is recorded and retried after RetryDelay, without counting
// as a send; sequence numbers are reserved in the store and never go back.
func TestOutboxSharedPathAndFailures(t *testing.T) {
	office := officeIdentity(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	runner := newOutbox(t, office, OutboxConfig{Path: path, Poll: fast, RetryDelay: 100 * time.Millisecond})
	other := newOutbox(t, office, OutboxConfig{Path: path})
	ctx, cancel := context.WithCancel(context.Background())
	pub := &failingPublisher{}
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx, pub) }()
	if _, err := other.Create(ctx, testOrder("truck-1", "o-1")); err != nil {
		t.Fatal(err)
	}
	sdktest.WaitFor(t, 10*time.Second, "three failed attempts", func() bool {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		return pub.calls >= 3
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e, err := other.Get(context.Background(), "truck-1", "o-1")
	if err != nil {
		t.Fatal(err)
	}
	if e.Sends != 0 || e.LastError == "" || e.State != StatePending {
		t.Fatalf("after failures: %+v", e)
	}
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	raw, err := st.Get(metaBucket, keySeq)
	if err != nil {
		t.Fatal(err)
	}
	if last := binary.BigEndian.Uint64(raw); last < uint64(time.Now().Add(-time.Hour).UnixMicro()) {
		t.Fatalf("sequence numbers reserved up to %d: not started from the clock", last)
	}
}

func TestOutboxExpiresUnconfirmed(t *testing.T) {
	office := officeIdentity(t)
	now := time.Now()
	clock := func() time.Time { return now }
	ob := newOutbox(t, office, OutboxConfig{Clock: clock})
	ctx := context.Background()
	o := testOrder("truck-1", "o-1")
	o.Expires = now.Add(time.Minute)
	if _, err := ob.Create(ctx, o); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	pub := &failingPublisher{}
	if _, _, err := ob.round(ctx, pub); err != nil {
		t.Fatal(err)
	}
	e, err := ob.Get(ctx, "truck-1", "o-1")
	if err != nil {
		t.Fatal(err)
	}
	if e.State != StateExpired || pub.calls != 0 {
		t.Fatalf("expired order: state %s, %d publishes", e.State, pub.calls)
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 30 * time.Second, 2: time.Minute, 3: 2 * time.Minute, 10: 30 * time.Minute, 100: 30 * time.Minute} {
		for range 50 {
			if d := Backoff(n, 30*time.Second, 30*time.Minute); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
}

// TestOutboxCancelTooLate (issue 11.3): a cancellation stored before the outbox heard of the delivery is
// refused by the truck with a conflict; the entry must go on saying the order was delivered, and that the
// cancel was refused, in whichever order the conflict and the delivered event arrive, also after a reopen.
func TestOutboxCancelTooLate(t *testing.T) {
	for _, conflictFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("conflict first %v", conflictFirst), func(t *testing.T) {
			office := officeIdentity(t)
			path := filepath.Join(t.TempDir(), "outbox.db")
			ob := newOutbox(t, office, OutboxConfig{Path: path})
			ctx := context.Background()
			e, err := ob.Create(ctx, testOrder("truck-1", "o-1"))
			if err != nil {
				t.Fatal(err)
			}
			apply := func(ev *sdk.Event) {
				t.Helper()
				if err := ob.Apply(ctx, TruckEvent{Truck: "truck-1", Event: ev}); err != nil {
					t.Fatal(err)
				}
			}
			now := time.Now()
			apply(event(sdk.EventReceived, e, now))
			c, err := ob.Cancel(ctx, "truck-1", "o-1", "customer moved")
			if err != nil {
				t.Fatal(err)
			}
			conflict := event(sdk.EventReceived, c, now.Add(2*time.Minute))
			conflict.Conflict = true
			delivered := event(sdk.EventDelivered, e, now.Add(time.Minute))
			if conflictFirst {
				apply(conflict)
				g, _ := ob.Get(ctx, "truck-1", "o-1")
				if g.State != StateConflict || !g.CancelRefused || g.Unconfirmed() {
					t.Fatalf("after the conflict alone: %+v", g)
				}
				apply(delivered)
			} else {
				apply(delivered)
				apply(conflict)
			}
			reopened := newOutbox(t, office, OutboxConfig{Path: path})
			g, err := reopened.Get(ctx, "truck-1", "o-1")
			if err != nil {
				t.Fatal(err)
			}
			if g.State != StateDelivered || !g.CancelRefused || g.Unconfirmed() || g.LastEvent.Kind != sdk.EventDelivered {
				t.Fatalf("after delivery and the refused cancel: %+v", g)
			}
			if got := g.StateText(); got != "delivered (cancel refused)" {
				t.Fatalf("StateText %q", got)
			}
			// The cancellation revision is stored already: cancelling again changes nothing.
			if _, err := reopened.Cancel(ctx, "truck-1", "o-1", ""); err != nil {
				t.Fatalf("cancelling a cancelled order again: %v", err)
			}
		})
	}
}
