package truck

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/store"
)

// receiptRig is a truck uploader and a test office on real Mosquitto with mutual TLS, the office receipting
// what it has.
type receiptRig struct {
	b    *sdktest.Broker
	st   *store.Store
	up   *Uploader
	cons *consumer
	rc   *testReceipter
}

func startReceiptRig(t *testing.T, ctx context.Context, wg *sync.WaitGroup, cfg UploaderConfig) *receiptRig {
	t.Helper()
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	truckCl, officeCl := b.Truck("truck-0001"), b.ClientFiles("office")
	r := &receiptRig{b: b, st: openStore(t), cons: newConsumer()}
	office := startLink(t, ctx, wg, b.Addr, officeCl, transport.Config{Subscriptions: fleetSubscriptions(),
		OnPublish: r.cons.handle(fleetVerifier(t, officeCl))})
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := office.Wait(wctx); err != nil {
		t.Fatalf("office never connected: %v", err)
	}
	r.rc = sendReceipts(t, ctx, wg, r.cons, office, officeCl)
	var ref atomic.Pointer[Uploader]
	link := startLink(t, ctx, wg, b.Addr, truckCl, receiptsFor(t, truckCl, &ref))
	cfg.Store, cfg.Link, cfg.Signer = r.st, link, signerFor(t, truckCl, r.st)
	up, err := NewUploader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.up = up
	ref.Store(up)
	wg.Add(1)
	go func() {
		defer wg.Done()
		up.Run(ctx)
	}()
	return r
}

func (r *receiptRig) appendFixes(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	entries := make([]store.Entry, n)
	for i, f := range driveFixes(n, 9) {
		e, err := EncodeFix(f)
		if err != nil {
			t.Fatal(err)
		}
		entries[i] = e
	}
	if _, err := r.st.Append(ctx, entries...); err != nil {
		t.Fatal(err)
	}
}

// A record leaves the truck's store only on dispatch's receipt: with the office receiving but not
// receipting (it has nothing committed), every message is PUBACKed by the broker and every record stays;
// when the office receipts again and announces itself online, the store empties.
func TestRecordsStayUntilReceipted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	r := startReceiptRig(t, ctx, &wg, UploaderConfig{ReceiptTimeout: time.Hour, BatchFixes: 50})
	r.rc.setOff(true)
	const n = 1000
	r.appendFixes(t, ctx, n)
	sdktest.WaitFor(t, 30*time.Second, "all fixes at the office", func() bool { f, _ := r.cons.counts(); return f == n })
	sdktest.WaitFor(t, 10*time.Second, "all messages PUBACKed", func() bool { return r.up.Stats().Fixes == n })
	if s := r.st.Stats(); s.Normal.Records != n {
		t.Fatalf("PUBACKed records left the store without a receipt: %d of %d stored", s.Normal.Records, n)
	}
	if u := r.up.Stats(); u.Unreceipted != n || u.Receipted != 0 {
		t.Fatalf("uploader %+v, want %d unreceipted", u, n)
	}
	r.rc.setOff(false)
	time.Sleep(1100 * time.Millisecond) // DispatchOnline leaves alone what was sent in the last second
	if got := r.up.DispatchOnline(); got != n {
		t.Fatalf("DispatchOnline re-sent %d records, want %d", got, n)
	}
	// The store empties in the receipt's transaction; the uploader counts it just after: wait for both.
	sdktest.WaitFor(t, 30*time.Second, "store empty after receipts", func() bool {
		return storeEmpty(r.st) && r.up.Stats().Receipted == n
	})
	u := r.up.Stats()
	if u.Receipted != n || u.Unreceipted != 0 || u.Resent != n {
		t.Fatalf("uploader %+v", u)
	}
	if f, _ := r.cons.counts(); f != n {
		t.Fatalf("office has %d fixes, want %d", f, n)
	}
}

