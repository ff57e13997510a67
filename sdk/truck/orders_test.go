package truck

import (
	"context"
	"errors"
	"testing"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/store"
)

// bookRig is an order book on a real store, fed without a broker with orders signed by a dispatch
// certificate of a fleet PKI made for the test.
type bookRig struct {
	t       *testing.T
	st      *store.Store
	book    *Book
	office  *sdktest.Office
	changes []Entry
}

func newBookRig(t *testing.T) *bookRig {
	t.Helper()
	r := &bookRig{t: t, st: openStore(t), office: sdktest.NewOffice(t)}
	var err error
	r.book, err = NewBook(BookConfig{Store: r.st, Verifier: r.office.Verifier(t), Truck: "truck-0001",
		OnChange: func(e Entry) { r.changes = append(r.changes, e) }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *bookRig) send(o sdk.Order) {
	r.t.Helper()
	if err := r.book.Handle(context.Background(), r.office.Order(r.t, o)); err != nil {
		r.t.Fatal(err)
	}
}

// received lists the revisions of id that the truck queued a received event (its receipt to dispatch) for.
func (r *bookRig) received(id string) []uint32 {
	r.t.Helper()
	recs, err := r.st.Peek(context.Background(), 1000)
	if err != nil {
		r.t.Fatal(err)
	}
	var revs []uint32
	seqs := make([]uint64, 0, len(recs))
	for _, rec := range recs {
		seqs = append(seqs, rec.Seq)
		if rec.Kind != KindEvent {
			continue
		}
		e, err := DecodeEvent(rec.Data, rec.Epoch, rec.Seq)
		if err != nil {
			r.t.Fatal(err)
		}
		if e.Kind == sdk.EventReceived && e.OrderID == id {
			revs = append(revs, e.Revision)
		}
	}
	r.st.Release(seqs...)
	return revs
}

func (r *bookRig) orders() map[string]Entry {
	r.t.Helper()
	es, err := r.book.Orders()
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string]Entry{}
	for _, e := range es {
		out[e.Order.ID] = e
	}
	return out
}

func cancelOf(o sdk.Order, rev uint32) sdk.Order {
	o.Revision, o.Status = rev, sdk.OrderCancelled
	return o
}

// Issue 10, 6: a cancellation of an order the truck never had. The order never reached the truck, so there is
// nothing to cancel and nothing to show the driver; but it is receipted (dispatch stops re-sending it) and
// remembered, so that the lower revisions still on their way cannot bring the order to the driver. A later
// revision above the cancellation is a new order and applies normally.
func TestBookCancellationOfUnknownOrder(t *testing.T) {
	r := newBookRig(t)
	ctx := context.Background()
	o := newOrder("truck-0001", "o-9", 1)

	r.send(cancelOf(o, 2))
	if got := r.received("o-9"); len(got) != 1 || got[0] != 2 {
		t.Fatalf("receipts for the cancellation = %v, want [2]", got)
	}
	if _, ok := r.orders()["o-9"]; ok || len(r.changes) != 0 {
		t.Fatalf("an unseen cancellation is listed (%v) or notified (%d changes)", r.orders(), len(r.changes))
	}
	if _, err := r.book.Act(ctx, Action{OrderID: "o-9", Kind: sdk.EventDelivered, Via: sdk.ViaScreen}); !errors.Is(err, ErrUnknownOrder) {
		t.Fatalf("acting on an unseen cancelled order: %v, want ErrUnknownOrder", err)
	}

	// Revision 1 arriving late, and the cancellation again: still nothing for the driver.
	r.send(o)
	r.send(cancelOf(o, 2))
	if _, ok := r.orders()["o-9"]; ok || len(r.changes) != 0 {
		t.Fatal("a lower or equal revision after the cancellation brought the order back")
	}
	if st := r.book.Stats(); st.Stale != 1 || st.Duplicates != 1 || st.Applied != 1 {
		t.Fatalf("stats = %+v, want 1 applied (the cancellation), 1 stale, 1 duplicate", st)
	}

	// A higher revision, active: a new order, active, with no state carried from the placeholder.
	o3 := o
	o3.Revision, o3.Notes = 3, "revision 3"
	r.send(o3)
	e, ok := r.orders()["o-9"]
	if !ok || e.State != StateActive || e.Order.Revision != 3 || e.Unseen || e.Conflict || len(r.changes) != 1 {
		t.Fatalf("revision 3 after an unseen cancellation: %+v (listed %v, %d changes)", e, ok, len(r.changes))
	}
	if res, err := r.book.Act(ctx, Action{OrderID: "o-9", Kind: sdk.EventDelivered, Via: sdk.ViaScreen}); err != nil || res.Kind != sdk.EventDelivered {
		t.Fatalf("delivering revision 3: %+v, %v", res, err)
	}

	// A cancellation of a known order is unchanged: listed as cancelled, Act refused as cancelled.
	k := newOrder("truck-0001", "o-10", 1)
	r.send(k)
	r.send(cancelOf(k, 2))
	if e := r.orders()["o-10"]; e.State != StateCancelled || e.Unseen {
		t.Fatalf("cancelled known order = %+v", e)
	}
	if _, err := r.book.Act(ctx, Action{OrderID: "o-10", Kind: sdk.EventDelivered}); !errors.Is(err, ErrOrderCancelled) {
		t.Fatalf("acting on a cancelled order: %v", err)
	}

	// Two unseen cancellations in a row stay unseen; an active revision above both applies.
	u := newOrder("truck-0001", "o-11", 1)
	r.send(cancelOf(u, 2))
	r.send(cancelOf(u, 3))
	if _, ok := r.orders()["o-11"]; ok {
		t.Fatal("a second unseen cancellation is listed")
	}
	u.Revision = 4
	r.send(u)
	if e := r.orders()["o-11"]; e.State != StateActive || e.Order.Revision != 4 {
		t.Fatalf("revision 4 after two unseen cancellations = %+v", e)
	}
}

// Issue 10, 6: a reason that is not valid UTF-8 is refused with ErrBadReason, not replaced, and nothing is
// recorded.
func TestBookActRefusesInvalidUTF8Reason(t *testing.T) {
	r := newBookRig(t)
	ctx := context.Background()
	r.send(newOrder("truck-0001", "o-1", 1))
	for _, kind := range []sdk.EventKind{sdk.EventFailed, sdk.EventProblem, sdk.EventDelivered} {
		_, err := r.book.Act(ctx, Action{OrderID: "o-1", Kind: kind, Reason: "nobody home \xc3\x28", Via: sdk.ViaHTTP})
		if !errors.Is(err, ErrBadReason) {
			t.Fatalf("%s with an invalid UTF-8 reason: %v, want ErrBadReason", kind, err)
		}
	}
	if e := r.orders()["o-1"]; e.State != StateActive || e.Problems != 0 || e.Action != nil || len(r.changes) != 1 {
		t.Fatalf("a refused action changed the order: %+v (%d changes)", e, len(r.changes))
	}
	recs, err := r.st.Peek(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 { // the received event only
		t.Fatalf("%d records queued, want only the receipt", len(recs))
	}
	r.st.Release(recs[0].Seq)
	res, err := r.book.Act(ctx, Action{OrderID: "o-1", Kind: sdk.EventFailed, Reason: "Straße gesperrt", Via: sdk.ViaHTTP})
	if err != nil || res.Reason != "Straße gesperrt" {
		t.Fatalf("valid reason: %+v, %v", res, err)
	}
}
