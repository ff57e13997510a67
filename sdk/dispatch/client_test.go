package dispatch

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/store"
)

func testOrder(truck, id string) sdk.Order {
	return sdk.Order{ID: id, Truck: truck, Expires: time.Now().Add(48 * time.Hour), Recipient: "A. Jones",
		Address: "1 Quay Street", Lat: 51.5072, Lon: -0.1276, RadiusM: 80, Notes: "ring twice"}
}

// TestOutboxResendsUntilReceived: a truck whose receipts are lost gets the order again and again, on the
// backoff; once a received event with the right hash arrives, the re-sending stops.
func TestOutboxResendsUntilReceived(t *testing.T) {
	for _, kind := range sdktest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			b := sdktest.Start(t, kind, sdktest.Options{Dispatch: []string{"office"}})
			truckCl, office := b.Truck("truck-1"), b.ClientFiles("office")
			r := newResponder(t, b, truckCl)
			r.repeat = 0
			r.setMute(true)
			r.start(false)

			ob := newOutbox(t, office, OutboxConfig{BackoffMin: 100 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
				Poll: fast, OnlineGrace: -1})
			startClient(t, b, office, Config{Outbox: ob, NoTelemetry: true})
			ctx := context.Background()
			if _, err := ob.Create(ctx, testOrder("truck-1", "o-1")); err != nil {
				t.Fatal(err)
			}
			sdktest.WaitFor(t, 20*time.Second, "three deliveries of the unconfirmed order", func() bool { return r.deliveries("o-1") >= 3 })
			e, err := ob.Get(ctx, "truck-1", "o-1")
			if err != nil {
				t.Fatal(err)
			}
			if e.State != StatePending || e.Sends < 2 {
				t.Fatalf("unconfirmed order: state %s after %d sends; want pending, >= 2 sends", e.State, e.Sends)
			}

			r.setMute(false)
			sdktest.WaitFor(t, 20*time.Second, "the truck's confirmation", func() bool {
				e, err = ob.Get(ctx, "truck-1", "o-1")
				return err == nil && e.State == StateReceived
			})
			if e.Confirmed != 1 || e.ConfirmedAt.IsZero() {
				t.Fatalf("confirmed entry: %+v", e)
			}
			// Once confirmed, nothing more is sent (several backoff periods pass).
			n := r.deliveries("o-1")
			time.Sleep(time.Second)
			if m := r.deliveries("o-1"); m > n+1 { // one send may have been in flight
				t.Fatalf("the order was sent %d more times after its confirmation", m-n)
			}
			if r.rejected != 0 {
				t.Fatalf("the truck refused %d orders", r.rejected)
			}

			// A cancellation is a new revision, sent and confirmed the same way; the state is cancelled.
			if _, err := ob.Cancel(ctx, "truck-1", "o-1", "customer moved"); err != nil {
				t.Fatal(err)
			}
			sdktest.WaitFor(t, 20*time.Second, "the cancellation's confirmation", func() bool {
				e, err = ob.Get(ctx, "truck-1", "o-1")
				return err == nil && e.State == StateCancelled && e.Confirmed == 2
			})
		})
	}
}

// TestCancelAfterDeliveryIsRefused: once the truck's delivered event reached the outbox, a cancellation is
// refused with ErrClosed and the entry stays delivered (TestOutboxCancelTooLate covers a cancellation sent
// before the delivery was known).
func TestCancelAfterDeliveryIsRefused(t *testing.T) {
	b := sdktest.StartDevBroker(t, sdktest.Options{Dispatch: []string{"office"}})
	truckCl, office := b.Truck("truck-1"), b.ClientFiles("office")
	r := newResponder(t, b, truckCl)
	r.start(false)
	ob := newOutbox(t, office, OutboxConfig{Poll: fast})
	startClient(t, b, office, Config{Outbox: ob, NoTelemetry: true})
	ctx := context.Background()
	if _, err := ob.Create(ctx, testOrder("truck-1", "o-9")); err != nil {
		t.Fatal(err)
	}
	get := func() Entry {
		e, err := ob.Get(ctx, "truck-1", "o-9")
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	sdktest.WaitFor(t, 20*time.Second, "received", func() bool { return get().State == StateReceived })
	r.deliver("o-9")
	sdktest.WaitFor(t, 20*time.Second, "delivered", func() bool { return get().State == StateDelivered })
	// The outbox knows the order is delivered: the cancellation is refused at once and nothing is stored.
	before := get()
	if _, err := ob.Cancel(ctx, "truck-1", "o-9", ""); !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "delivered") {
		t.Fatalf("cancel after delivery: %v, want ErrClosed saying delivered", err)
	}
	if e := get(); e.State != StateDelivered || e.Order.Revision != before.Order.Revision || e.Order.Status == sdk.OrderCancelled {
		t.Fatalf("after the refused cancel: %+v", e)
	}
}

