package dispatch

import (
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const fast = 50 * time.Millisecond

func identity(t *testing.T, cl sdktest.Client) (*sdk.Signer, crypto.Signer) {
	t.Helper()
	_, key := cl.CertKey(t)
	return cl.Signer(t), key
}

func transportConfig(addr string, cl sdktest.Client) transport.Config {
	return transport.Config{
		Brokers: []string{"mqtts://" + addr}, ClientID: cl.Name,
		CertFile: cl.CertFile, KeyFile: cl.KeyFile, CAFile: cl.CAFile,
		BackoffMin: fast, BackoffMax: 500 * time.Millisecond,
	}
}

func newOutbox(t *testing.T, cl sdktest.Client, cfg OutboxConfig) *Outbox {
	t.Helper()
	signer, key := identity(t, cl)
	cfg.Certificate, cfg.Key = signer.Certificate(), key
	if cfg.Path == "" && cfg.Store == nil {
		cfg.Path = filepath.Join(t.TempDir(), "outbox.db")
	}
	ob, err := NewOutbox(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

// startClient runs a dispatch Client until the test ends.
func startClient(t *testing.T, b *sdktest.Broker, cl sdktest.Client, cfg Config) *Client {
	t.Helper()
	c := runClient(t, b, cl, cfg, nil)
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	if err := c.Conn().Wait(wctx); err != nil {
		t.Fatalf("dispatch client never connected: %v", err)
	}
	return c
}

// runClient runs a dispatch client as cl (the fleet CA as its CA, tc applied to its transport) until the
// test ends, without waiting for it to connect.
func runClient(t *testing.T, b *sdktest.Broker, cl sdktest.Client, cfg Config, tc func(*transport.Config)) *Client {
	t.Helper()
	cfg.Transport = transportConfig(b.Addr, cl)
	if tc != nil {
		tc(&cfg.Transport)
	}
	ca, err := pki.LoadCertificates(cl.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg.CA = ca
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("client Run: %v", err)
		}
	})
	return c
}

// responder is a test-only truck: it verifies the orders it receives with the fleet CA, keeps the highest
// revision of each, and answers with signed received events, like the real truck (sdk/truck), using only
// sdk and transport. It publishes a signed online status when it connects, with an offline will.
type responder struct {
	t        *testing.T
	b        *sdktest.Broker
	cl       sdktest.Client
	signer   *sdk.Signer
	verifier *sdk.Verifier
	topics   sdk.Topics
	epoch    sdk.Epoch
	repeat   time.Duration // a duplicate of the current revision is answered again at most this often

	mu        sync.Mutex
	book      map[string]orderState // guarded by mu
	delivered map[string]int        // deliveries per order id (all revisions, duplicates too)
	rejected  int
	mute      bool         // receive orders but do not answer (a truck whose receipts get lost)
	queue     []*sdk.Event // events waiting for the broker's PUBACK (the truck's store)
	seq       uint64
	cur       *transport.Conn
	notify    chan struct{}

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type orderState struct {
	rev       uint32
	hash      sdk.OrderHash
	receiptAt time.Time
	delivered bool
}

func newResponder(t *testing.T, b *sdktest.Broker, cl sdktest.Client) *responder {
	t.Helper()
	v := cl.Verifier(t, sdk.VerifierConfig{})
	r := &responder{t: t, b: b, cl: cl, signer: cl.Signer(t), verifier: v, repeat: time.Minute,
		book: map[string]orderState{}, delivered: map[string]int{}, notify: make(chan struct{}, 1)}
	_, _ = rand.Read(r.epoch[:])
	t.Cleanup(r.stop)
	return r
}

// start connects (resuming the broker's session unless clean) and answers orders until stop.
func (r *responder) start(clean bool) *transport.Conn {
	r.t.Helper()
	status, _ := r.topics.Status(r.cl.Name)
	orders, _ := r.topics.TruckOrdersFilter(r.cl.Name)
	cfg := transportConfig(r.b.Addr, r.cl)
	cfg.CleanStart = clean
	cfg.Subscriptions = []transport.Subscription{{Topic: orders, QoS: 1}}
	cfg.OnPublish = r.handle
	cfg.Will = &transport.Will{Topic: status, Retain: true, Refresh: func() ([]byte, error) {
		return r.signer.SignStatus(&sdk.Status{State: sdk.StateOffline, Time: time.Now()})
	}}
	cfg.OnConnect = func(ctx context.Context, _ transport.ConnectInfo) {
		p, err := r.signer.SignStatus(&sdk.Status{State: sdk.StateOnline, Time: time.Now()})
		if err == nil {
			_ = r.conn().Publish(ctx, status, p, transport.PublishOptions{QoS: 1, Retain: true})
		}
	}
	c, err := transport.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.cur = c
	r.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		_ = c.Run(ctx)
	}()
	go func() {
		defer r.wg.Done()
		r.upload(ctx, c)
	}()
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := c.Wait(wctx); err != nil {
		r.t.Fatalf("responder never connected: %v", err)
	}
	return c
}

func (r *responder) conn() *transport.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

// stop disconnects (the broker publishes the offline will) and waits for the goroutines.
func (r *responder) stop() {
	if r.cancel != nil {
		r.cancel()
		r.wg.Wait()
		r.cancel = nil
	}
}

func (r *responder) setMute(m bool) {
	r.mu.Lock()
	r.mute = m
	r.mu.Unlock()
}

func (r *responder) handle(ctx context.Context, m transport.Message) error {
	msg, err := r.verifier.Verify(ctx, m.Topic, m.Payload)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil && !errors.Is(err, sdk.ReasonDuplicate) {
		r.rejected++
		return nil
	}
	o := msg.Order
	r.delivered[o.ID]++
	if r.mute {
		return nil
	}
	cur, known := r.book[o.ID]
	now := time.Now()
	conflict := false
	switch {
	case known && o.Revision < cur.rev:
		return nil
	case known && o.Revision == cur.rev:
		if now.Sub(cur.receiptAt) < r.repeat {
			return nil
		}
		conflict = cur.delivered && o.Status == sdk.OrderCancelled
	default:
		conflict = cur.delivered && o.Status == sdk.OrderCancelled
		cur = orderState{rev: o.Revision, hash: msg.BodyHash(), delivered: cur.delivered}
	}
	cur.receiptAt = now
	r.book[o.ID] = cur
	r.queueLocked(&sdk.Event{Kind: sdk.EventReceived, Time: now, OrderID: o.ID, Revision: o.Revision,
		OrderHash: cur.hash, Via: sdk.ViaAuto, Conflict: conflict})
	return nil
}

// deliver queues a delivered event for an order the responder holds.
func (r *responder) deliver(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.book[id]
	cur.delivered = true
	r.book[id] = cur
	r.queueLocked(&sdk.Event{Kind: sdk.EventDelivered, Time: time.Now(), OrderID: id, Revision: cur.rev,
		OrderHash: cur.hash, Via: sdk.ViaButton})
}

func (r *responder) queueLocked(ev *sdk.Event) {
	r.seq++
	ev.Epoch, ev.RecordSeq = r.epoch, r.seq
	r.queue = append(r.queue, ev)
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// upload publishes queued events, removing each only after its PUBACK (the truck's uploader, in small).
func (r *responder) upload(ctx context.Context, c *transport.Conn) {
	topic, _ := r.topics.Events(r.cl.Name)
	for {
		r.mu.Lock()
		batch := append([]*sdk.Event(nil), r.queue...)
		r.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-r.notify:
				continue
			}
		}
		if err := c.Wait(ctx); err != nil {
			return
		}
		var wg sync.WaitGroup
		sent := make([]bool, len(batch))
		sem := make(chan struct{}, 32)
		for i, ev := range batch {
			p, err := r.signer.SignEvent(ev)
			if err != nil {
				r.t.Errorf("sign event: %v", err)
				return
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				sent[i] = c.Publish(pctx, topic, p, transport.PublishOptions{QoS: 1}) == nil
			}()
		}
		wg.Wait()
		r.mu.Lock()
		keep := r.queue[:0]
		done := map[*sdk.Event]bool{}
		for i, ev := range batch {
			if sent[i] {
				done[ev] = true
			}
		}
		for _, ev := range r.queue {
			if !done[ev] {
				keep = append(keep, ev)
			}
		}
		r.queue = keep
		r.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if len(done) < len(batch) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(fast):
			}
		}
	}
}

func (r *responder) counts() (orders, deliveries int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.delivered {
		deliveries += n
	}
	return len(r.book), deliveries
}

func (r *responder) deliveries(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.delivered[id]
}
