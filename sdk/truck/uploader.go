package truck

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/store"
)

// Link is what the uploader needs of the connection; *transport.Conn implements it.
type Link interface {
	Submit(ctx context.Context, topic string, payload []byte, o transport.PublishOptions) (*transport.Pending, error)
	Wait(ctx context.Context) error
	Current() transport.State
}

var _ Link = (*transport.Conn)(nil)

// UploaderConfig configures an Uploader. Zero values are documented per field.
type UploaderConfig struct {
	Store  *store.Store // required: the truck's durable queue
	Link   Link         // required: the connection
	Signer Signer       // required: the truck's identity; the topics name Signer.Identity().Name
	Topics sdk.Topics   // zero: prefix "fleet"

	// BatchFixes is the most fixes per telemetry message. Zero means 60 (a minute at 1 Hz: about 10 bytes a
	// fix on the wire, against about 250 for one fix per message).
	BatchFixes int
	// BacklogBatchFixes is the batch size while a backlog drains (more than 4 x BatchFixes fixes queued):
	// bigger batches need fewer round trips through a small in-flight window. Zero means 240.
	BacklogBatchFixes int
	// MaxInFlight is the most messages waiting for their PUBACK at once. Zero means the broker's receive
	// maximum, at most 128: through a 100 ms round trip throughput is about MaxInFlight x batch / 0.1 s
	// fixes per second, and receivers remember the ids of the last 128 messages per sender
	// (sdk.DefaultReplayIDs), so a re-sent duplicate further back than that is refused as a replay rather
	// than recognised as a duplicate.
	MaxInFlight int
	// PublishTimeout bounds the wait for one PUBACK; the records are then released and sent again. Zero
	// means 2 minutes.
	PublishTimeout time.Duration
	// RetryDelay is the pause after a failed publish before taking records again. Zero means 2 s.
	RetryDelay time.Duration
	// AckOnPuback removes records from the store at the broker's PUBACK, as before receipts existed. Only
	// for a back-end that sends no receipts: the PUBACK is one hop, and a record the broker loses after it
	// (queue limits for a slow dispatch, a SIGKILL, a foreign member of dispatch's share group) is gone.
	// Zero (false): a record stays in the store until a signed receipt from dispatch names it.
	AckOnPuback bool
	// ReceiptTimeout is how long a sent record waits for its receipt before it is sent again. The wait
	// doubles after each timeout that no receipt interrupted (dispatch is probably down), up to
	// ReceiptTimeoutMax; any receipt resets it, and a dispatch status turning online sends at once. It must
	// be longer than dispatch's receipt delay (dispatch.DefaultReceiptDelay, 30 s: dispatch gathers a
	// truck's records into one receipt to spare the cellular link) plus a few round trips. Zero: 5 minutes
	// and 30 minutes.
	ReceiptTimeout, ReceiptTimeoutMax time.Duration
	// MaxUnreceipted bounds the records sent and waiting for their receipt. At the bound the uploader sends
	// nothing new until receipts arrive or a timeout sends the oldest again: it bounds the uploader's memory
	// (about 50 bytes a record) and what the broker must queue for an absent dispatch. After a timeout the
	// bound narrows to twice what dispatch receipted in the last round (at least 200) and widens again with
	// every receipt, so re-sends go out as fast as dispatch takes them, not in a burst that a broker's
	// queue limit would drop again. Zero: 20,000.
	MaxUnreceipted int
	// Logger; nil discards.
	Logger *slog.Logger
	// Clock is the time the upload latency is measured with; it must be the clock that stamped the records
	// (the agent's GPS-corrected clock), or a unit without an RTC measures from 1970. Nil: time.Now.
	Clock func() time.Time
}

// Defaults for UploaderConfig's receipt timeouts.
const (
	DefaultReceiptTimeout    = 5 * time.Minute
	DefaultReceiptTimeoutMax = 30 * time.Minute
)