// TestOfflineTruckGets2000Orders: 2,000 orders created while the truck is offline all reach it after it
// reconnects: from the broker's queue (the truck's persistent session), and from the outbox alone when the
// broker lost the queue (killed with its persistence file gone) or the truck's session is gone (clean start).
func TestOfflineTruckGets2000Orders(t *testing.T) {
	n := 2000
	if runtime.GOARCH == "arm" {
		// Under qemu every ECDSA signature and verification takes milliseconds, and each received event is
		// applied to the outbox (one fsync) before its ack: the ARM run checks the same paths, smaller.
		n = 300
	}
	for _, tc := range []struct {
		name string
		lose func(b *sdktest.Broker)
		// clean starts the truck without its session
		clean bool
	}{
		{name: "broker queue"},
		{name: "broker killed and its queue lost", lose: func(b *sdktest.Broker) {
			b.Kill()
			if err := os.RemoveAll(filepath.Join(b.Dir, "data")); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(b.Dir, "data"), 0o700); err != nil {
				t.Fatal(err)
			}
			b.Start()
		}},
		{name: "truck session gone", clean: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
			truckCl, office := b.Truck("truck-7"), b.ClientFiles("office")
			r := newResponder(t, b, truckCl)
			r.start(false) // makes the persistent session, subscribed to its orders
			r.stop()

			st, err := store.Open(filepath.Join(t.TempDir(), "outbox.db"), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			ob := newOutbox(t, office, OutboxConfig{Store: st, Poll: fast, OnlineGrace: 2 * time.Second})
			c := startClient(t, b, office, Config{Outbox: ob, NoTelemetry: true})
			sdktest.WaitFor(t, 20*time.Second, "the truck's offline status", func() bool {
				s, ok := c.Consumer().Statuses()["truck-7"]
				return ok && s.Status.State == sdk.StateOffline
			})

			ctx := context.Background()
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for w := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < n; i += 16 {
						if _, err := ob.Create(ctx, testOrder("truck-7", fmt.Sprintf("o-%04d", i))); err != nil {
							errs <- err
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			// Every order went to the broker (PUBACK) while the truck was offline.
			sdktest.WaitFor(t, 60*time.Second, "every order published once", func() bool {
				list, err := ob.List(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range list {
					if e.Sends == 0 {
						return false
					}
				}
				return len(list) == n
			})
			if got, _ := r.counts(); got != 0 {
				t.Fatalf("the offline truck got %d orders", got)
			}
			if tc.lose != nil {
				tc.lose(b)
			}
			r.start(tc.clean)
			sdktest.WaitFor(t, 120*time.Second, "every order confirmed", func() bool {
				p, err := ob.Pending(ctx)
				return err == nil && p == 0
			})
			orders, deliveries := r.counts()
			if orders != n {
				t.Fatalf("the truck holds %d orders, want %d", orders, n)
			}
			list, err := ob.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range list {
				if e.State != StateReceived || e.Confirmed != 1 {
					t.Fatalf("order %s: state %s, confirmed revision %d", e.Order.ID, e.State, e.Confirmed)
				}
			}
			if r.rejected != 0 {
				t.Fatalf("the truck refused %d orders", r.rejected)
			}
			t.Logf("%s: %d orders confirmed; the truck got %d deliveries", tc.name, n, deliveries)
		})
	}
}

// telemetryBase is the time of record 0 in telemetryPayload's batches: one for the whole run, so that a
// record sent again has the same content (as a truck's does), and is a duplicate, not a reused identity.
var telemetryBase = time.Now().UTC().Truncate(time.Second).Add(-time.Hour)

// telemetryPayload signs a telemetry batch of the given record seqs.
func telemetryPayload(t *testing.T, s *sdk.Signer, epoch sdk.Epoch, seqs ...uint64) []byte {
	t.Helper()
	tel := &sdk.Telemetry{Epoch: epoch}
	for _, q := range seqs {
		tel.Fixes = append(tel.Fixes, sdk.TelemetryFix{Seq: q, Fix: sdk.Fix{Time: telemetryBase.Add(time.Duration(q) * time.Second),
			Lat: 52.5 + float64(q)*1e-4, Lon: 13.4, Mode: 3}})
	}
	p, err := s.SignTelemetry(tel)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func seqRange(a, b uint64) []uint64 {
	var out []uint64
	for i := a; i <= b; i++ {
		out = append(out, i)
	}
	return out
}

// collector gathers a consumer's updates.
type collector struct {
	mu     sync.Mutex
	fixes  map[uint64]int // record seq -> times handed over
	events map[sdk.MsgID]int
	rej    []Rejection
}

func newCollector() *collector {
	return &collector{fixes: map[uint64]int{}, events: map[sdk.MsgID]int{}}
}

func (c *collector) handle(_ context.Context, u Update) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range u.Fixes {
		c.fixes[f.Seq]++
	}
	if u.Event != nil {
		c.events[u.Event.ID]++
	}
	if u.Rejection != nil {
		c.rej = append(c.rej, *u.Rejection)
	}
	return nil
}

func (c *collector) nFixes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.fixes)
}

