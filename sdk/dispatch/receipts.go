package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// DefaultReceiptDelay is how long committed records wait to be receipted together (Config.ReceiptDelay). A
// truck keeps a record until its receipt comes, which costs it nothing but a little memory, while a receipt
// costs about 230 bytes on its cellular link: a truck at 1 Hz sends a telemetry message every 30 s, so
// gathering 30 s of them halves the receipts of one per message. A backlog is receipted sooner
// (receiptFlushRecords). The truck's receipt timeout (truck.DefaultReceiptTimeout, 5 min) must stay well
// above this.
const DefaultReceiptDelay = 30 * time.Second

// receiptFlushRecords is the number of pending records of one truck that sends its receipt at once: a
// draining backlog is receipted every thousand records, so the truck's bounded set of unreceipted records
// (truck.UploaderConfig.MaxUnreceipted, 20,000) never throttles it.
const receiptFlushRecords = 1000

// receiptFlushRanges is the number of pending ranges of one truck that sends its receipt at once, before the
// delay: it keeps memory bounded and one message well inside sdk.MaxReceiptRanges.
const receiptFlushRanges = sdk.MaxReceiptRanges / 2

// receiptTimeout bounds one round of receipt publishes.
const receiptTimeout = 30 * time.Second

// receipter gathers committed records per truck and epoch and sends them as signed receipts, coalesced,
// from its own goroutine (never paho's delivery goroutine).
type receipter struct {
	signer *sdk.Signer
	topics sdk.Topics
	conn   *transport.Conn
	delay  time.Duration
	log    *slog.Logger
	wake   chan struct{} // buffered 1

	mu       sync.Mutex
	pending  map[string]*truckReceipts // guarded by mu
	certSent map[string]bool           // trucks that got our certificate in a receipt; guarded by mu
	sent     uint64                    // receipts published; guarded by mu
}

type truckReceipts struct {
	epochs  map[sdk.Epoch][]sdk.SeqRange
	records int       // records held
	n       int       // ranges held (before normalizing)
	since   time.Time // oldest pending record
}

func newReceipter(signer *sdk.Signer, topics sdk.Topics, conn *transport.Conn, delay time.Duration, log *slog.Logger) *receipter {
	if delay <= 0 {
		delay = DefaultReceiptDelay
	}
	return &receipter{signer: signer, topics: topics, conn: conn, delay: delay, log: log,
		wake: make(chan struct{}, 1), pending: map[string]*truckReceipts{}, certSent: map[string]bool{}}
}

// add notes committed records. It is called on paho's delivery goroutine and never blocks.
func (r *receipter) add(truck string, epoch sdk.Epoch, seqs []uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tr := r.pendingFor(truck)
	rs := tr.epochs[epoch]
	for _, s := range seqs {
		if n := len(rs); n > 0 && rs[n-1].Last+1 == s {
			rs[n-1].Last = s // the common case: a batch of consecutive fixes
			continue
		}
		rs = append(rs, sdk.SeqRange{First: s, Last: s})
		tr.n++
	}
	tr.epochs[epoch] = rs
	tr.records += len(seqs)
	if tr.n > receiptFlushRanges {
		tr.n = 0
		for e, x := range tr.epochs {
			tr.epochs[e] = sdk.NormalizeRanges(x)
			tr.n += len(tr.epochs[e])
		}
	}
	if tr.n > receiptFlushRanges || len(tr.epochs) > sdk.MaxReceiptEpochs || tr.records >= receiptFlushRecords {
		tr.since = time.Time{} // due now
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// pendingFor returns truck's pending records, made empty if there were none. r.mu must be held.
func (r *receipter) pendingFor(truck string) *truckReceipts {
	tr := r.pending[truck]
	if tr == nil {
		tr = &truckReceipts{epochs: map[sdk.Epoch][]sdk.SeqRange{}, since: time.Now()}
		r.pending[truck] = tr
	}
	return tr
}

// online forgets that truck has our certificate: it came online and may have restarted without it.
func (r *receipter) online(truck string) {
	r.mu.Lock()
	delete(r.certSent, truck)
	r.mu.Unlock()
}

// Sent is the number of receipts published.
func (r *receipter) Sent() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent
}

// run flushes due receipts until ctx ends, then once more (bounded) for what is still pending.
func (r *receipter) run(ctx context.Context) error {
	tick := time.NewTicker(r.delay / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			r.flush(fctx, true)
			cancel()
			return nil
		case <-tick.C:
		case <-r.wake:
		}
		if r.conn.Connected() {
			r.flush(ctx, false)
		}
	}
}

