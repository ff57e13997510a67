package archive_test

import (
	"context"
	"crypto/x509"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/archive"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const fast = 50 * time.Millisecond

func transportConfig(addr string, cl sdktest.Client) transport.Config {
	return transport.Config{Brokers: []string{"mqtts://" + addr}, ClientID: cl.Name, CertFile: cl.CertFile,
		KeyFile: cl.KeyFile, CAFile: cl.CAFile, BackoffMin: fast, BackoffMax: 300 * time.Millisecond}
}

func openArchive(t *testing.T, path string) *archive.Archive {
	t.Helper()
	a, err := archive.Open(path, archive.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// office is a running dispatch client; stop ends it (a clean DISCONNECT) and waits.
type office struct {
	c      *dispatch.Client
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func (o *office) stop(t *testing.T) {
	o.once.Do(func() {
		o.cancel()
		if err := <-o.done; err != nil {
			t.Errorf("dispatch client Run: %v", err)
		}
	})
}

// startOffice runs a dispatch client for the office identity with the truck's certificate known.
func startOffice(t *testing.T, b *sdktest.Broker, name string, cfg dispatch.Config, tc func(*transport.Config)) *office {
	t.Helper()
	cl := b.ClientFiles(name)
	cfg.Transport = transportConfig(b.Addr, cl)
	if tc != nil {
		tc(&cfg.Transport)
	}
	ca, err := pki.LoadCertificates(cl.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg.CA = ca
	if truck, err := pki.LoadCertificate(b.PKI.CertPath("truck-1")); err == nil {
		cfg.Certificates = []*x509.Certificate{truck} // telemetry carries none
	}
	cfg.ReceiptDelay = 100 * time.Millisecond
	c, err := dispatch.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	o := &office{c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { o.done <- c.Run(ctx) }()
	t.Cleanup(func() { o.stop(t) })
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := c.Conn().Wait(wctx); err != nil {
		t.Fatalf("dispatch client never connected: %v", err)
	}
	return o
}

// truck is a test truck: it publishes signed telemetry and events with its own certificate and collects
// the verified receipts on its receipts topic and the dispatch statuses.
type truck struct {
	t        *testing.T
	conn     *transport.Conn
	signer   *sdk.Signer
	verifier *sdk.Verifier
	epoch    sdk.Epoch
	base     time.Time // record q is of base + q seconds: a record sent again has the same content

	mu       sync.Mutex
	receipts []*sdk.Message // verified, in arrival order
	rejected []error
	statuses map[string]*sdk.Message // dispatch name -> last verified status
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func startTruck(t *testing.T, b *sdktest.Broker) *truck {
	t.Helper()
	cl := b.Truck("truck-1")
	v := cl.Verifier(t, sdk.VerifierConfig{})
	cert, key := cl.CertKey(t)
	s, err := sdk.NewSigner(sdk.SignerConfig{Certificate: cert, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	tr := &truck{t: t, signer: s, verifier: v, epoch: sdk.Epoch{1, 2, 3, 4, 5, 6, 7, 8}, statuses: map[string]*sdk.Message{},
		base: time.Now().UTC().Truncate(time.Second).Add(-time.Hour)}
	var topics sdk.Topics
	rt, _ := topics.Receipts(cl.Name)
	tc := transportConfig(b.Addr, cl)
	tc.Subscriptions = []transport.Subscription{{Topic: rt, QoS: 1}, {Topic: topics.DispatchStatusFilter(), QoS: 1}}
	tc.OnPublish = func(ctx context.Context, m transport.Message) error {
		msg, err := v.Verify(ctx, m.Topic, m.Payload)
		tr.mu.Lock()
		defer tr.mu.Unlock()
		switch {
		case err != nil && !errors.Is(err, sdk.ReasonDuplicate):
			tr.rejected = append(tr.rejected, err)
		case msg.Receipt != nil:
			tr.receipts = append(tr.receipts, msg)
		case msg.Status != nil && err == nil:
			tr.statuses[msg.Topic.Dispatch] = msg
		}
		return nil
	}
	if tr.conn, err = transport.New(tc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr.cancel = cancel
	tr.wg.Add(1)
	go func() { defer tr.wg.Done(); _ = tr.conn.Run(ctx) }()
	t.Cleanup(func() { cancel(); tr.wg.Wait() })
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := tr.conn.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	return tr
}

func (tr *truck) publish(kind sdk.Kind, payload []byte) {
	tr.t.Helper()
	topic, _ := sdk.Topics{}.Build(sdk.Topic{Truck: "truck-1", Kind: kind})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.conn.Publish(ctx, topic, payload, transport.PublishOptions{QoS: 1}); err != nil {
		tr.t.Fatal(err)
	}
}

// fixes publishes one telemetry batch of record seqs a..b.
func (tr *truck) fixes(a, b uint64) {
	tr.t.Helper()
	tel := &sdk.Telemetry{Epoch: tr.epoch}
	for q := a; q <= b; q++ {
		tel.Fixes = append(tel.Fixes, sdk.TelemetryFix{Seq: q, Fix: sdk.Fix{Time: tr.base.Add(time.Duration(q) * time.Second),
			Lat: 52.5 + float64(q)*1e-4, Lon: 13.4, Mode: 3}})
	}
	p, err := tr.signer.SignTelemetry(tel)
	if err != nil {
		tr.t.Fatal(err)
	}
	tr.publish(sdk.KindTelemetry, p)
}

// event publishes a delivered event with record seq q.
func (tr *truck) event(q uint64) {
	tr.t.Helper()
	p, err := tr.signer.SignEvent(&sdk.Event{Kind: sdk.EventDelivered, Epoch: tr.epoch, RecordSeq: q,
		Time: tr.base.Add(time.Duration(q) * time.Second), OrderID: "o-1", Revision: 1, Via: sdk.ViaButton})
	if err != nil {
		tr.t.Fatal(err)
	}
	tr.publish(sdk.KindEvents, p)
}

// receipted returns how many receipts named each record seq of the truck's epoch.
func (tr *truck) receipted() map[uint64]int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := map[uint64]int{}
	for _, m := range tr.receipts {
		for _, e := range m.Receipt.Epochs {
			if e.Epoch != tr.epoch {
				tr.t.Errorf("receipt for epoch %x", e.Epoch)
				continue
			}
			for _, r := range e.Ranges {
				for q := r.First; q <= r.Last; q++ {
					out[q]++
				}
			}
		}
	}
	return out
}

func (tr *truck) nReceipts() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.receipts)
}

// covers reports whether every seq in a..b was receipted at least n times.
func covers(m map[uint64]int, a, b uint64, n int) bool {
	for q := a; q <= b; q++ {
		if m[q] < n {
			return false
		}
	}
	return true
}

func archivePath(t *testing.T) string { return filepath.Join(t.TempDir(), "dispatch", archive.File) }