// TestConsumerDropsDuplicatesAndCountsForgeries publishes, through the broker and with the truck's own
// connection: overlapping telemetry batches, the same batch twice, the newest fix before the backlog, the
// same event twice (signed again, as after a crash), a telemetry message with one bit of its signature
// flipped, and one signed by a look-alike certificate from another CA.
func TestConsumerDropsDuplicatesAndCountsForgeries(t *testing.T) {
	for _, kind := range sdktest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			b := sdktest.Start(t, kind, sdktest.Options{Dispatch: []string{"office"}})
			truckCl, office := b.Truck("truck-1"), b.ClientFiles("office")
			truckCert, err := pki.LoadCertificate(truckCl.CertFile)
			if err != nil {
				t.Fatal(err)
			}
			col := newCollector()
			c := startClient(t, b, office, Config{Certificates: []*x509.Certificate{truckCert}, Handle: col.handle})

			r := newResponder(t, b, truckCl)
			conn := r.start(false)
			ctx := context.Background()
			var topics sdk.Topics
			telTopic, _ := topics.Telemetry("truck-1")
			evTopic, _ := topics.Events("truck-1")
			pub := func(topic string, p []byte) {
				t.Helper()
				if err := conn.Publish(ctx, topic, p, transport.PublishOptions{QoS: 1}); err != nil {
					t.Fatal(err)
				}
			}
			s := r.signer
			epoch := sdk.Epoch{1, 2, 3, 4, 5, 6, 7, 8}
			first := telemetryPayload(t, s, epoch, seqRange(1, 10)...)
			pub(telTopic, first)
			pub(telTopic, telemetryPayload(t, s, epoch, seqRange(5, 15)...)) // 5..10 again
			pub(telTopic, first)                                             // the same message again
			pub(telTopic, telemetryPayload(t, s, epoch, 100))                // the newest first, after a reconnect
			pub(telTopic, telemetryPayload(t, s, epoch, seqRange(16, 100)...))
			ev := &sdk.Event{Kind: sdk.EventDelivered, Epoch: epoch, RecordSeq: 101, Time: time.Now(), OrderID: "o-1",
				Revision: 1, Via: sdk.ViaButton}
			for range 2 {
				p, err := s.SignEvent(ev) // signed anew: another envelope, the same id
				if err != nil {
					t.Fatal(err)
				}
				pub(evTopic, p)
			}
			// Altered: one bit of the signature.
			bad := telemetryPayload(t, s, epoch, 200)
			bad[len(bad)-1] ^= 1
			pub(telTopic, bad)
			// Forged: a look-alike "truck-1" certificate from another CA.
			other, err := pki.Init(pki.Config{Dir: filepath.Join(t.TempDir(), "pki")}, pki.CAOptions{Fleet: "evil"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := other.Issue(pki.RoleTruck, "truck-1", pki.IssueOptions{}); err != nil {
				t.Fatal(err)
			}
			forger := sdktest.Client{CertFile: other.CertPath("truck-1"), KeyFile: other.KeyPath("truck-1")}.Signer(t)
			pub(telTopic, telemetryPayload(t, forger, epoch, 201))

			sdktest.WaitFor(t, 20*time.Second, "every message handled", func() bool {
				st := c.Consumer().Stats()
				return st.Fixes == 100 && st.Events == 1 && st.DuplicateEvents == 1 && len(st.Rejected) == 2
			})
			st := c.Consumer().Stats()
			if st.DuplicateFixes != 6+10+1 {
				t.Errorf("duplicate fixes %d, want 17 (6 overlapping, 10 of the repeated message, the newest fix again)", st.DuplicateFixes)
			}
			if st.Rejected[sdk.ReasonBadSignature] != 1 || st.Rejected[sdk.ReasonUnknownSigner] != 1 {
				t.Errorf("rejections %v, want one bad signature and one unknown signer", st.Rejected)
			}
			col.mu.Lock()
			defer col.mu.Unlock()
			for q := uint64(1); q <= 100; q++ {
				if col.fixes[q] != 1 {
					t.Errorf("fix %d handed over %d times", q, col.fixes[q])
				}
			}
			if len(col.fixes) != 100 || len(col.events) != 1 || len(col.rej) != 2 {
				t.Errorf("handed over %d fixes, %d events, %d rejections; want 100, 1, 2", len(col.fixes), len(col.events), len(col.rej))
			}
		})
	}
}

