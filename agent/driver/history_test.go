package driver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/truck"
	"github.com/waybill-iot/waybill/store"
)

// A book after months of work: manyClosed closed orders (c-0000 closed most recently, then one a minute
// further back each, states delivered, failed, cancelled in turn), manyActive active ones, and a
// cancellation of an order the truck never held (u-0, never listed nor counted).
const (
	manyClosed = 3000
	manyActive = 5
)

func closedState(i int) truck.State {
	return [...]truck.State{truck.StateDelivered, truck.StateFailed, truck.StateCancelled}[i%3]
}

// fillHistory writes the book's entries straight into the store, as an agent from before the order book's
// indexes left them (bucket "orders", key the order id, value the Entry as JSON): NewBook indexes them
// when it opens the store. It takes a fraction of a second where 3,000 orders and actions, each signed,
// verified and fsync'd, would take minutes under the race detector.
func fillHistory(t *testing.T, now time.Time) func(*store.Store) {
	return func(st *store.Store) {
		t.Helper()
		mk := func(id string, state truck.State, received time.Time) truck.Entry {
			o := sdk.Order{ID: id, Revision: 1, Truck: truckName, Created: received, Expires: now.Add(30 * 24 * time.Hour),
				Recipient: "R. " + id, Address: id + " Main St", Lat: 52.52, Lon: 13.405, RadiusM: 100, Status: sdk.OrderActive}
			return truck.Entry{Order: o, State: state, Received: received, ReceiptAt: received}
		}
		var all []truck.Entry
		for i := range manyClosed {
			closed := now.Add(-time.Duration(i)*time.Minute - 30*time.Second)
			e := mk(fmt.Sprintf("c-%04d", i), closedState(i), closed.Add(-time.Hour))
			e.Closed = closed
			switch e.State {
			case truck.StateDelivered:
				e.Action = &truck.ActionResult{Kind: sdk.EventDelivered, Via: sdk.ViaButton, Time: closed, Seq: uint64(i + 1)}
			case truck.StateFailed:
				e.Action = &truck.ActionResult{Kind: sdk.EventFailed, Reason: "nobody home", Via: sdk.ViaScreen, Time: closed, Seq: uint64(i + 1)}
			case truck.StateCancelled:
				e.Order.Revision, e.Order.Status, e.Received = 2, sdk.OrderCancelled, closed
			}
			all = append(all, e)
		}
		for i := range manyActive {
			e := mk(fmt.Sprintf("a-%d", i), truck.StateActive, now.Add(-time.Duration(manyActive-i)*time.Minute))
			e.Order.Lat += float64(i) * 0.001
			all = append(all, e)
		}
		unseen := mk("u-0", truck.StateCancelled, now.Add(-15*time.Second))
		unseen.Order.Status, unseen.Closed, unseen.Unseen = sdk.OrderCancelled, unseen.Received, true
		all = append(all, unseen)
		for len(all) > 0 {
			chunk := all[:min(len(all), 1000)]
			all = all[len(chunk):]
			err := st.Update(context.Background(), func(tx *store.Tx) error {
				for _, e := range chunk {
					raw, err := json.Marshal(e)
					if err != nil {
						return err
					}
					if err := tx.Put("orders", []byte(e.Order.ID), raw); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// countingBook is the order book behind the server, counting the entries each read hands over. Orders, the
// whole-book read, fails the test: the server's Orders interface has none, and this also catches a server
// that finds it by a type assertion.
type countingBook struct {
	*truck.Book
	t *testing.T

	// mu guards the fields below.
	mu      sync.Mutex
	read    int                 // entries handed to the server since the last take
	queries []truck.ClosedQuery // every Closed query, in order
}

func (c *countingBook) Orders() ([]truck.Entry, error) {
	c.t.Error("the driver's side read the whole order book (Orders)")
	return c.Book.Orders()
}

func (c *countingBook) Active() ([]truck.Entry, error) {
	es, err := c.Book.Active()
	c.add(len(es), nil)
	return es, err
}

func (c *countingBook) Closed(q truck.ClosedQuery) (truck.ClosedPage, error) {
	p, err := c.Book.Closed(q)
	c.add(len(p.Entries), &q)
	return p, err
}

func (c *countingBook) Get(id string) (truck.Entry, bool, error) {
	e, ok, err := c.Book.Get(id)
	if ok {
		c.add(1, nil)
	}
	return e, ok, err
}

func (c *countingBook) add(n int, q *truck.ClosedQuery) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.read += n
	if q != nil {
		c.queries = append(c.queries, *q)
	}
}

// take returns the entries read and the Closed queries since the last take, and starts counting again.
func (c *countingBook) take() (int, []truck.ClosedQuery) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, q := c.read, c.queries
	c.read, c.queries = 0, nil
	return n, q
}

// historyFixture is a fixture on a book filled by fillHistory, behind a countingBook.
func historyFixture(t *testing.T, now time.Time, tweak func(*Config)) (*fixture, *countingBook) {
	var cb *countingBook
	f := newFixtureOn(t, fillHistory(t, now), func(c *Config) {
		cb = &countingBook{Book: c.Orders.(*truck.Book), t: t}
		c.Orders = cb
		if tweak != nil {
			tweak(c)
		}
	})
	return f, cb
}

// firstSnapshot opens the event stream at base and returns its first "orders" event.
func firstSnapshot(t *testing.T, base string) ordersBody {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var snap ordersBody
	if err := json.Unmarshal([]byte(next(t, readEvents(bufio.NewReader(res.Body)), "orders").data), &snap); err != nil {
		t.Fatal(err)
	}
	return snap
}

func ids(vs []OrderView) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.ID
	}
	return out
}

// TestSnapshotAndStatusWithHistory: with 3,000 closed orders in the book, the page's snapshot reads the
// active orders and the recently closed ones only (at most 200), /api/status counts every state without
// reading an order, and /api/orders/{id} reads one.
func TestSnapshotAndStatusWithHistory(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	f, cb := historyFixture(t, now, nil)

	// Recent is 10 minutes: c-0000 to c-0009 closed within it, newest first, after the active orders.
	snap := firstSnapshot(t, f.http.URL)
	got := ids(snap.Orders)
	want := []string{"a-0", "a-1", "a-2", "a-3", "a-4"} // no fix: oldest received first
	for i := range 10 {
		want = append(want, fmt.Sprintf("c-%04d", i))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || snap.Next != "" {
		t.Fatalf("snapshot = %v (next %q), want %v", got, snap.Next, want)
	}
	for _, v := range snap.Orders[5:] {
		if v.State == truck.StateActive {
			t.Fatalf("closed order %s listed as active", v.ID)
		}
	}
	n, qs := cb.take()
	if n != 15 || len(qs) != 1 || qs[0].Limit != recentLimit || qs[0].Cursor != "" || qs[0].State != "" ||
		qs[0].Since.Before(now.Add(-11*time.Minute)) || qs[0].Since.After(time.Now().Add(-10*time.Minute)) {
		t.Fatalf("the snapshot read %d entries with %+v; want 15, one Closed since 10 minutes ago, at most %d", n, qs, recentLimit)
	}

	// Recent of 5 hours holds 300 closed orders: the snapshot keeps the newest 200.
	srv, err := New(Config{Orders: cb, Recent: 5 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()
	snap = firstSnapshot(t, hs.URL)
	if len(snap.Orders) != manyActive+recentLimit || snap.Orders[5].ID != "c-0000" || snap.Orders[len(snap.Orders)-1].ID != "c-0199" {
		t.Fatalf("a 5-hour snapshot holds %d orders, %v ... %v", len(snap.Orders), ids(snap.Orders[:6]), ids(snap.Orders[len(snap.Orders)-1:]))
	}
	if n, _ := cb.take(); n != manyActive+recentLimit {
		t.Fatalf("the 5-hour snapshot read %d entries, want %d", n, manyActive+recentLimit)
	}

	var st struct {
		Orders map[truck.State]int `json:"orders"`
	}
	r := f.do("GET", "/api/status", "")
	r.json(t, &st)
	wantCounts := map[truck.State]int{truck.StateActive: manyActive, truck.StateDelivered: manyClosed / 3,
		truck.StateFailed: manyClosed / 3, truck.StateCancelled: manyClosed / 3}
	if r.status != 200 || fmt.Sprint(st.Orders) != fmt.Sprint(wantCounts) {
		t.Fatalf("status: %d %s; want counts %v", r.status, r.body, wantCounts)
	}
	if n, qs := cb.take(); n != 0 || len(qs) != 0 {
		t.Fatalf("/api/status read %d entries and %d pages; want none (Counts)", n, len(qs))
	}

	var one OrderView
	r = f.do("GET", "/api/orders/c-1234", "")
	r.json(t, &one)
	if r.status != 200 || one.ID != "c-1234" || one.State != closedState(1234) {
		t.Fatalf("one old order: %d %s", r.status, r.body)
	}
	if n, _ := cb.take(); n != 1 {
		t.Fatalf("/api/orders/{id} read %d entries, want 1", n)
	}
	wantError(t, "a cancellation of an order never held", f.do("GET", "/api/orders/u-0", ""), 404, "unknown_order")
}

// pageAll follows the cursors of GET /api/orders?query from the first page to the last and returns every
// page's orders. Each request may read at most maxRead entries from the book.
func pageAll(t *testing.T, f *fixture, cb *countingBook, query url.Values, maxRead int) [][]OrderView {
	t.Helper()
	var pages [][]OrderView
	cursor := ""
	for {
		q := url.Values{}
		for k, v := range query {
			q[k] = v
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var body ordersBody
		r := f.do("GET", "/api/orders?"+q.Encode(), "")
		r.json(t, &body)
		if r.status != 200 {
			t.Fatalf("page %d of %s: %d %s", len(pages)+1, query.Encode(), r.status, r.body)
		}
		if n, _ := cb.take(); n > maxRead {
			t.Fatalf("page %d of %s read %d entries; at most %d", len(pages)+1, query.Encode(), n, maxRead)
		}
		pages = append(pages, body.Orders)
		if body.Next == "" {
			return pages
		}
		if len(pages) > manyClosed {
			t.Fatalf("%s: no last page after %d pages", query.Encode(), len(pages))
		}
		cursor = body.Next
	}
}

// TestPagingClosedOrders: the closed orders of each state, and of all states, come page by page, newest
// closed first, each exactly once; the active orders come whole and only on the first page; bad limits
// and cursors are refused.
func TestPagingClosedOrders(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	f, cb := historyFixture(t, now, nil)

	for _, st := range []truck.State{truck.StateDelivered, truck.StateFailed, truck.StateCancelled} {
		pages := pageAll(t, f, cb, url.Values{"state": {string(st)}, "limit": {"300"}}, 300)
		if len(pages) != 4 || len(pages[0]) != 300 || len(pages[3]) != 100 {
			t.Fatalf("%s: %d pages of %d..%d orders; want 300, 300, 300, 100", st, len(pages), len(pages[0]), len(pages[len(pages)-1]))
		}
		seen := map[string]bool{}
		last := -1
		for _, p := range pages {
			for _, v := range p {
				var i int
				if _, err := fmt.Sscanf(v.ID, "c-%04d", &i); err != nil || v.State != st || closedState(i) != st {
					t.Fatalf("%s: page holds %s in state %s", st, v.ID, v.State)
				}
				if seen[v.ID] || i <= last {
					t.Fatalf("%s: %s again or out of order (after c-%04d)", st, v.ID, last)
				}
				seen[v.ID], last = true, i
			}
		}
		if len(seen) != manyClosed/3 {
			t.Fatalf("%s: %d orders over the pages, want %d", st, len(seen), manyClosed/3)
		}
	}

	// No state: the active orders and the first closed page, then closed pages only.
	pages := pageAll(t, f, cb, url.Values{"limit": {"1000"}}, manyActive+1000)
	if len(pages) != 3 {
		t.Fatalf("all states: %d pages, want 3", len(pages))
	}
	var all []string
	for i, p := range pages {
		for j, v := range p {
			if active := v.State == truck.StateActive; active != (i == 0 && j < manyActive) {
				t.Fatalf("page %d, place %d: %s is %s", i+1, j, v.ID, v.State)
			}
		}
		all = append(all, ids(p)...)
	}
	if len(all) != manyActive+manyClosed {
		t.Fatalf("all states: %d orders, want %d", len(all), manyActive+manyClosed)
	}
	for i, id := range all[manyActive:] {
		if want := fmt.Sprintf("c-%04d", i); id != want {
			t.Fatalf("all states: order %d is %s, want %s (each once, newest closed first)", i, id, want)
		}
	}

	// Defaults: the active orders whole; closed pages of 50.
	var body ordersBody
	f.do("GET", "/api/orders?state=active", "").json(t, &body)
	if len(body.Orders) != manyActive || body.Next != "" {
		t.Fatalf("active: %v, next %q", ids(body.Orders), body.Next)
	}
	body = ordersBody{}
	f.do("GET", "/api/orders?state=cancelled", "").json(t, &body)
	if len(body.Orders) != truck.DefaultPageSize || body.Next == "" || body.Orders[0].ID != "c-0002" {
		t.Fatalf("cancelled, first page: %d orders from %v, next %q", len(body.Orders), ids(body.Orders[:1]), body.Next)
	}
	body = ordersBody{}
	f.do("GET", "/api/orders?state=", "").json(t, &body)
	if len(body.Orders) != manyActive+truck.DefaultPageSize || body.Next == "" {
		t.Fatalf("an empty state: %d orders, next %q; want no filter", len(body.Orders), body.Next)
	}

	for _, q := range []string{"limit=0", "limit=-1", "limit=abc", "limit=1001", "limit=", "limit=1.5", "limit=99999999999999999999",
		"state=active&limit=5", "state=delivered&limit=0"} {
		wantError(t, q, f.do("GET", "/api/orders?"+q, ""), 400, "bad_limit")
	}
	for _, q := range []string{"cursor=", "cursor=!!!", "state=failed&cursor=%00", "state=active&cursor=AAAAAAAAAAAAAA"} {
		wantError(t, q, f.do("GET", "/api/orders?"+q, ""), 400, "bad_cursor")
	}
	wantError(t, "state=lost", f.do("GET", "/api/orders?state=lost&limit=5", ""), 400, "bad_state")
}

// brokenHistory is an order book whose closed orders cannot be read.
type brokenHistory struct{ Orders }

func (brokenHistory) Closed(truck.ClosedQuery) (truck.ClosedPage, error) {
	return truck.ClosedPage{}, errors.New("disk on fire")
}

// TestClosedOrdersUnreadable: when the closed orders cannot be read the page still lists the active ones,
// and the hook answers 500 for what needs the closed ones.
func TestClosedOrdersUnreadable(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Orders = brokenHistory{c.Orders} })
	f.send(newOrder("o-1", 1))
	gone := newOrder("o-gone", 1)
	f.send(gone)
	f.send(cancelled(gone))
	if snap := firstSnapshot(t, f.http.URL); fmt.Sprint(ids(snap.Orders)) != "[o-1]" {
		t.Fatalf("snapshot without the closed orders = %v, want [o-1]", ids(snap.Orders))
	}
	wantError(t, "all orders", f.do("GET", "/api/orders", ""), 500, "internal")
	wantError(t, "cancelled orders", f.do("GET", "/api/orders?state=cancelled", ""), 500, "internal")
	if r := f.do("GET", "/api/orders?state=active", ""); r.status != 200 {
		t.Fatalf("active orders: %d %s", r.status, r.body)
	}
}

// TestAnswerClosedBetweenReads: an order that closed between the read of the active orders and the read of
// the closed ones is listed once, closed.
func TestAnswerClosedBetweenReads(t *testing.T) {
	f := newFixture(t, nil)
	o := newOrder("o-1", 1)
	f.send(o)
	f.send(newOrder("o-2", 1))
	active, err := f.book.Active()
	if err != nil || len(active) != 2 {
		t.Fatalf("active = %d, %v", len(active), err)
	}
	f.send(cancelled(o))
	closed, err := f.book.Closed(truck.ClosedQuery{})
	if err != nil {
		t.Fatal(err)
	}
	body := f.srv.answer(active, closed)
	if len(body.Orders) != 2 || body.Orders[0].ID != "o-2" || body.Orders[1].ID != "o-1" || body.Orders[1].State != truck.StateCancelled {
		t.Fatalf("answer = %+v", body.Orders)
	}
}