// A record the broker acknowledged and then lost (here: the office drops it as Mosquitto does for a slow
// or foreign share-group subscriber) is sent again after the receipt timeout, and arrives.
func TestUnreceiptedRecordsAreSentAgain(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	r := startReceiptRig(t, ctx, &wg, UploaderConfig{ReceiptTimeout: 300 * time.Millisecond, ReceiptTimeoutMax: time.Second, BatchFixes: 20})
	// Lose every third message at the office before it is committed, acknowledging it to the broker.
	var lost, count atomic.Int64
	drop := func(m *sdk.Message) bool {
		if m.Telemetry != nil && count.Add(1)%3 == 0 {
			lost.Add(int64(len(m.Telemetry.Fixes)))
			return true
		}
		return false
	}
	r.cons.mu.Lock()
	r.cons.drop = drop
	r.cons.mu.Unlock()
	const n = 600
	r.appendFixes(t, ctx, n)
	sdktest.WaitFor(t, 60*time.Second, "store empty", func() bool { return storeEmpty(r.st) })
	if f, _ := r.cons.counts(); f != n {
		t.Fatalf("office has %d of %d fixes", f, n)
	}
	if lost.Load() == 0 || r.up.Stats().Resent == 0 {
		t.Fatalf("nothing was lost and re-sent: lost %d, uploader %+v", lost.Load(), r.up.Stats())
	}
	t.Logf("lost at the office %d fixes; uploader %+v", lost.Load(), r.up.Stats())
}

// The unreceipted set is bounded: with no receipts, the uploader sends MaxUnreceipted records and waits; the
// rest stay in the store, unsent.
func TestUnreceiptedIsBounded(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	r := startReceiptRig(t, ctx, &wg, UploaderConfig{ReceiptTimeout: time.Hour, MaxUnreceipted: 200, BatchFixes: 50})
	r.rc.setOff(true)
	r.appendFixes(t, ctx, 1000)
	sdktest.WaitFor(t, 30*time.Second, "200 fixes at the office", func() bool { f, _ := r.cons.counts(); return f >= 200 })
	time.Sleep(500 * time.Millisecond) // would it send more?
	if f, _ := r.cons.counts(); f != 200 {
		t.Fatalf("office got %d fixes with a bound of 200 unreceipted", f)
	}
	if u := r.up.Stats(); u.Unreceipted != 200 {
		t.Fatalf("uploader %+v", u)
	}
	r.rc.setOff(false)
	time.Sleep(1100 * time.Millisecond)
	r.up.DispatchOnline()
	sdktest.WaitFor(t, 30*time.Second, "store empty", func() bool { return storeEmpty(r.st) })
}

