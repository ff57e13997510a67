package truck

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/sdktest/faultproxy"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/store"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// consumer is a dispatch-side subscriber that verifies every message and drops duplicate fixes and events
// by (truck, epoch, record seq).
type consumer struct {
	mu       sync.Mutex
	fixes    map[string]sdk.Fix // "epoch/seq"
	events   map[string]*sdk.Event
	dups     int
	rejected int
	order    []uint64 // fix seqs in arrival order
	changed  chan struct{}
}

func (c *consumer) handle(v *sdk.Verifier) func(ctx context.Context, m transport.Message) error {
	return func(ctx context.Context, m transport.Message) error {
		msg, err := v.Verify(ctx, m.Topic, m.Payload)
		c.mu.Lock()
		defer c.mu.Unlock()
		defer func() {
			select {
			case c.changed <- struct{}{}:
			default:
			}
		}()
		if errors.Is(err, sdk.ReasonDuplicate) {
			c.dups++
			return nil
		}
		if err != nil {
			c.rejected++
			return nil // acknowledged: a bad message is not retried
		}
		switch {
		case msg.Telemetry != nil:
			for _, f := range msg.Telemetry.Fixes {
				k := fmt.Sprintf("%x/%d", msg.Telemetry.Epoch, f.Seq)
				if _, ok := c.fixes[k]; ok {
					c.dups++
					continue
				}
				c.fixes[k] = f.Fix
				c.order = append(c.order, f.Seq)
			}
		case msg.Event != nil:
			k := fmt.Sprintf("%x/%d", msg.Event.Epoch, msg.Event.RecordSeq)
			if _, ok := c.events[k]; ok {
				c.dups++
			}
			c.events[k] = msg.Event
		}
		return nil
	}
}

func (c *consumer) counts() (fixes, events int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.fixes), len(c.events)
}

