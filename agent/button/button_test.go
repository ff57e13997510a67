package button

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/agent/gpio"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/truck"
	"github.com/waybill-iot/waybill/store"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recLED records every change of the LED.
type recLED struct {
	mu  sync.Mutex
	set []bool
}

func (l *recLED) Set(on bool) error {
	l.mu.Lock()
	l.set = append(l.set, on)
	l.mu.Unlock()
	return nil
}

func (l *recLED) log() []bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]bool(nil), l.set...)
}

// book is a real order book on a real store, fed with orders signed by a dispatch certificate.
type book struct {
	*truck.Book
	st     *store.Store
	office *sdktest.Office
}

func newBook(t *testing.T, onChange func(truck.Entry)) *book {
	t.Helper()
	b := &book{office: sdktest.NewOffice(t)}
	v := b.office.Verifier(t)
	var err error
	if b.st, err = store.Open(filepath.Join(t.TempDir(), "queue.db"), store.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.st.Close() })
	if b.Book, err = truck.NewBook(truck.BookConfig{Store: b.st, Verifier: v, Truck: "truck-0001", OnChange: onChange}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *book) send(t *testing.T, id string, lat float64) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	o := sdk.Order{ID: id, Revision: 1, Truck: "truck-0001", Created: now, Expires: now.Add(time.Hour),
		Recipient: "R", Address: "A", Lat: lat, Lon: 13.4, RadiusM: 50}
	if err := b.Handle(context.Background(), b.office.Order(t, o)); err != nil {
		t.Fatal(err)
	}
}

// actions returns the driver actions queued in the store, oldest first.
func (b *book) actions(t *testing.T) []*sdk.Event {
	t.Helper()
	recs, err := b.st.Peek(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []*sdk.Event
	var seqs []uint64
	for _, r := range recs {
		seqs = append(seqs, r.Seq)
		if r.Kind != truck.KindEvent {
			continue
		}
		e, err := truck.DecodeEvent(r.Data, r.Epoch, r.Seq)
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind == sdk.EventDelivered || e.Kind == sdk.EventFailed || e.Kind == sdk.EventProblem {
			out = append(out, e)
		}
	}
	b.st.Release(seqs...)
	return out
}

// waitActions waits until the store holds n driver actions.
func (b *book) waitActions(t *testing.T, n int) []*sdk.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := b.actions(t)
		if len(a) >= n {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d driver actions after 10 s, want %d", len(a), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestButtonRun: presses on an injected line become proofs on the selected order of a real order book:
// short = delivered via button with the fix, long = problem; a press while the last one is acknowledged
// does nothing; a press with nothing to do records nothing; the LED blinks while an order waits and is
// off when Run ends.
func TestButtonRun(t *testing.T) {
	var btn *Button
	var mu sync.Mutex
	bk := newBook(t, func(e truck.Entry) {
		mu.Lock()
		defer mu.Unlock()
		if btn != nil {
			btn.Notify(e)
		}
	})
	line := gpio.NewFake(false)
	led := &recLED{}
	fix := sdk.Fix{Time: time.Now().UTC().Truncate(time.Millisecond), Lat: 52.52, Lon: 13.4, Mode: 3}
	b, err := New(Config{Line: line, LED: led, Orders: bk, Position: func() (sdk.Fix, bool) { return fix, true },
		Debounce: 5 * time.Millisecond, LongPress: 150 * time.Millisecond, AckHold: time.Second,
		ErrorHold: 50 * time.Millisecond, Blink: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	btn = b
	mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	press := func(hold time.Duration) {
		line.Set(time.Now(), true)
		line.Set(time.Now(), false) // a bounce
		line.Set(time.Now(), true)
		time.Sleep(hold)
		line.Set(time.Now(), false)
	}

	// Nothing to deliver: the press records nothing.
	press(20 * time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	if a := bk.actions(t); len(a) != 0 {
		t.Fatalf("a press with no order recorded %v", a)
	}

	bk.send(t, "o-far", 52.53)
	bk.send(t, "o-near", 52.521)
	// Wait for the LED to blink for the waiting orders.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if n := len(led.log()); n >= 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the LED did not blink for a waiting order: %v", led.log())
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A short press delivers the nearest order; a second press right after is ignored.
	press(20 * time.Millisecond)
	a := bk.waitActions(t, 1)
	press(20 * time.Millisecond)
	if a[0].Kind != sdk.EventDelivered || a[0].OrderID != "o-near" || a[0].Via != sdk.ViaButton || a[0].Fix == nil || a[0].Fix.Lat != fix.Lat {
		t.Fatalf("short press recorded %+v", a[0])
	}
	time.Sleep(1100 * time.Millisecond) // past the acknowledgement
	if a := bk.actions(t); len(a) != 1 {
		t.Fatalf("the press during the acknowledgement recorded %+v", a[1:])
	}

	// A long press reports a problem on the remaining order.
	press(400 * time.Millisecond)
	a = bk.waitActions(t, 2)
	if a[1].Kind != sdk.EventProblem || a[1].OrderID != "o-far" || a[1].Reason != LongPressReason || a[1].Via != sdk.ViaButton {
		t.Fatalf("long press recorded %+v", a[1])
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	done <- nil // for the deferred check
	if l := led.log(); l[len(l)-1] {
		t.Fatal("the LED stayed on after Run")
	}
}

// TestButtonLineClosed: Run ends with an error when the line goes away, and refuses a config without one.
func TestButtonLineClosed(t *testing.T) {
	bk := newBook(t, nil)
	line := gpio.NewFake(false)
	b, err := New(Config{Line: line, Orders: bk})
	if err != nil {
		t.Fatal(err)
	}
	line.Close()
	if err := b.Run(context.Background()); err == nil {
		t.Fatal("Run after the line closed returned nil")
	}
	if _, err := New(Config{Orders: bk}); err == nil {
		t.Fatal("New without a line")
	}
	if _, err := New(Config{Line: line}); err == nil {
		t.Fatal("New without orders")
	}
}

// TestButtonStoreFailure: a press the store cannot record is not acknowledged (the LED blinks fast).
func TestButtonStoreFailure(t *testing.T) {
	bk := newBook(t, nil)
	bk.send(t, "o-1", 52.52)
	line := gpio.NewFake(false)
	led := &recLED{}
	acted := make(chan struct{}, 1)
	orders := failingOrders{book: bk, acted: acted}
	b, _ := New(Config{Line: line, LED: led, Orders: orders, Debounce: time.Millisecond, ErrorHold: 500 * time.Millisecond,
		Blink: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	for len(led.log()) == 0 { // Run has read the line's level (a button held at the start fires nothing)
		time.Sleep(time.Millisecond)
	}
	line.Set(time.Now(), true)
	time.Sleep(10 * time.Millisecond)
	line.Set(time.Now(), false)
	select {
	case <-acted:
	case <-time.After(10 * time.Second):
		t.Fatal("the press did not reach the order book")
	}
	time.Sleep(200 * time.Millisecond) // within the fast blink (10 ms half-period)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(led.log()); n < 4 {
		t.Fatalf("the LED changed %d times after a failed press; want a fast blink", n)
	}
	if a := bk.actions(t); len(a) != 0 {
		t.Fatalf("recorded %v", a)
	}
}

type failingOrders struct {
	book  *book
	acted chan struct{}
}

func (o failingOrders) Active() ([]truck.Entry, error) { return o.book.Active() }

func (o failingOrders) Act(context.Context, truck.Action) (truck.ActionResult, error) {
	o.acted <- struct{}{}
	return truck.ActionResult{}, errors.New("disk on fire")
}