// The envelope sequence never goes backwards for the truck: not when the queue file is deleted (the side
// file has it), and not when both are gone (the clock seeds it).
func TestSequencerSurvivesStoreLoss(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "queue.db")
	open := func() *store.Store {
		st, err := store.Open(path, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	past := func() time.Time { return time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC) } // a unit without RTC
	next := func(st *store.Store, clock func() time.Time) uint64 {
		s, err := NewStoreSequencer(context.Background(), st, SequencerConfig{Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for range 1500 { // past one reserved block
			if n, err = s.Next(sdk.MsgTelemetry); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	st := open()
	first := next(st, past)
	st.Close()
	if err := os.Remove(path); err != nil { // the SD card's queue file is gone; the side file is not
		t.Fatal(err)
	}
	st = open()
	second := next(st, past)
	st.Close()
	if second <= first {
		t.Fatalf("after the queue file was deleted the sequence went from %d to %d", first, second)
	}
	os.Remove(path)
	os.Remove(path + ".seq")
	st = open()
	defer st.Close()
	now := time.Now()
	third := next(st, func() time.Time { return now })
	if third <= second || third < uint64(now.UnixMicro()) {
		t.Fatalf("with store and side file gone, the clock did not seed the sequence: %d after %d", third, second)
	}
}

// An SD card swapped with both files gone, on a unit whose clock was plausible but months behind at the first
// message (a fake-hwclock image): the sequence starts behind what dispatch has seen, and must catch up as soon
// as the clock is set right (GPS time), not stay behind for ever. In steady running it is not re-seeded at
// every message (that would cost a reservation, an fsync, each time).
func TestSequencerCatchesUpWithACorrectedClock(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "queue.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	right := time.Now()
	clock := right.Add(-90 * 24 * time.Hour) // plausible, three months behind
	s, err := NewStoreSequencer(context.Background(), st, SequencerConfig{Clock: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	behind, err := s.Next(sdk.MsgStatus)
	if err != nil {
		t.Fatal(err)
	}
	if behind < uint64(clock.UnixMicro()) {
		t.Fatalf("first number %d not seeded from the clock", behind)
	}
	clock = right // the clock is set from GPS
	n, err := s.Next(sdk.MsgStatus)
	if err != nil {
		t.Fatal(err)
	}
	if n < uint64(right.UnixMicro()) {
		t.Fatalf("after the clock was set right the sequence is %d, still behind the clock (%d)", n, right.UnixMicro())
	}
	// Steady running: the clock moves a second per message, the numbers one per message; no jump within the hour.
	prev := n
	for i := range 100 {
		clock = right.Add(time.Duration(i+1) * time.Second)
		if n, err = s.Next(sdk.MsgStatus); err != nil {
			t.Fatal(err)
		}
		if n != prev+1 {
			t.Fatalf("message %d: %d after %d; want one more (no re-seed within reseedBehind)", i, n, prev)
		}
		prev = n
	}
}

// noLink is a Link that never connects: HandleReceipt needs none.
type noLink struct{}

func (noLink) Submit(context.Context, string, []byte, transport.PublishOptions) (*transport.Pending, error) {
	return nil, context.Canceled
}
func (noLink) Wait(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
func (noLink) Current() transport.State       { return transport.State{} }

// Receipts that come for records this uploader is not waiting for (sent before a restart) still remove
// them, if they are of the store's own epoch and were in the store when it was opened; a receipt for
// another epoch removes nothing it does not wait for, and one naming records appended since the store was
// opened, which nobody sent, removes none of them: it is for an older copy of the store, restored from a
// backup, whose records had those numbers (dispatch has those, not these).
func TestReceiptForRecordsSentBeforeRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "queue.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &receiptRig{st: st}
	r.appendFixes(t, ctx, 10) // sent before the restart
	st.Close()
	st, err = store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r.st = st
	r.appendFixes(t, ctx, 2) // 11 and 12: appended since, sent by nobody
	b := sdktest.StartDevBroker(t, sdktest.Options{})
	cl := b.Truck("truck-0001")
	up, err := NewUploader(UploaderConfig{Store: st, Link: noLink{}, Signer: signerFor(t, cl, st)})
	if err != nil {
		t.Fatal(err)
	}
	other := sdk.Epoch{1, 2, 3}
	n, err := up.HandleReceipt(ctx, &sdk.Receipt{Truck: "truck-0001", Epochs: []sdk.ReceiptEpoch{{Epoch: other, Ranges: []sdk.SeqRange{{First: 1, Last: 10}}}}})
	if err != nil || n != 0 {
		t.Fatalf("a receipt of another epoch removed %d (%v)", n, err)
	}
	n, err = up.HandleReceipt(ctx, &sdk.Receipt{Truck: "truck-0001", Epochs: []sdk.ReceiptEpoch{{Epoch: sdk.EpochOf(st.Epoch()), Ranges: []sdk.SeqRange{{First: 1, Last: 4}, {First: 9, Last: 12}}}}})
	if err != nil || n != 6 {
		t.Fatalf("removed %d (%v), want 6 (1-4, 9, 10)", n, err)
	}
	if got := st.Stats().Normal.Records; got != 6 {
		t.Fatalf("%d records left, want 6 (5-8, 11, 12)", got)
	}
}

func TestDispatchCameOnline(t *testing.T) {
	c := &Client{dispatchState: map[string]sdk.State{}}
	steps := []struct {
		name     string
		st       sdk.State
		retained bool
		want     bool
	}{
		{"office-1", sdk.StateOnline, true, false},   // retained at connect: it was up all along, as far as we know
		{"office-1", sdk.StateOffline, false, false}, // its will
		{"office-1", sdk.StateOnline, true, true},    // we reconnect and find it back: it came online meanwhile
		{"office-1", sdk.StateOnline, false, true},   // a live online: it (re)connected now
		{"office-2", sdk.StateOnline, false, true},   // another process starts
	}
	for i, s := range steps {
		if got := c.dispatchCameOnline(s.name, s.st, s.retained); got != s.want {
			t.Errorf("step %d %+v: came online = %v", i, s, got)
		}
	}
}
