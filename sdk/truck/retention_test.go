package truck

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/store"
)

// retentionRig is an order book on a real store whose clock the test moves: the book, the truck's verifier
// and the office's signer share it, so orders can be closed, aged past KeepClosed and re-sent weeks later.
type retentionRig struct {
	t      *testing.T
	path   string
	keep   time.Duration
	now    time.Time
	ca     *x509.Certificate
	signer *sdk.Signer
	st     *store.Store
	book   *Book
}

func newRetentionRig(t *testing.T, keep time.Duration) *retentionRig {
	t.Helper()
	p, err := pki.Init(pki.Config{Dir: filepath.Join(t.TempDir(), "pki")}, pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Issue(pki.RoleDispatch, "office", pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	r := &retentionRig{t: t, path: filepath.Join(t.TempDir(), "queue.db"), keep: keep,
		now: time.Now().UTC().Truncate(time.Millisecond), ca: p.CACert()}
	pair, err := pki.LoadKeyPair(p.CertPath("office"), p.KeyPath("office"))
	if err != nil {
		t.Fatal(err)
	}
	if r.signer, err = sdk.NewSignerTLS(pair, sdk.SignerConfig{Clock: r.clock}); err != nil {
		t.Fatal(err)
	}
	r.open()
	t.Cleanup(func() { r.st.Close() })
	return r
}

func (r *retentionRig) clock() time.Time { return r.now }

// open opens the store and a book on it, as the agent does at start.
func (r *retentionRig) open() {
	r.t.Helper()
	var err error
	if r.st, err = store.Open(r.path, store.Options{Clock: r.clock}); err != nil {
		r.t.Fatal(err)
	}
	v, err := sdk.NewVerifier(sdk.VerifierConfig{CA: []*x509.Certificate{r.ca}, Clock: r.clock})
	if err != nil {
		r.t.Fatal(err)
	}
	if r.book, err = NewBook(BookConfig{Store: r.st, Verifier: v, Truck: "truck-0001", Clock: r.clock,
		KeepClosed: r.keep}); err != nil {
		r.t.Fatal(err)
	}
}

// restart closes the store and opens it again with a new book.
func (r *retentionRig) restart() {
	r.t.Helper()
	if err := r.st.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.open()
}

func (r *retentionRig) order(id string, expiresIn time.Duration) sdk.Order {
	return sdk.Order{ID: id, Revision: 1, Truck: "truck-0001", Created: r.now, Expires: r.now.Add(expiresIn),
		Recipient: "A. Recipient", Address: "1 Main St", Lat: 52.52, Lon: 13.405, RadiusM: 100, Status: sdk.OrderActive}
}

// send signs o now (a new envelope, as dispatch's re-sender makes) and hands it to the book.
func (r *retentionRig) send(o sdk.Order) {
	r.t.Helper()
	payload, err := r.signer.SignOrder(&o)
	if err != nil {
		r.t.Fatal(err)
	}
	topic, err := sdk.Topics{}.Order(o.Truck, o.ID)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.book.Handle(context.Background(), transport.Message{Topic: topic, Payload: payload, QoS: 1}); err != nil {
		r.t.Fatal(err)
	}
}

func (r *retentionRig) act(id string, kind sdk.EventKind) {
	r.t.Helper()
	reason := ""
	if kind != sdk.EventDelivered {
		reason = "nobody home"
	}
	if _, err := r.book.Act(context.Background(), Action{OrderID: id, Kind: kind, Reason: reason, Via: sdk.ViaScreen}); err != nil {
		r.t.Fatal(err)
	}
}

// prune prunes until nothing is due and returns how many orders went.
func (r *retentionRig) prune() int {
	r.t.Helper()
	total := 0
	for {
		n, more, err := r.book.Prune(context.Background(), 0)
		if err != nil {
			r.t.Fatal(err)
		}
		total += n
		if !more {
			return total
		}
	}
}

func ids(es []Entry) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.Order.ID)
	}
	sort.Strings(out)
	return out
}

func (r *retentionRig) listed() []string {
	r.t.Helper()
	es, err := r.book.Orders()
	if err != nil {
		r.t.Fatal(err)
	}
	return ids(es)
}