// Uploader drains a store to the broker. Create it with NewUploader and run it with Run.
type Uploader struct {
	cfg   UploaderConfig
	truck string
	telem string // telemetry topic
	event string // events topic

	stats         uploaderStats
	pubackLatency latencyHistogram // record time -> the PUBACK of the message that carried it
	certSent      atomic.Bool      // a telemetry message with the certificate went out on this connection

	// Records sent and waiting for a receipt. A record joins when its message is submitted (a receipt may
	// overtake the PUBACK) and leaves when a receipt names it, its publish fails, or it times out.
	rmu      sync.Mutex
	awaiting map[uint64]*sentMsg // record seq -> the message that carried it; guarded by rmu
	sentFIFO []*sentMsg          // messages in send order, oldest first; guarded by rmu
	timeout  time.Duration       // the current receipt timeout (backs off while no receipt comes); guarded by rmu
	// window bounds the records waiting for a receipt (at most MaxUnreceipted): narrowed after a timeout
	// to twice what was receipted in the last round, widened by each receipt. receiptedRound counts the
	// records receipted since the last timeout. Guarded by rmu.
	window, receiptedRound int
	room                   chan struct{} // signalled (non-blocking) when records leave awaiting
}

// sentMsg is one message's records waiting for their receipt.
type sentMsg struct {
	epoch    sdk.Epoch
	at       time.Time // when it was submitted
	left     int       // its records still waiting
	pubacked bool
}

type uploaderStats struct {
	messages, fixes, events, failures, quarantined, live atomic.Uint64
	receipts, receipted, resent, foreign                 atomic.Uint64
}

// UploaderStats counts what the uploader did since it started.
type UploaderStats struct {
	Messages    uint64 // messages acknowledged by the broker
	Fixes       uint64 // fixes in them
	Events      uint64 // delivery events in them
	Failures    uint64 // publishes that failed (their records were released and sent again)
	Quarantined uint64 // records that could not be encoded and were quarantined
	LiveFirst   uint64 // newest fixes sent ahead of the backlog after a (re)connect
	Receipts    uint64 // receipts from dispatch applied
	Receipted   uint64 // records removed from the store because a receipt named them
	Resent      uint64 // records sent again because no receipt came in time
	Unreceipted int    // records sent and waiting for their receipt now
}

// NewUploader checks cfg and applies defaults. It does not touch the network.
func NewUploader(cfg UploaderConfig) (*Uploader, error) {
	if cfg.Store == nil || cfg.Link == nil || cfg.Signer == nil {
		return nil, errors.New("truck: uploader needs a Store, a Link and a Signer")
	}
	if cfg.BatchFixes <= 0 {
		cfg.BatchFixes = 60
	}
	cfg.BatchFixes = min(cfg.BatchFixes, sdk.MaxTelemetryFixes)
	if cfg.BacklogBatchFixes <= 0 {
		cfg.BacklogBatchFixes = 240
	}
	cfg.BacklogBatchFixes = min(max(cfg.BacklogBatchFixes, cfg.BatchFixes), sdk.MaxTelemetryFixes)
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 2 * time.Minute
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.ReceiptTimeout <= 0 {
		cfg.ReceiptTimeout = DefaultReceiptTimeout
	}
	if cfg.ReceiptTimeoutMax <= 0 {
		cfg.ReceiptTimeoutMax = DefaultReceiptTimeoutMax
	}
	cfg.ReceiptTimeoutMax = max(cfg.ReceiptTimeoutMax, cfg.ReceiptTimeout)
	if cfg.MaxUnreceipted <= 0 {
		cfg.MaxUnreceipted = 20_000
	}
	u := &Uploader{cfg: cfg, truck: cfg.Signer.Identity().Name, awaiting: map[uint64]*sentMsg{},
		timeout: cfg.ReceiptTimeout, window: cfg.MaxUnreceipted, room: make(chan struct{}, 1)}
	var err error
	if u.telem, err = cfg.Topics.Telemetry(u.truck); err != nil {
		return nil, err
	}
	if u.event, err = cfg.Topics.Events(u.truck); err != nil {
		return nil, err
	}
	return u, nil
}

// Stats returns the counters.
func (u *Uploader) Stats() UploaderStats {
	u.rmu.Lock()
	n := len(u.awaiting)
	u.rmu.Unlock()
	return UploaderStats{u.stats.messages.Load(), u.stats.fixes.Load(), u.stats.events.Load(),
		u.stats.failures.Load(), u.stats.quarantined.Load(), u.stats.live.Load(), u.stats.receipts.Load(),
		u.stats.receipted.Load(), u.stats.resent.Load(), n}
}

