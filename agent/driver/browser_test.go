package driver

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/sdktest/browsertest"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/sdk/truck"
	"github.com/waybill-iot/waybill/store"
)

// office is a minimal dispatch side: it signs and publishes orders and collects the events trucks send,
// each verified against the fleet CA.
type office struct {
	t      *testing.T
	conn   *transport.Conn
	signer *sdk.Signer
	topics sdk.Topics

	// mu guards events and statuses.
	mu       sync.Mutex
	events   []*sdk.Event
	statuses []*sdk.Status
	changed  chan struct{}
}

func startOffice(t *testing.T, ctx context.Context, wg *sync.WaitGroup, b *sdktest.Broker, cl sdktest.Client) *office {
	t.Helper()
	o := &office{t: t, changed: make(chan struct{}, 1)}
	v := cl.Verifier(t, sdk.VerifierConfig{})
	o.signer = cl.Signer(t)
	var err error
	o.conn, err = transport.New(transport.Config{
		Brokers: []string{"mqtts://" + b.Addr}, ClientID: cl.Name, CertFile: cl.CertFile, KeyFile: cl.KeyFile,
		CAFile: cl.CAFile, BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		Subscriptions: []transport.Subscription{{Topic: o.topics.FleetFilter(sdk.KindEvents), QoS: 1},
			{Topic: o.topics.FleetFilter(sdk.KindStatus), QoS: 1}},
		OnPublish: func(ctx context.Context, m transport.Message) error {
			msg, err := v.Verify(ctx, m.Topic, m.Payload)
			if err != nil {
				return nil // refused: only verified messages count
			}
			o.mu.Lock()
			if msg.Event != nil {
				o.events = append(o.events, msg.Event)
			}
			if msg.Status != nil {
				o.statuses = append(o.statuses, msg.Status)
			}
			o.mu.Unlock()
			select {
			case o.changed <- struct{}{}:
			default:
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		o.conn.Run(ctx)
	}()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := o.conn.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	return o
}

func (o *office) send(ord sdk.Order) {
	o.t.Helper()
	payload, err := o.signer.SignOrder(&ord)
	if err != nil {
		o.t.Fatal(err)
	}
	topic, err := o.topics.Order(ord.Truck, ord.ID)
	if err != nil {
		o.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.conn.Publish(ctx, topic, payload, transport.PublishOptions{QoS: 1}); err != nil {
		o.t.Fatalf("publish order: %v", err)
	}
}

// wait waits up to 20 s for something the office received to satisfy found.
func (o *office) wait(what string, found func() bool) {
	o.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		o.mu.Lock()
		ok := found()
		o.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-o.changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			o.t.Fatalf("dispatch saw no %s within 20 s", what)
		}
	}
}

func (o *office) waitEvent(what string, pred func(*sdk.Event) bool) *sdk.Event {
	o.t.Helper()
	var got *sdk.Event
	o.wait(what, func() bool {
		for _, e := range o.events {
			if pred(e) {
				got = e
				return true
			}
		}
		return false
	})
	return got
}

// outDir is where the test writes files worth keeping: $WAYBILL_TEST_OUT, else testdata/out (ignored by git).
func outDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("WAYBILL_TEST_OUT")
	if dir == "" {
		dir = filepath.Join("testdata", "out")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// TestPageInChromium drives the driver page in real headless Chromium against real Mosquitto with mutual
// TLS, a real truck client with its store, and a dispatch side that signs orders and verifies events: an
// order shows up within a second of dispatch sending it, with distance and bearing; tapping Delivered and
// Failed produces verified proofs given "via screen"; a cancellation removes the order with a notice.
func TestPageInChromium(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	truckCl, officeCl := b.Truck(truckName), b.ClientFiles("office")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	off := startOffice(t, ctx, &wg, b, officeCl)

	st, err := store.Open(filepath.Join(t.TempDir(), "queue.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the client goroutines have ended
	// The truck stands about 111 m south of the orders' destination.
	fix := sdk.Fix{Time: time.Now().UTC().Truncate(time.Millisecond), Lat: 52.5190, Lon: 13.4050, Mode: 3}
	var (
		srvMu sync.Mutex
		srv   *Server
	)
	logger := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cl, err := truck.NewClient(truck.ClientConfig{
		Transport: transport.Config{Brokers: []string{"mqtts://" + b.Addr}, CertFile: truckCl.CertFile,
			KeyFile: truckCl.KeyFile, CAFile: truckCl.CAFile, BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond},
		Store: st,
		OnOrder: func(e truck.Entry) {
			srvMu.Lock()
			defer srvMu.Unlock()
			if srv != nil {
				srv.Notify(e)
			}
		},
		Uploader: truck.UploaderConfig{RetryDelay: 100 * time.Millisecond},
		Logger:   logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	const token = "cab-token-1"
	s, err := New(Config{Orders: cl.Book(), Position: func() (sdk.Fix, bool) { return fix, true }, Token: token, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	srvMu.Lock()
	srv = s
	srvMu.Unlock()
	hs := httptest.NewServer(s)
	defer hs.Close()
	defer s.Close() // before hs.Close, which waits for the event stream
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := cl.Run(ctx); err != nil {
			t.Errorf("truck client: %v", err)
		}
	}()
	off.wait("online truck", func() bool {
		for _, s := range off.statuses {
			if s.State == sdk.StateOnline {
				return true
			}
		}
		return false
	})

	// The browser: Debian's Chromium, headless, with a fresh profile and nothing reaching the network.
	bt := browsertest.New(t, 800, 1000)
	bctx, tcancel := context.WithTimeout(bt.Ctx, 60*time.Second)
	defer tcancel()
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) string { t.Helper(); return bt.Eval(t, expr) }
	card := func(id string) string { return fmt.Sprintf(`.card[data-id=%q]`, id) }

	// Open the page once with the token: the cookie keeps the page and its event stream authorised.
	step("open the page", chromedp.Navigate(hs.URL+"/?token="+token), chromedp.WaitVisible(chromedp.CSS(`#conn.live`)))
	if u := eval(`location.href`); strings.Contains(u, token) {
		t.Fatalf("the token stayed in the address: %s", u)
	}

	// An order appears within a second of dispatch sending it.
	o1 := newOrder("o-1", 1)
	o1.Recipient, o1.Address, o1.Notes = "Ada Lovelace", "12 Analytical Row", "Side door, ring twice"
	o1.RadiusM = 150 // the truck is inside it: not off site
	sent := time.Now()
	off.send(o1)
	step("order o-1 appears", chromedp.WaitVisible(chromedp.CSS(card("o-1"))))
	shown := eval(`document.querySelector('` + card("o-1") + `').dataset.shownAt`)
	var shownMs int64
	fmt.Sscan(shown, &shownMs)
	latency := time.UnixMilli(shownMs).Sub(sent)
	t.Logf("order o-1 on the page %v after dispatch began sending it", latency.Round(time.Millisecond))
	if latency > time.Second {
		t.Errorf("order o-1 appeared %v after dispatch sent it; want within 1 s", latency)
	}
	text := eval(`document.querySelector('` + card("o-1") + `').innerText`)
	for _, want := range []string{"Ada Lovelace", "12 Analytical Row", "Side door, ring twice", "111 m N", "Delivered", "Failed", "Problem"} {
		if !strings.Contains(text, want) {
			t.Errorf("card o-1 lacks %q: %q", want, text)
		}
	}

	o2, o3, o4 := newOrder("o-2", 1), newOrder("o-3", 1), newOrder("o-4", 1)
	o2.Recipient, o2.Address, o2.Lat = "Charles Babbage", "5 Difference Lane", 52.5230
	o3.Recipient, o3.Address, o3.Lat, o3.Notes = "Grace Hopper", "9 Compiler Court", 52.5260, ""
	o4.Recipient, o4.Address, o4.Lat, o4.Notes = "Alan Turing", "1 Bletchley Rd", 52.5290, "Leave with neighbour at no. 3"
	for _, o := range []sdk.Order{o2, o3, o4} {
		off.send(o)
	}
	step("orders o-2..o-4 appear", chromedp.WaitVisible(chromedp.CSS(card("o-4"))),
		chromedp.WaitVisible(chromedp.CSS(card("o-3"))), chromedp.WaitVisible(chromedp.CSS(card("o-2"))))

	// Delivered: tap, confirm; the proof reaches dispatch signed and verified, given via the screen.
	step("tap Delivered on o-1",
		chromedp.Click(chromedp.CSS(card("o-1")+` button[data-act="delivered"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#dlg-ok`)),
		chromedp.Click(chromedp.CSS(`#dlg-ok`)),
		chromedp.WaitVisible(chromedp.CSS(card("o-1")+`[data-state="delivered"]`)))
	proof := off.waitEvent("delivered o-1", func(e *sdk.Event) bool { return e.Kind == sdk.EventDelivered && e.OrderID == "o-1" })
	if h, _ := o1.Hash(); proof.OrderHash != h || proof.Via != sdk.ViaScreen || proof.Revision != 1 || proof.Fix == nil ||
		proof.Fix.Lat != fix.Lat || proof.OffSite {
		t.Fatalf("proof of delivery = %+v", proof)
	}

	// Failed: tap, pick a reason, confirm.
	step("tap Failed on o-3",
		chromedp.Click(chromedp.CSS(card("o-3")+` button[data-act="failed"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#dlg-choices button`)),
		chromedp.Click(chromedp.CSS(`#dlg-choices button`)),
		chromedp.Click(chromedp.CSS(`#dlg-ok`)),
		chromedp.WaitVisible(chromedp.CSS(card("o-3")+`[data-state="failed"]`)))
	failed := off.waitEvent("failed o-3", func(e *sdk.Event) bool { return e.Kind == sdk.EventFailed && e.OrderID == "o-3" })
	if failed.Reason != "Nobody home" || failed.Via != sdk.ViaScreen || !failed.OffSite {
		t.Fatalf("failed proof = %+v", failed)
	}

	// Dispatch cancels o-2: it leaves the list and a notice says so.
	off.send(cancelled(o2))
	step("o-2 leaves the list", chromedp.WaitNotPresent(chromedp.CSS(card("o-2"))),
		chromedp.WaitVisible(chromedp.CSS(`#notices .notice`)))
	if n := eval(`document.querySelector('#notices .notice').innerText`); !strings.Contains(n, "Cancelled by dispatch") ||
		!strings.Contains(n, "Charles Babbage") || !strings.Contains(n, "o-2") {
		t.Fatalf("notice = %q", n)
	}
	// The page now: a notice, a delivered and a failed card, and o-4 to do.
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatal("the screenshot is not a PNG")
	}
	shot := filepath.Join(outDir(t), "driver-page.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the driver page: %s", shot)

	// The delivered and failed cards leave after a few seconds; o-4 is left, with the button's mark.
	step("closed orders leave", chromedp.WaitNotPresent(chromedp.CSS(card("o-1"))), chromedp.WaitNotPresent(chromedp.CSS(card("o-3"))))
	if next := eval(`document.querySelector('.card.next').dataset.id`); next != "o-4" {
		t.Fatalf("the card marked Next is %s, want o-4", next)
	}

	if len(bt.JSErrors()) > 0 {
		t.Fatalf("the page threw: %v", bt.JSErrors())
	}
}
