package truck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/sdktest/faultproxy"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/store"
)

// office is a minimal dispatch side for tests: it signs and publishes orders and collects verified events
// and statuses from trucks.
type office struct {
	t      *testing.T
	conn   *transport.Conn
	signer *sdk.Signer
	topics sdk.Topics

	mu       sync.Mutex
	events   []*sdk.Event
	statuses []*sdk.Status
	changed  chan struct{}
}

func newOffice(t *testing.T, ctx context.Context, wg *sync.WaitGroup, b *sdktest.Broker, cl sdktest.Client) *office {
	t.Helper()
	o := &office{t: t, changed: make(chan struct{}, 1)}
	v := cl.Verifier(t, sdk.VerifierConfig{})
	o.signer = cl.Signer(t)
	o.conn = startLink(t, ctx, wg, b.Addr, cl, transport.Config{
		Subscriptions: []transport.Subscription{{Topic: o.topics.FleetFilter(sdk.KindEvents), QoS: 1},
			{Topic: o.topics.FleetFilter(sdk.KindStatus), QoS: 1}},
		OnPublish: func(ctx context.Context, m transport.Message) error {
			msg, err := v.Verify(ctx, m.Topic, m.Payload)
			if err != nil {
				return nil
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
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := o.conn.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	return o
}

func (o *office) publish(truck, id string, payload []byte) {
	o.t.Helper()
	topic, err := o.topics.Order(truck, id)
	if err != nil {
		o.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.conn.Publish(ctx, topic, payload, transport.PublishOptions{QoS: 1}); err != nil {
		o.t.Fatalf("publish order: %v", err)
	}
}

func (o *office) send(ord sdk.Order) {
	o.t.Helper()
	payload, err := o.signer.SignOrder(&ord)
	if err != nil {
		o.t.Fatal(err)
	}
	o.publish(ord.Truck, ord.ID, payload)
}

// waitEvent waits for an event matching pred.
func (o *office) waitEvent(what string, pred func(*sdk.Event) bool) *sdk.Event {
	o.t.Helper()
	return waitIn(o, what+" event", &o.events, pred)
}

func (o *office) waitStatus(what string, pred func(*sdk.Status) bool) *sdk.Status {
	o.t.Helper()
	return waitIn(o, what+" status", &o.statuses, pred)
}

// waitIn waits up to 20 s for an item of *items (guarded by o.mu) matching pred.
func waitIn[T any](o *office, what string, items *[]T, pred func(T) bool) T {
	o.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		o.mu.Lock()
		for _, it := range *items {
			if pred(it) {
				o.mu.Unlock()
				return it
			}
		}
		o.mu.Unlock()
		select {
		case <-o.changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			o.t.Fatalf("no %s within 20 s", what)
		}
	}
}

func (o *office) count(pred func(*sdk.Event) bool) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, e := range o.events {
		if pred(e) {
			n++
		}
	}
	return n
}

func newOrder(truck, id string, rev uint32) sdk.Order {
	now := time.Now().UTC().Truncate(time.Millisecond)
	return sdk.Order{ID: id, Revision: rev, Truck: truck, Created: now, Expires: now.Add(24 * time.Hour),
		Recipient: "A. Recipient", Address: "1 Main St", Lat: 52.5200, Lon: 13.4050, RadiusM: 100, Notes: "ring twice",
		Status: sdk.OrderActive}
}

func receivedFor(id string, rev uint32) func(*sdk.Event) bool {
	return func(e *sdk.Event) bool { return e.Kind == sdk.EventReceived && e.OrderID == id && e.Revision == rev }
}

// TestTruckClientOrdersReceiptsProofAndStatus runs the truck client against real Mosquitto with mutual TLS:
// orders arrive verified and are stored once, each revision answered by a signed receipt carrying the
// order's hash; forged, altered, misaddressed, expired and malformed orders are refused with typed reasons;
// the driver's delivery is a signed, idempotent proof; a cancellation after delivery is a conflict; the
// retained status goes online with health and offline by the will when the link dies.
// The same runs against the development broker (waybill broker run), which must behave the same.
func TestTruckClientOrdersReceiptsProofAndStatus(t *testing.T) {
	for _, kind := range sdktest.Kinds {
		t.Run(string(kind), func(t *testing.T) { testTruckClient(t, kind) })
	}
}

func testTruckClient(t *testing.T, kind sdktest.Kind) {
	b := sdktest.Start(t, kind, sdktest.Options{Dispatch: []string{"office"}})
	truckCl, officeCl := b.Truck("truck-0001"), b.ClientFiles("office")
	b.Truck("truck-0002")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	off := newOffice(t, ctx, &wg, b, officeCl)

	st, err := store.Open(filepath.Join(t.TempDir(), "queue.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the client goroutines have ended
	proxy, err := faultproxy.Start(faultproxy.Config{Target: b.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close(context.Background())
	changes := make(chan Entry, 64)
	cl, err := NewClient(ClientConfig{
		Transport: transport.Config{Brokers: []string{"mqtts://" + proxy.Addr()}, CertFile: truckCl.CertFile,
			KeyFile: truckCl.KeyFile, CAFile: truckCl.CAFile, BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
			KeepAlive: 2 * time.Second},
		Store:    st,
		Health:   func() sdk.Health { return sdk.Health{Sats: 9, QueueDepth: 3, Version: "test"} },
		OnOrder:  func(e Entry) { changes <- e },
		Uploader: UploaderConfig{RetryDelay: 100 * time.Millisecond},
		Logger:   slog.New(slog.NewTextHandler(testLog{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := cl.Run(ctx); err != nil {
			t.Errorf("client Run: %v", err)
		}
	}()
	s := off.waitStatus("online", func(s *sdk.Status) bool { return s.State == sdk.StateOnline && s.Health != nil })
	if s.Health.Sats != 9 || s.Health.Version != "test" {
		t.Fatalf("status health = %+v", s.Health)
	}

	// A valid order: stored, and a receipt with the order's hash comes back.
	o1 := newOrder("truck-0001", "o-1", 1)
	off.send(o1)
	rec := off.waitEvent("received o-1", receivedFor("o-1", 1))
	if h, _ := o1.Hash(); rec.OrderHash != h {
		t.Fatalf("receipt hash %x, order hash %x", rec.OrderHash, h)
	}
	if e := <-changes; e.Order.ID != "o-1" || e.State != StateActive || e.Order.Notes != "ring twice" {
		t.Fatalf("order book entry = %+v", e)
	}

	// The same revision again (a dispatch re-send) and an older revision: acknowledged, not applied again.
	off.send(o1)
	o2 := newOrder("truck-0001", "o-1", 2)
	o2.Notes = "leave at the door"
	off.send(o2)
	off.waitEvent("received o-1 rev 2", receivedFor("o-1", 2))
	off.send(o1)
	if e := <-changes; e.Order.Revision != 2 {
		t.Fatalf("revision 2 not applied: %+v", e)
	}

	// Bad orders, each refused for its reason.
	foreignDir := t.TempDir()
	foreign, err := pki.Init(pki.Config{Dir: foreignDir}, pki.CAOptions{Fleet: "evil"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := foreign.Issue(pki.RoleDispatch, "office", pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	forger := sdktest.Client{CertFile: foreign.CertPath("office"), KeyFile: foreign.KeyPath("office")}.Signer(t)
	truckSigner := truckCl.Signer(t)
	sign := func(s *sdk.Signer, o sdk.Order) []byte {
		p, err := s.SignOrder(&o)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	altered := sign(off.signer, newOrder("truck-0001", "o-alt", 1))
	altered[len(altered)-10] ^= 0x04 // inside the signature: well-formed, but no longer valid
	expired := newOrder("truck-0001", "o-exp", 1)
	expired.Created, expired.Expires = expired.Created.Add(-48*time.Hour), expired.Created.Add(-time.Hour)
	bad := []struct {
		name    string
		order   string
		payload []byte
		reason  sdk.Reason
	}{
		{"forged by a foreign CA", "o-forged", sign(forger, newOrder("truck-0001", "o-forged", 1)), sdk.ReasonUntrustedCert},
		{"altered", "o-alt", altered, sdk.ReasonBadSignature},
		{"signed by a truck", "o-truck", sign(truckSigner, newOrder("truck-0001", "o-truck", 1)), sdk.ReasonWrongRole},
		{"misaddressed", "o-mis", sign(off.signer, newOrder("truck-0002", "o-mis", 1)), sdk.ReasonMisaddressed},
		{"expired", "o-exp", sign(off.signer, expired), sdk.ReasonExpired},
		{"malformed", "o-junk", []byte("\x83\x01\x02garbage"), sdk.ReasonMalformed},
	}
	before := cl.Book().VerifierStats()
	for _, c := range bad {
		off.publish("truck-0001", c.order, c.payload)
	}
	// The next valid order proves the bad ones were processed (messages on one connection arrive in order).
	off.send(newOrder("truck-0001", "o-3", 1))
	off.waitEvent("received o-3", receivedFor("o-3", 1))
	after := cl.Book().VerifierStats()
	for _, c := range bad {
		if after.ByReason[c.reason] <= before.ByReason[c.reason] {
			t.Errorf("%s: not refused as %v (verifier stats %v)", c.name, c.reason, after.ByReason)
		}
		if off.count(func(e *sdk.Event) bool { return e.OrderID == c.order }) != 0 {
			t.Errorf("%s: the truck answered a refused order", c.name)
		}
	}
	entries, _ := cl.Book().Orders()
	if len(entries) != 2 {
		t.Fatalf("order book holds %d orders, want o-1 and o-3: %+v", len(entries), entries)
	}

	// The driver delivers o-1 by the button, away from the destination: an off-site proof of delivery.
	fix := sdk.Fix{Time: time.Now().UTC().Truncate(time.Millisecond), Lat: 52.5300, Lon: 13.4050, Mode: 3}
	res, err := cl.Book().Act(ctx, Action{OrderID: "o-1", Kind: sdk.EventDelivered, Via: sdk.ViaButton, Fix: &fix})
	if err != nil {
		t.Fatal(err)
	}
	again, err := cl.Book().Act(ctx, Action{OrderID: "o-1", Kind: sdk.EventDelivered, Via: sdk.ViaButton, Fix: &fix})
	if err != nil || !reflect.DeepEqual(again, res) {
		t.Fatalf("repeated action: %+v, %v; first %+v", again, err, res)
	}
	if _, err := cl.Book().Act(ctx, Action{OrderID: "o-1", Kind: sdk.EventFailed, Reason: "x", Via: sdk.ViaButton}); !errors.Is(err, ErrOrderClosed) {
		t.Fatalf("failing a delivered order: %v", err)
	}
	if _, err := cl.Book().Act(ctx, Action{OrderID: "nope", Kind: sdk.EventDelivered}); !errors.Is(err, ErrUnknownOrder) {
		t.Fatalf("unknown order: %v", err)
	}
	proof := off.waitEvent("delivered o-1", func(e *sdk.Event) bool { return e.Kind == sdk.EventDelivered && e.OrderID == "o-1" })
	if !proof.OffSite || proof.Fix == nil || proof.Revision != 2 || proof.Via != sdk.ViaButton {
		t.Fatalf("proof of delivery = %+v", proof)
	}
	if h, _ := o2.Hash(); proof.OrderHash != h {
		t.Fatal("proof does not carry the hash of the revision delivered")
	}

	// Dispatch cancels o-1 after delivery: a conflict, reported; the delivery stands.
	c1 := newOrder("truck-0001", "o-1", 3)
	c1.Status = sdk.OrderCancelled
	off.send(c1)
	conflict := off.waitEvent("conflict o-1", receivedFor("o-1", 3))
	if !conflict.Conflict {
		t.Fatalf("cancellation after delivery not reported as conflict: %+v", conflict)
	}
	// Cancelling o-3 before delivery removes it from the driver's work.
	c3 := newOrder("truck-0001", "o-3", 2)
	c3.Status = sdk.OrderCancelled
	off.send(c3)
	off.waitEvent("received cancel o-3", receivedFor("o-3", 2))
	if _, err := cl.Book().Act(ctx, Action{OrderID: "o-3", Kind: sdk.EventDelivered, Via: sdk.ViaScreen}); !errors.Is(err, ErrOrderCancelled) {
		t.Fatalf("delivering a cancelled order: %v", err)
	}

	// Arrival inside the radius is an event computed on the truck.
	o4 := newOrder("truck-0001", "o-4", 1)
	off.send(o4)
	off.waitEvent("received o-4", receivedFor("o-4", 1))
	marked, err := cl.Book().CheckArrival(ctx, sdk.Fix{Time: time.Now().UTC(), Lat: o4.Lat + 0.0003, Lon: o4.Lon, Mode: 3})
	if err != nil || len(marked) != 1 || marked[0] != "o-4" {
		t.Fatalf("CheckArrival = %v, %v", marked, err)
	}
	off.waitEvent("arrived o-4", func(e *sdk.Event) bool { return e.Kind == sdk.EventArrived && e.OrderID == "o-4" })

	// Power cut: the will says offline; back online after the reconnect.
	proxy.DropAll()
	proxy.SetBlackHole(true)
	off.waitStatus("offline", func(s *sdk.Status) bool { return s.State == sdk.StateOffline })
	proxy.SetBlackHole(false)
	proxy.DropAll()

	// Renewal: a new certificate and key put in place are used for signing after the next connection.
	renewed, err := b.PKI.Issue(pki.RoleTruck, "truck-0001", pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The next connection after the files are in place picks them up. A reconnect already under way while
	// the files were being replaced may have read the old pair, so drop the link until one connects after.
	waitSigner := time.Now().Add(20 * time.Second)
	for fmt.Sprintf("%x", cl.signer.get().Certificate().SerialNumber) != renewed.Serial {
		if time.Now().After(waitSigner) {
			t.Fatal("renewed certificate not used for signing after a reconnect")
		}
		proxy.DropAll()
		time.Sleep(300 * time.Millisecond)
	}
	o5 := newOrder("truck-0001", "o-5", 1)
	off.send(o5)
	off.waitEvent("received o-5 signed with the renewed certificate", receivedFor("o-5", 1))

	bs := cl.Book().Stats()
	if bs.Duplicates < 1 || bs.Stale < 1 || bs.Conflicts != 1 || bs.Rejected < uint64(len(bad)) {
		t.Fatalf("book stats = %+v", bs)
	}
	t.Logf("book %+v; verifier %v", bs, cl.Book().VerifierStats().ByReason)
}

// testLog writes log lines into the test's output (shown with -v or on failure).
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