func signerFor(t *testing.T, cl sdktest.Client, st *store.Store) *sdk.Signer {
	t.Helper()
	pair, err := pki.LoadKeyPair(cl.CertFile, cl.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.LoadCertificate(cl.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := NewStoreSequencer(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sdk.NewSigner(sdk.SignerConfig{Certificate: cert, Key: pair.PrivateKey.(crypto.Signer), Sequencer: seq})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testFix(i int) sdk.Fix {
	return sdk.Fix{
		Time: time.Now().UTC().Add(time.Duration(i-5000) * time.Second).Truncate(time.Millisecond),
		Lat:  52.52 + float64(i)*0.0001, Lon: 13.40 + float64(i)*0.00005, Mode: 3,
		Speed: 12.5, Course: 45, Sats: 9, HDOP: 0.9,
		Has: sdk.FixSpeed | sdk.FixCourse | sdk.FixSats | sdk.FixHDOP,
	}
}

func startLink(t *testing.T, ctx context.Context, wg *sync.WaitGroup, addr string, cl sdktest.Client, cfg transport.Config) *transport.Conn {
	t.Helper()
	cfg.Brokers = []string{"mqtts://" + addr}
	cfg.ClientID = cl.Name
	cfg.CertFile, cfg.KeyFile, cfg.CAFile = cl.CertFile, cl.KeyFile, cl.CAFile
	cfg.BackoffMin, cfg.BackoffMax = 50*time.Millisecond, 500*time.Millisecond
	c, err := transport.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.Run(ctx)
	}()
	return c
}

// TestUploaderDeliversEverythingAcrossLinkDrops drains 3,000 fixes and 20 delivery events through real
// Mosquitto with mutual TLS, drops the truck's connection mid-publish three times (through a fault proxy)
// and restarts the broker once, and checks that every record reached a verifying consumer and the store is
// empty. (A broker killed with SIGKILL can lose messages it had acknowledged: Mosquitto's persistence is a
// periodic snapshot, see design.md. That loss is past the truck's PUBACK and outside its guarantee.)
func TestUploaderDeliversEverythingAcrossLinkDrops(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	truckCl, officeCl := b.Truck("truck-0001"), b.ClientFiles("office")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// The consumer: a dispatch identity subscribed to every truck's telemetry and events.
	ca, err := pki.LoadCertificates(officeCl.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	v, err := sdk.NewVerifier(sdk.VerifierConfig{CA: ca, MaxAge: sdk.MaxAge{Telemetry: 48 * time.Hour, Event: 48 * time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	cons := &consumer{fixes: map[string]sdk.Fix{}, events: map[string]*sdk.Event{}, changed: make(chan struct{}, 1)}
	var topics sdk.Topics
	office := startLink(t, ctx, &wg, b.Addr, officeCl, transport.Config{
		Subscriptions: []transport.Subscription{{Topic: topics.FleetFilter(sdk.KindTelemetry), QoS: 1}, {Topic: topics.FleetFilter(sdk.KindEvents), QoS: 1}},
		OnPublish:     cons.handle(v),
	})
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := office.Wait(wctx); err != nil {
		t.Fatalf("consumer never connected: %v", err)
	}

	// The truck's store, filled while offline.
	st, err := store.Open(filepath.Join(t.TempDir(), "queue.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const nFixes, nEvents = 3000, 20
	var entries []store.Entry
	for i := range nFixes {
		e, err := EncodeFix(testFix(i))
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
		if i%(nFixes/nEvents) == 0 {
			ev, err := EncodeEvent(sdk.Event{Kind: sdk.EventDelivered, Time: time.Now().UTC(), OrderID: fmt.Sprintf("o-%d", i),
				Revision: 1, Via: sdk.ViaButton, Fix: ptr(testFix(i))})
			if err != nil {
				t.Fatal(err)
			}
			entries = append(entries, ev)
		}
	}
	if _, err := st.Append(ctx, entries...); err != nil {
		t.Fatal(err)
	}

	proxy, err := faultproxy.Start(faultproxy.Config{Target: b.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close(context.Background())
	link := startLink(t, ctx, &wg, proxy.Addr(), truckCl, transport.Config{})
	up, err := NewUploader(UploaderConfig{Store: st, Link: link, Signer: signerFor(t, truckCl, st), BatchFixes: 10, MaxInFlight: 8,
		RetryDelay: 100 * time.Millisecond, PublishTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		up.Run(ctx)
	}()

	// Drop the truck's link at a quarter, half and three quarters of the backlog; restart the broker at 60 %.
	drops, restarted := 0, false
	deadline := time.After(90 * time.Second)
	for {
		fixes, events := cons.counts()
		if fixes == nFixes && events == nEvents {
			break
		}
		if drops < 3 && fixes > nFixes*(drops+1)/4 {
			n := proxy.DropAll()
			drops++
			t.Logf("dropped %d connections after %d fixes", n, fixes)
		}
		if !restarted && fixes > nFixes*6/10 {
			b.Restart()
			restarted = true
			t.Logf("broker restarted after %d fixes", fixes)
		}
		select {
		case <-cons.changed:
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			cons.mu.Lock()
			have := map[uint64]bool{}
			for _, q := range cons.order {
				have[q] = true
			}
			var missing []uint64
			for q := uint64(1); q <= nFixes+nEvents; q++ {
				if !have[q] {
					missing = append(missing, q)
				}
			}
			t.Logf("rejected %d, dups %d, fix seqs missing (events included): %v; verifier %+v", cons.rejected, cons.dups, missing, v.Stats())
			cons.mu.Unlock()
			t.Fatalf("after 90 s: %d of %d fixes, %d of %d events; uploader %+v; store %+v", fixes, nFixes, events, nEvents, up.Stats(), st.Stats())
		}
	}
	if drops < 3 || !restarted {
		t.Fatalf("the drain finished before the faults: %d drops, restarted %v", drops, restarted)
	}
	// Everything was delivered; the store empties as the last acks land.
	for i := 0; ; i++ {
		s := st.Stats()
		if s.Critical.Records == 0 && s.Normal.Records == 0 {
			break
		}
		if i > 100 {
			t.Fatalf("store not empty after delivery: %+v", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cons.mu.Lock()
	defer cons.mu.Unlock()
	if cons.rejected != 0 {
		t.Fatalf("consumer rejected %d messages", cons.rejected)
	}
	for k, e := range cons.events {
		if e.Kind != sdk.EventDelivered || e.Fix == nil {
			t.Fatalf("event %s arrived damaged: %+v", k, e)
		}
	}
	us := up.Stats()
	if us.LiveFirst == 0 {
		t.Fatal("no live fix was sent ahead of the backlog")
	}
	t.Logf("delivered %d fixes and %d events through 3 link drops and a broker restart; %d duplicates dropped; uploader %+v",
		len(cons.fixes), len(cons.events), cons.dups, us)
}

func ptr[T any](v T) *T { return &v }