// take removes the due trucks' pending records.
func (r *receipter) take(all bool) map[string]*truckReceipts {
	r.mu.Lock()
	defer r.mu.Unlock()
	due := map[string]*truckReceipts{}
	now := time.Now()
	for truck, tr := range r.pending {
		if all || now.Sub(tr.since) >= r.delay {
			due[truck] = tr
			delete(r.pending, truck)
		}
	}
	return due
}

// putBack returns records whose receipt was not sent, to be tried again.
func (r *receipter) putBack(truck string, epochs []sdk.ReceiptEpoch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tr := r.pendingFor(truck)
	for _, e := range epochs {
		tr.epochs[e.Epoch] = sdk.NormalizeRanges(append(tr.epochs[e.Epoch], e.Ranges...))
		tr.n += len(e.Ranges)
		tr.records += int(min(e.Count(), receiptFlushRecords))
	}
}

type receiptMsg struct {
	truck  string
	rc     *sdk.Receipt
	cert   bool
	p      *transport.Pending
	failed bool
	err    error
}

// flush signs and publishes the due receipts: all submitted first, then their PUBACKs awaited, so many
// trucks cost one round trip rather than one each.
func (r *receipter) flush(ctx context.Context, all bool) {
	due := r.take(all)
	if len(due) == 0 {
		return
	}
	var msgs []*receiptMsg
	for truck, tr := range due {
		for _, rc := range split(truck, tr) {
			msgs = append(msgs, &receiptMsg{truck: truck, rc: rc})
		}
	}
	pctx, cancel := context.WithTimeout(ctx, receiptTimeout)
	defer cancel()
	for _, m := range msgs {
		topic, err := r.topics.Receipts(m.truck)
		if err != nil {
			r.log.Error("dispatch: receipt topic", "truck", m.truck, "err", err)
			continue // a name the verifier accepted is valid: cannot happen
		}
		r.mu.Lock()
		m.cert = !r.certSent[m.truck]
		r.mu.Unlock()
		payload, err := r.signer.SignReceipt(m.rc, m.cert)
		if err == nil {
			m.p, err = r.conn.Submit(pctx, topic, payload, transport.PublishOptions{QoS: 1})
		}
		if err != nil {
			r.log.Warn("dispatch: receipt not sent", "truck", m.truck, "err", err)
			m.failed, m.err = true, err
		}
	}
	for _, m := range msgs {
		if !m.failed && m.p != nil {
			if err := m.p.Wait(pctx); err != nil {
				r.log.Warn("dispatch: receipt not acknowledged", "truck", m.truck, "err", err)
				m.failed, m.err = true, err
			}
		}
		if m.failed {
			// A lost receipt only costs a re-send by the truck, but keeping it saves that on a short outage. One
			// the broker refused (ACL) would be refused again: dropped.
			if !errors.As(m.err, new(*transport.PublishError)) {
				r.putBack(m.truck, m.rc.Epochs)
			}
			continue
		}
		r.mu.Lock()
		r.sent++
		if m.cert {
			r.certSent[m.truck] = true
		}
		r.mu.Unlock()
	}
}

// split turns a truck's pending records into receipts within sdk.MaxReceiptRanges and sdk.MaxReceiptEpochs.
func split(truck string, tr *truckReceipts) []*sdk.Receipt {
	var out []*sdk.Receipt
	cur := &sdk.Receipt{Truck: truck}
	n := 0
	for epoch, rs := range tr.epochs {
		rs = sdk.NormalizeRanges(rs)
		for len(rs) > 0 {
			if n == sdk.MaxReceiptRanges || len(cur.Epochs) == sdk.MaxReceiptEpochs {
				out = append(out, cur)
				cur, n = &sdk.Receipt{Truck: truck}, 0
			}
			k := min(len(rs), sdk.MaxReceiptRanges-n)
			cur.Epochs = append(cur.Epochs, sdk.ReceiptEpoch{Epoch: epoch, Ranges: rs[:k:k]})
			n += k
			rs = rs[k:]
		}
	}
	if len(cur.Epochs) > 0 {
		out = append(out, cur)
	}
	return out
}