func (r *retentionRig) active() []string {
	r.t.Helper()
	es, err := r.book.Active()
	if err != nil {
		r.t.Fatal(err)
	}
	return ids(es)
}

// checkIndex compares both indexes with a full read of the entries: the open index names exactly the orders
// waiting for the driver, the closed index exactly the closed ones under their closed time.
func (r *retentionRig) checkIndex() {
	r.t.Helper()
	var wantOpen, wantClosed []string
	if err := r.st.ForEach(orderBucket, func(k, v []byte) error {
		var e Entry
		if err := json.Unmarshal(v, &e); err != nil {
			return err
		}
		if e.isOpen() {
			wantOpen = append(wantOpen, string(k))
		}
		if e.State != StateActive {
			wantClosed = append(wantClosed, string(closedKey(e.closedAt(), e.Order.ID)))
		}
		return nil
	}); err != nil {
		r.t.Fatal(err)
	}
	keys := func(bucket string) []string {
		var out []string
		if err := r.st.ForEach(bucket, func(k, _ []byte) error { out = append(out, string(k)); return nil }); err != nil {
			r.t.Fatal(err)
		}
		return out
	}
	sort.Strings(wantOpen)
	sort.Strings(wantClosed)
	if got := keys(openBucket); !slices.Equal(got, wantOpen) {
		r.t.Fatalf("open index %q, entries say %q", got, wantOpen)
	}
	if got := keys(closedBucket); !slices.Equal(got, wantClosed) {
		r.t.Fatalf("closed index %q, entries say %q", got, wantClosed)
	}
}

// proofs counts the delivery events (received, delivered, failed, ...) waiting in the store's queue.
func (r *retentionRig) proofs() int {
	r.t.Helper()
	return int(r.st.Stats().Critical.Records)
}

// Issue 11, item 11: closed orders leave the book KeepClosed (zero: 30 days) after they closed; active ones
// stay however old, and so do the proofs of delivery in the queue (they leave on dispatch's receipt).
func TestRetentionRemovesClosedOrdersKeepsActive(t *testing.T) {
	r := newRetentionRig(t, 0)
	for _, id := range []string{"o-active", "o-problem", "o-delivered", "o-failed", "o-cancelled"} {
		r.send(r.order(id, day))
	}
	r.send(cancelOf(r.order("o-cancelled", day), 2))
	r.send(cancelOf(r.order("o-unseen", day), 2)) // a cancellation of an order this truck never held
	r.act("o-delivered", sdk.EventDelivered)
	r.act("o-failed", sdk.EventFailed)
	r.act("o-problem", sdk.EventProblem)
	r.now = r.now.Add(20 * day)
	r.send(r.order("o-late", day))
	r.act("o-late", sdk.EventDelivered)
	r.checkIndex()
	proofs := r.proofs()

	r.now = r.now.Add(9*day + 23*time.Hour) // 29 days 23 hours after the first ones closed
	if n := r.prune(); n != 0 {
		t.Fatalf("pruned %d orders before 30 days", n)
	}
	r.now = r.now.Add(2 * time.Hour)
	if n := r.prune(); n != 4 {
		t.Fatalf("pruned %d orders 30 days after they closed, want 4 (delivered, failed, cancelled, unseen)", n)
	}
	if got, want := r.listed(), []string{"o-active", "o-late", "o-problem"}; !slices.Equal(got, want) {
		t.Fatalf("book after 30 days lists %q, want %q", got, want)
	}
	if got, want := r.active(), []string{"o-active", "o-problem"}; !slices.Equal(got, want) {
		t.Fatalf("active orders %q, want %q", got, want)
	}
	if v, err := r.st.Get(orderBucket, []byte("o-unseen")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the unseen cancellation is still stored: %q, %v", v, err)
	}
	r.checkIndex()
	if got := r.proofs(); got != proofs {
		t.Fatalf("pruning the book changed the queued proofs: %d, was %d", got, proofs)
	}
	counts, err := r.book.Counts()
	if err != nil || counts[StateActive] != 2 || counts[StateDelivered] != 1 || counts[StateFailed] != 0 {
		t.Fatalf("counts %v, %v", counts, err)
	}

	r.now = r.now.Add(50 * day) // 80 days: the active orders are far past their expiry and still kept
	if n := r.prune(); n != 1 {
		t.Fatalf("pruned %d, want o-late", n)
	}
	if got, want := r.listed(), []string{"o-active", "o-problem"}; !slices.Equal(got, want) {
		t.Fatalf("book lists %q, want only the active orders %q", got, want)
	}
	if got := r.book.Stats().Pruned; got != 5 {
		t.Fatalf("Stats.Pruned = %d, want 5", got)
	}
	// An order acted on after 80 days is still an order.
	r.act("o-active", sdk.EventDelivered)
	r.checkIndex()
}

