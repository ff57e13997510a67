package truck

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// testReceipter is the test office's receipt sender: the consumer names every record it has (new or
// duplicate), and the receipter signs and publishes receipts for them every few milliseconds. It is the
// dispatch side of the end-to-end promise in the uploader tests, which use no dispatch.Client.
type testReceipter struct {
	signer *sdk.Signer
	link   *transport.Conn

	mu      sync.Mutex
	pending map[string]map[sdk.Epoch][]sdk.SeqRange // guarded by mu
	off     bool                                    // guarded by mu: dispatch "down": receipts are withheld
	sent    int                                     // guarded by mu
	certTo  map[string]bool                         // trucks sent the certificate (run's goroutine only)
}

func newTestReceipter(t testing.TB, office sdktest.Client) *testReceipter {
	t.Helper()
	return &testReceipter{signer: office.Signer(t), pending: map[string]map[sdk.Epoch][]sdk.SeqRange{}}
}

func (r *testReceipter) add(truck string, epoch sdk.Epoch, seqs ...uint64) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.off {
		return
	}
	if r.pending[truck] == nil {
		r.pending[truck] = map[sdk.Epoch][]sdk.SeqRange{}
	}
	for _, s := range seqs {
		r.pending[truck][epoch] = append(r.pending[truck][epoch], sdk.SeqRange{First: s, Last: s})
	}
}

// setOff withholds receipts (and forgets pending ones) while on: dispatch committed nothing.
func (r *testReceipter) setOff(off bool) {
	r.mu.Lock()
	r.off = off
	clear(r.pending) // named while off, or just before: withheld either way
	r.mu.Unlock()
}

// run publishes pending receipts on link until ctx ends.
func (r *testReceipter) run(ctx context.Context, link *transport.Conn) {
	for sleep(ctx, 20*time.Millisecond) == nil {
		r.mu.Lock()
		pending := r.pending
		r.pending = map[string]map[sdk.Epoch][]sdk.SeqRange{}
		r.mu.Unlock()
		for truck, epochs := range pending {
			rc := sdk.Receipt{Truck: truck}
			for e, rs := range epochs {
				rc.Epochs = append(rc.Epochs, sdk.ReceiptEpoch{Epoch: e, Ranges: sdk.NormalizeRanges(rs)})
			}
			for len(rc.Epochs) > 0 { // keep each receipt within its limits
				one := sdk.Receipt{Truck: truck, Epochs: rc.Epochs[:1]}
				if n := len(one.Epochs[0].Ranges); n > sdk.MaxReceiptRanges {
					one.Epochs = []sdk.ReceiptEpoch{{Epoch: one.Epochs[0].Epoch, Ranges: one.Epochs[0].Ranges[:sdk.MaxReceiptRanges]}}
					rc.Epochs[0].Ranges = rc.Epochs[0].Ranges[sdk.MaxReceiptRanges:]
				} else {
					rc.Epochs = rc.Epochs[1:]
				}
				if r.certTo == nil {
					r.certTo = map[string]bool{}
				}
				// As dispatch does: the certificate in the first receipt to each truck, then the key id only.
				payload, err := r.signer.SignReceipt(&one, !r.certTo[truck])
				r.certTo[truck] = true
				if err != nil {
					panic(err)
				}
				topic, _ := sdk.Topics{}.Receipts(truck)
				if err := link.Publish(ctx, topic, payload, transport.PublishOptions{QoS: 1}); err == nil {
					r.mu.Lock()
					r.sent++
					r.mu.Unlock()
				}
			}
		}
	}
}

// receiptsFor returns the transport settings a bare truck link needs to receive its receipts and hand them
// to the uploader in up (stored once it exists): what truck.Client does for the agent.
func receiptsFor(t testing.TB, cl sdktest.Client, up *atomic.Pointer[Uploader]) transport.Config {
	t.Helper()
	v := cl.Verifier(t, sdk.VerifierConfig{})
	topic, err := sdk.Topics{}.Receipts(cl.Name)
	if err != nil {
		t.Fatal(err)
	}
	return transport.Config{
		Subscriptions: []transport.Subscription{{Topic: topic, QoS: 1}},
		OnPublish: func(ctx context.Context, m transport.Message) error {
			msg, err := v.Verify(ctx, m.Topic, m.Payload)
			u := up.Load()
			if errors.Is(err, sdk.ReasonDuplicate) || err != nil || msg.Receipt == nil || u == nil {
				return nil
			}
			_, err = u.HandleReceipt(ctx, msg.Receipt)
			return err
		},
	}
}

// sendReceipts makes cons receipt what it has, through office's link, until ctx ends (wg waits for it).
func sendReceipts(t testing.TB, ctx context.Context, wg *sync.WaitGroup, cons *consumer, office *transport.Conn, officeCl sdktest.Client) *testReceipter {
	t.Helper()
	rc := newTestReceipter(t, officeCl)
	cons.mu.Lock()
	cons.rc = rc
	cons.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		rc.run(ctx, office)
	}()
	return rc
}

// merge adds receipt handling (receiptsFor) to a link configuration.
func merge(cfg, receipts transport.Config) transport.Config {
	cfg.Subscriptions = append(cfg.Subscriptions, receipts.Subscriptions...)
	cfg.OnPublish = receipts.OnPublish
	return cfg
}