// LatencyBuckets are the upper bounds, in seconds, of the upload latency histogram: from a fix that went
// straight through (the agent batches fixes for a few seconds, the uploader up to a minute of them) to a
// record that waited out a night in a dead zone.
var LatencyBuckets = [...]float64{0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600, 4 * 3600, 24 * 3600}

// Histogram is a snapshot of a latency histogram in seconds. Counts[i] counts observations of at most
// Bounds[i] and more than Bounds[i-1] (not cumulative); Counts[len(Bounds)] those above every bound.
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Sum    float64
	Count  uint64
}

// latencyHistogram counts latencies into LatencyBuckets. Safe for concurrent use.
type latencyHistogram struct {
	mu     sync.Mutex
	counts [len(LatencyBuckets) + 1]uint64 // guarded by mu
	sum    float64                         // guarded by mu
	n      uint64                          // guarded by mu
}

// observe adds the latency of each record from its time to now. A record dated after now (a clock that
// jumped back) is not counted: it would be a negative latency.
func (h *latencyHistogram) observe(now time.Time, times []time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range times {
		d := now.Sub(t).Seconds()
		if d < 0 || t.IsZero() {
			continue
		}
		i := 0
		for i < len(LatencyBuckets) && d > LatencyBuckets[i] {
			i++
		}
		h.counts[i]++
		h.sum += d
		h.n++
	}
}

func (h *latencyHistogram) snapshot() Histogram {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Histogram{Bounds: LatencyBuckets[:], Counts: append([]uint64(nil), h.counts[:]...), Sum: h.sum, Count: h.n}
}

// PubackLatency is the histogram of the time from each record's own time (a fix's GPS time, an event's
// time: within the agent's batching delay of its append to the store) to the broker's PUBACK of the message
// that carried it. Records sent again count again.
func (u *Uploader) PubackLatency() Histogram { return u.pubackLatency.snapshot() }

// message is one publish and the records it carries.
type message struct {
	topic   string
	payload []byte
	epoch   sdk.Epoch // the records' origin epoch: one per message
	seqs    []uint64
	times   []time.Time // the records' own times, for the latency histogram
	fixes   int
	events  int
	sent    *sentMsg // while its records wait for a receipt
}

// Run drains the store until ctx ends. It submits messages one at a time in store order (so they reach
// the broker in that order) and settles each when its PUBACK arrives, with up to MaxInFlight waiting at
// once. It returns only after every publish it started has finished.
func (u *Uploader) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	if !u.cfg.AckOnPuback {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u.resendLoop(ctx)
		}()
	}
	win := &window{freed: make(chan struct{}, 1)}
	failed := make(chan struct{}, 1)
	var connectedSince time.Time
	for {
		if err := u.cfg.Link.Wait(ctx); err != nil {
			return ctxErr(ctx, err)
		}
		st := u.cfg.Link.Current()
		limit := u.inFlight(st)
		var msgs []message
		if st.Connected && !st.Since.Equal(connectedSince) {
			connectedSince = st.Since
			// The first telemetry on each connection carries the certificate, so a consumer that has not
			// seen this truck yet can verify it (later batches carry only the key id).
			u.certSent.Store(false)
			rec, err := u.cfg.Store.PeekNewest(ctx, store.Normal)
			if err != nil {
				return ctxErr(ctx, err)
			}
			if rec != nil {
				// Live position first: the newest fix alone, ahead of the backlog.
				msgs = u.compose(ctx, []store.Record{*rec}, u.cfg.BatchFixes)
				u.stats.live.Add(uint64(len(msgs)))
			}
		}
		if len(msgs) == 0 {
			if err := u.cfg.Store.Wait(ctx); err != nil {
				return ctxErr(ctx, err)
			}
			if err := win.wait(ctx, limit); err != nil { // the window is full: wait for a PUBACK
				return err
			}
			room, err := u.waitRoom(ctx) // too many records wait for a receipt: wait for receipts or a timeout
			if err != nil {
				return err
			}
			batch := u.cfg.BatchFixes
			if qs := u.cfg.Store.Stats(); qs.Normal.Records-int64(qs.Normal.InFlight) > int64(4*u.cfg.BatchFixes) {
				batch = u.cfg.BacklogBatchFixes
			}
			recs, err := u.cfg.Store.Peek(ctx, min(max(limit-win.used(), 1)*batch, room))
			if err != nil {
				return ctxErr(ctx, err)
			}
			if len(recs) == 0 {
				// Wait said records are available but none could be handed out (all being quarantined):
				// do not spin.
				if err := sleep(ctx, 100*time.Millisecond); err != nil {
					return err
				}
				continue
			}
			msgs = u.compose(ctx, recs, batch)
		}
		for i, m := range msgs {
			if err := u.submit(ctx, m, win, limit, &wg, failed); err != nil {
				for _, rest := range msgs[i:] {
					u.cfg.Store.Release(rest.seqs...)
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				break // the link went down: release the rest and start over
			}
		}
		select {
		case <-failed:
			// Something failed: pause before taking records again (the link is probably down).
			if err := sleep(ctx, u.cfg.RetryDelay); err != nil {
				return err
			}
		default:
		}
	}
}