// A short KeepClosed does not remove an order before its expiry (and a day) has passed: until then a
// re-sent revision would still verify, and must find the order closed.
func TestRetentionWaitsForExpiry(t *testing.T) {
	r := newRetentionRig(t, time.Hour)
	r.send(r.order("o-1", 3*day))
	r.act("o-1", sdk.EventDelivered)
	r.now = r.now.Add(2 * time.Hour)
	if n := r.prune(); n != 0 {
		t.Fatalf("pruned %d orders before their expiry", n)
	}
	r.now = r.now.Add(3*day + time.Hour) // expired 3 hours ago, less than the day's margin
	if n := r.prune(); n != 0 {
		t.Fatalf("pruned %d orders within a day of their expiry", n)
	}
	r.now = r.now.Add(day)
	if n := r.prune(); n != 1 {
		t.Fatalf("pruned %d orders a day after their expiry, want 1", n)
	}
}

// A restart keeps the indexes right, and a book written before the indexes existed is indexed at start:
// its active orders are found per fix and its closed ones pruned by their last change.
func TestRetentionRestartKeepsIndex(t *testing.T) {
	r := newRetentionRig(t, 0)
	for _, id := range []string{"o-1", "o-2", "o-3", "o-4"} {
		r.send(r.order(id, day))
	}
	r.act("o-2", sdk.EventDelivered)
	r.send(cancelOf(r.order("o-3", day), 2))
	r.send(cancelOf(r.order("o-5", day), 2)) // unseen, then a higher revision: a new order
	r.send(func() sdk.Order { o := r.order("o-5", day); o.Revision = 3; return o }())
	if marked, err := r.book.CheckArrival(context.Background(), sdk.Fix{Time: r.now, Lat: 52.52, Lon: 13.405, Mode: 3}); err != nil || len(marked) != 3 {
		t.Fatalf("CheckArrival marked %v, %v; want o-1, o-4, o-5", marked, err)
	}
	r.checkIndex()
	r.restart()
	r.checkIndex()
	if got, want := r.active(), []string{"o-1", "o-4", "o-5"}; !slices.Equal(got, want) {
		t.Fatalf("active after restart %q, want %q", got, want)
	}
	for _, e := range must(r.book.Active()) {
		if !e.Arrived {
			t.Fatalf("after restart %s lost its arrival", e.Order.ID)
		}
	}

	// A book from before the indexes: entries only, closed ones without Closed.
	old := newRetentionRig(t, 0)
	t0 := old.now
	legacy := []Entry{
		{Order: old.order("l-active", day), State: StateActive, Received: t0},
		{Order: old.order("l-delivered", day), State: StateDelivered, Received: t0,
			Action: &ActionResult{Kind: sdk.EventDelivered, Via: sdk.ViaButton, Time: t0.Add(10 * day)}},
		{Order: cancelOf(old.order("l-cancelled", day), 2), State: StateCancelled, Received: t0},
	}
	for _, e := range legacy {
		raw, _ := json.Marshal(e)
		if bytes.Contains(raw, []byte(`"closed"`)) {
			t.Fatalf("a legacy entry has a closed time: %s", raw)
		}
		if err := old.st.Put(context.Background(), orderBucket, []byte(e.Order.ID), raw); err != nil {
			t.Fatal(err)
		}
	}
	// As an older version left it: no index (the book was empty, so the marker is all there is).
	if err := old.st.Update(context.Background(), func(tx *store.Tx) error { return tx.Delete(metaBucket, keyIndex) }); err != nil {
		t.Fatal(err)
	}
	old.restart()
	old.checkIndex()
	if got, want := old.active(), []string{"l-active"}; !slices.Equal(got, want) {
		t.Fatalf("legacy book: active %q, want %q", got, want)
	}
	old.now = t0.Add(31 * day) // l-cancelled closed at t0, l-delivered at its action, t0 + 10 days
	if n := old.prune(); n != 1 {
		t.Fatalf("legacy book: pruned %d at 31 days, want l-cancelled", n)
	}
	old.now = t0.Add(41 * day)
	if n := old.prune(); n != 1 {
		t.Fatalf("legacy book: pruned %d at 41 days, want l-delivered", n)
	}
	if got, want := old.listed(), []string{"l-active"}; !slices.Equal(got, want) {
		t.Fatalf("legacy book lists %q, want %q", got, want)
	}
	old.checkIndex()
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// A closed order is not brought back by dispatch re-sending it, before or after it was pruned: while it is
// in the book a re-sent revision (or a higher one) finds it closed; it is pruned only after its expiry, when
// the verifier refuses any re-send of it as expired. A truck whose store is new (issue 15) takes the open
// orders dispatch re-sends as usual.
func TestRetentionPrunedOrderNotResurrected(t *testing.T) {
	r := newRetentionRig(t, 0)
	long, short := r.order("o-long", 60*day), r.order("o-short", day)
	r.send(long)
	r.send(short)
	r.act("o-long", sdk.EventDelivered)
	r.act("o-short", sdk.EventFailed)

	r.now = r.now.Add(31 * day)
	if n := r.prune(); n != 1 {
		t.Fatalf("pruned %d at 31 days, want o-short only (o-long has not expired)", n)
	}
	rejected := r.book.Stats().Rejected
	r.send(short) // dispatch re-sends the pruned order: expired, refused
	if got := r.book.Stats().Rejected; got != rejected+1 {
		t.Fatalf("a re-sent pruned order was not refused (rejected %d, was %d)", got, rejected)
	}
	r.send(long) // the same revision of a kept closed order: a duplicate
	revised := long
	revised.Revision, revised.Notes = 2, "side door"
	r.send(revised) // a higher revision of a delivered order stays delivered
	if got := r.active(); len(got) != 0 {
		t.Fatalf("re-sent closed orders became active: %q", got)
	}
	if e, ok, err := r.book.Get("o-long"); err != nil || !ok || e.State != StateDelivered || e.Order.Revision != 2 {
		t.Fatalf("o-long after re-sends: %+v %v %v", e, ok, err)
	}

	r.now = r.now.Add(30*day + time.Hour) // 61 days and an hour: o-long expired more than a day ago
	if n := r.prune(); n != 1 {
		t.Fatalf("pruned %d after o-long's expiry, want 1", n)
	}
	r.send(revised)
	r.send(long)
	if got := r.book.Stats().Rejected; got != rejected+3 {
		t.Fatalf("re-sent revisions of the pruned o-long were not all refused (rejected %d, was %d)", got, rejected)
	}
	if got := r.listed(); len(got) != 0 {
		t.Fatalf("the book lists %q after pruned orders were re-sent", got)
	}
	r.checkIndex()

	// Issue 15: the store is lost (a new file); dispatch re-sends the open orders, which are taken as usual.
	r.st.Close()
	r.path = filepath.Join(t.TempDir(), "queue.db")
	r.open()
	open := r.order("o-open", day)
	r.send(open)
	if got := r.active(); !slices.Equal(got, []string{"o-open"}) {
		t.Fatalf("a new store took %q from dispatch's re-send, want o-open", got)
	}
}

// Prune's work per call is bounded: at most max orders in one transaction, and it says whether more are due.
func TestPruneIsBoundedPerCall(t *testing.T) {
	st := openStore(t)
	at := time.Now().UTC().Add(-40 * day)
	fillBook(t, st, 1200, 3, at)
	now := at.Add(31 * day)
	book, err := NewBook(BookConfig{Store: st, Verifier: sdktest.NewOffice(t).Verifier(t), Truck: "truck-0001",
		Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i, want := range []struct {
		n    int
		more bool
	}{{500, true}, {500, true}, {200, false}, {0, false}} {
		n, more, err := book.Prune(ctx, 500)
		if err != nil || n != want.n || more != want.more {
			t.Fatalf("Prune #%d = %d, %v, %v; want %d, %v", i+1, n, more, err, want.n, want.more)
		}
	}
	if es, err := book.Orders(); err != nil || len(es) != 3 {
		t.Fatalf("book holds %d orders after pruning, want the 3 active: %v", len(es), err)
	}
}

// Book.Run prunes at start and returns when its context ends.
func TestBookRunPrunesAtStart(t *testing.T) {
	st := openStore(t)
	at := time.Now().UTC().Add(-40 * day)
	fillBook(t, st, 700, 1, at)
	book, err := NewBook(BookConfig{Store: st, Verifier: sdktest.NewOffice(t).Verifier(t), Truck: "truck-0001"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	var runErr error
	go func() { defer wg.Done(); runErr = book.Run(ctx) }()
	sdktest.WaitFor(t, 30*time.Second, "the closed orders pruned", func() bool { return book.Stats().Pruned == 700 })
	cancel()
	wg.Wait()
	if runErr != nil {
		t.Fatalf("Run returned %v", runErr)
	}
}

// Closed pages walk the closed orders newest first with a cursor, filtered by state and time, and decode
// only the page.
func TestBookClosedPages(t *testing.T) {
	r := newRetentionRig(t, 0)
	t0 := r.now
	for i := range 120 {
		id := fmt.Sprintf("o-%03d", i)
		r.send(r.order(id, day))
		kind := sdk.EventDelivered
		if i%3 == 0 {
			kind = sdk.EventFailed
		}
		r.act(id, kind)
		r.now = r.now.Add(time.Second)
	}
	r.send(r.order("o-open", day))
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		p, err := r.book.Closed(ClosedQuery{Limit: 50, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		if pages > 3 || len(p.Entries) > 50 {
			t.Fatalf("page %d has %d entries", pages, len(p.Entries))
		}
		for _, e := range p.Entries {
			got = append(got, e.Order.ID)
		}
		if cursor = p.Next; cursor == "" {
			break
		}
	}
	if len(got) != 120 || got[0] != "o-119" || got[119] != "o-000" {
		t.Fatalf("pages gave %d orders, from %v to %v; want 120 newest first", len(got), got[:1], got[len(got)-1:])
	}
	p, err := r.book.Closed(ClosedQuery{State: StateFailed, Since: t0.Add(60 * time.Second)})
	if err != nil || len(p.Entries) != 20 || p.Next != "" {
		t.Fatalf("failed since 60 s: %d entries, next %q, %v; want 20", len(p.Entries), p.Next, err)
	}
	for _, e := range p.Entries {
		if e.State != StateFailed || e.Closed.Before(t0.Add(60*time.Second)) {
			t.Fatalf("filtered page holds %s %s closed %v", e.Order.ID, e.State, e.Closed)
		}
	}
	if _, err := r.book.Closed(ClosedQuery{Cursor: "not a cursor!"}); !errors.Is(err, ErrBadCursor) {
		t.Fatalf("a bad cursor gave %v, want ErrBadCursor", err)
	}
	if _, err := r.book.Closed(ClosedQuery{Limit: math.MaxInt32}); err == nil {
		t.Fatal("a page of 2^31-1 orders was not refused")
	}
	if _, err := r.book.Closed(ClosedQuery{State: StateActive}); err == nil {
		t.Fatal("a page of closed orders in state active was not refused")
	}
	if e, ok, err := r.book.Get("o-007"); err != nil || !ok || e.Order.ID != "o-007" {
		t.Fatalf("Get(o-007) = %v %v %v", e.Order.ID, ok, err)
	}
	if _, ok, err := r.book.Get("o-none"); err != nil || ok {
		t.Fatalf("Get of an unknown order = %v, %v", ok, err)
	}
}