// TestSharedSubscriptionSplitsTheFleet: two dispatch processes in one share group get every fix exactly
// once between them, and both get some.
func TestSharedSubscriptionSplitsTheFleet(t *testing.T) {
	for _, kind := range sdktest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			b := sdktest.Start(t, kind, sdktest.Options{Dispatch: []string{"office-a", "office-b"}})
			truckCl := b.Truck("truck-1")
			truckCert, err := pki.LoadCertificate(truckCl.CertFile)
			if err != nil {
				t.Fatal(err)
			}
			cols := []*collector{newCollector(), newCollector()}
			for i, name := range []string{"office-a", "office-b"} {
				startClient(t, b, b.ClientFiles(name), Config{ShareGroup: "fleet-view", Certificates: []*x509.Certificate{truckCert},
					Handle: cols[i].handle})
			}
			r := newResponder(t, b, truckCl)
			conn := r.start(false)
			topic, _ := sdk.Topics{}.Telemetry("truck-1")
			const n = 200
			epoch := sdk.Epoch{9}
			for q := uint64(1); q <= n; q++ {
				if err := conn.Publish(context.Background(), topic, telemetryPayload(t, r.signer, epoch, q), transport.PublishOptions{QoS: 1}); err != nil {
					t.Fatal(err)
				}
			}
			sdktest.WaitFor(t, 30*time.Second, "every fix at one of the two", func() bool { return cols[0].nFixes()+cols[1].nFixes() >= n })
			a, bb := cols[0].nFixes(), cols[1].nFixes()
			if a+bb != n || a == 0 || bb == 0 {
				t.Fatalf("split %d + %d, want %d in total and some at each", a, bb, n)
			}
			for q := uint64(1); q <= n; q++ {
				if cols[0].fixes[q]+cols[1].fixes[q] != 1 {
					t.Fatalf("fix %d handed over %d + %d times", q, cols[0].fixes[q], cols[1].fixes[q])
				}
			}
			t.Logf("%s: %d fixes split %d / %d", kind, n, a, bb)
		})
	}
}