// inFlight is the current in-flight limit: MaxInFlight, or the broker's receive maximum capped at 128.
func (u *Uploader) inFlight(st transport.State) int {
	if u.cfg.MaxInFlight > 0 {
		return u.cfg.MaxInFlight
	}
	if rm := int(st.Info.ReceiveMaximum); rm > 0 {
		return min(rm, 128)
	}
	return 20 // Mosquitto's default window
}

// window counts the messages waiting for their PUBACK.
type window struct {
	n     atomic.Int64
	freed chan struct{} // signalled (non-blocking) whenever a message settles
}

func (w *window) used() int { return int(w.n.Load()) }

// wait blocks until fewer than limit messages are in flight.
func (w *window) wait(ctx context.Context, limit int) error {
	for w.used() >= limit {
		select {
		case <-w.freed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (w *window) take() { w.n.Add(1) }

func (w *window) put() {
	w.n.Add(-1)
	select {
	case w.freed <- struct{}{}:
	default:
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// submit puts one message on the wire (in order) and settles it in a goroutine when its PUBACK arrives.
func (u *Uploader) submit(ctx context.Context, m message, win *window, limit int, wg *sync.WaitGroup, failed chan<- struct{}) error {
	if err := win.wait(ctx, limit); err != nil {
		return err
	}
	win.take()
	u.await(&m)
	pctx, cancel := context.WithTimeout(ctx, u.cfg.PublishTimeout)
	p, err := u.cfg.Link.Submit(pctx, m.topic, m.payload, transport.PublishOptions{QoS: 1})
	if err != nil {
		cancel()
		win.put()
		u.settle(ctx, m, err, failed)
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer win.put()
		defer cancel()
		u.settle(ctx, m, p.Wait(pctx), failed)
	}()
	return nil
}

// compose turns records into signed messages: one per delivery event, telemetry batches of up to
// BatchFixes fixes. A record that cannot be decoded or signed is quarantined with the reason.
func (u *Uploader) compose(ctx context.Context, recs []store.Record, batchFixes int) []message {
	var out []message
	var batch sdk.Telemetry
	var batchSeqs []uint64
	var batchTimes []time.Time
	flush := func() {
		if len(batch.Fixes) == 0 {
			return
		}
		payload, err := u.signTelemetry(&batch)
		if err != nil {
			for _, s := range batchSeqs {
				u.quarantine(ctx, s, fmt.Sprintf("sign telemetry: %v", err))
			}
		} else {
			out = append(out, message{topic: u.telem, payload: payload, epoch: batch.Epoch, seqs: batchSeqs,
				times: batchTimes, fixes: len(batch.Fixes)})
		}
		batch, batchSeqs, batchTimes = sdk.Telemetry{}, nil, nil
	}
	for _, r := range recs {
		epoch := sdk.EpochOf(recordEpoch(u.cfg.Store, r))
		switch r.Kind {
		case KindFix:
			f, odometer, err := DecodeFixOdometer(r.Data)
			if err != nil {
				u.quarantine(ctx, r.Seq, fmt.Sprintf("decode fix: %v", err))
				continue
			}
			if len(batch.Fixes) > 0 && batch.Epoch != epoch {
				flush() // records salvaged from an earlier store keep their epoch: one epoch per batch
			}
			batch.Epoch = epoch
			if odometer != 0 {
				batch.Odometer = odometer // records are in order: the batch keeps its newest fix's reading
			}
			batch.Fixes = append(batch.Fixes, sdk.TelemetryFix{Seq: r.Seq, Fix: f})
			batchSeqs = append(batchSeqs, r.Seq)
			batchTimes = append(batchTimes, r.Time)
			if len(batch.Fixes) == batchFixes {
				flush()
			}
		case KindEvent:
			e, err := DecodeEvent(r.Data, recordEpoch(u.cfg.Store, r), r.Seq)
			if err != nil {
				u.quarantine(ctx, r.Seq, fmt.Sprintf("decode event: %v", err))
				continue
			}
			payload, err := u.cfg.Signer.SignEvent(e)
			if err != nil {
				u.quarantine(ctx, r.Seq, fmt.Sprintf("sign event: %v", err))
				continue
			}
			out = append(out, message{topic: u.event, payload: payload, epoch: epoch, seqs: []uint64{r.Seq},
				times: []time.Time{r.Time}, events: 1})
		default:
			u.quarantine(ctx, r.Seq, fmt.Sprintf("unknown record kind %d", r.Kind))
		}
	}
	flush()
	return out
}

// signTelemetry signs a batch, with the certificate if none went out on this connection yet.
func (u *Uploader) signTelemetry(t *sdk.Telemetry) ([]byte, error) {
	if u.certSent.Load() {
		return u.cfg.Signer.SignTelemetry(t)
	}
	body, err := t.MarshalBody()
	if err != nil {
		return nil, err
	}
	var id sdk.MsgID
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	payload, err := u.cfg.Signer.Sign(sdk.MsgTelemetry, id, body, true)
	if err == nil {
		u.certSent.Store(true)
	}
	return payload, err
}

func (u *Uploader) quarantine(ctx context.Context, seq uint64, reason string) {
	u.stats.quarantined.Add(1)
	u.cfg.Logger.Error("truck: record cannot be sent; quarantined", "seq", seq, "reason", reason)
	if err := u.cfg.Store.Quarantine(ctx, seq, reason); err != nil {
		u.cfg.Logger.Error("truck: quarantine failed", "seq", seq, "err", err)
	}
}

// settle handles a message's PUBACK (its records now wait for their receipt, or with AckOnPuback are
// acked) or its failure (its records are released, to be sent again).
func (u *Uploader) settle(ctx context.Context, m message, err error, failed chan<- struct{}) {
	if err == nil {
		u.pubackLatency.observe(u.cfg.Clock(), m.times)
	}
	if err == nil && !u.cfg.AckOnPuback {
		u.rmu.Lock()
		if m.sent != nil {
			m.sent.pubacked = true
		}
		u.rmu.Unlock()
		u.stats.messages.Add(1)
		u.stats.fixes.Add(uint64(m.fixes))
		u.stats.events.Add(uint64(m.events))
		return
	}
	if err != nil {
		// Only the records no receipt has removed meanwhile go back to the queue.
		m.seqs = u.unawait(m)
	}
	if err == nil {
		// The ack outlives a cancelled ctx: the broker has the message, and a lost ack only means a duplicate.
		actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = u.cfg.Store.Ack(actx, m.seqs...)
		acancel()
		if err != nil {
			u.cfg.Logger.Warn("truck: ack in the store failed; the records will be sent again", "err", err)
			u.cfg.Store.Release(m.seqs...)
			return
		}
		u.stats.messages.Add(1)
		u.stats.fixes.Add(uint64(m.fixes))
		u.stats.events.Add(uint64(m.events))
		return
	}
	u.cfg.Store.Release(m.seqs...)
	if ctx.Err() != nil {
		return
	}
	u.stats.failures.Add(1)
	var pe *transport.PublishError
	if errors.As(err, &pe) {
		u.cfg.Logger.Error("truck: broker refused a message; it stays queued", "topic", m.topic,
			"reason_code", pe.ReasonCode, "err", err)
	} else {
		u.cfg.Logger.Warn("truck: publish failed; records released", "topic", m.topic, "records", len(m.seqs), "err", err)
	}
	select {
	case failed <- struct{}{}:
	default:
	}
}
