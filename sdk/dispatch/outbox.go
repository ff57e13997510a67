package dispatch

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/store"
)

// Defaults for OutboxConfig's zero values. See doc.go for why.
const (
	DefaultBackoffMin     = 30 * time.Second
	DefaultBackoffMax     = 30 * time.Minute
	DefaultOnlineGrace    = 15 * time.Second
	DefaultPoll           = time.Second
	DefaultRetryDelay     = 5 * time.Second
	DefaultMaxInFlight    = 64
	DefaultMaxBatch       = 500
	DefaultPublishTimeout = 30 * time.Second
)

// Store buckets of the outbox.
const (
	ordersBucket = "dispatch-orders" // key "<truck>/<order id>", value entryWire JSON
	metaBucket   = "dispatch-meta"
)

var keySeq = []byte("order-seq") // the highest envelope sequence number reserved for orders

// Errors of the outbox.
var (
	ErrExists    = errors.New("dispatch: an order with this id exists with other content (revise it instead)")
	ErrNotFound  = errors.New("dispatch: no such order in the outbox")
	ErrCancelled = errors.New("dispatch: the order is cancelled")
	// ErrClosed is returned by Cancel for an order the driver already delivered or failed (as far as the
	// outbox knows from the truck's events): the truck would refuse the cancellation, so none is stored.
	ErrClosed = errors.New("dispatch: the order is already closed by the driver")
)

// OutboxConfig configures an Outbox. Either Store or Path is required, and Certificate and Key.
type OutboxConfig struct {
	// Store is an open store the outbox keeps using: one process owns the outbox. Zero: use Path.
	Store *store.Store
	// Path is the outbox's store file, opened for each operation and closed right after, so that several
	// processes on one host (waybill watch and waybill order) can share it; each waits at most
	// StoreOptions.LockTimeout for the others. Used only when Store is nil.
	Path string
	// StoreOptions are used to open Path. Zero values take the store's defaults.
	StoreOptions store.Options

	// Certificate and Key are the dispatch identity that signs orders. Orders are signed when they are
	// sent, with envelope sequence numbers kept in the outbox's store (see doc.go).
	Certificate *x509.Certificate
	Key         crypto.Signer

	// Topics gives the topic prefix. Zero: sdk.DefaultPrefix.
	Topics sdk.Topics
	// Clock is the time for order creation, schedules and signatures. Nil: time.Now.
	Clock func() time.Time

	// BackoffMin and BackoffMax bound the per-order wait between sends of an unconfirmed revision: it
	// doubles from BackoffMin after every acknowledged send up to BackoffMax, each wait random in [d/2, d].
	// Zero: DefaultBackoffMin (30 s) and DefaultBackoffMax (30 min).
	BackoffMin, BackoffMax time.Duration
	// OnlineGrace is how long after a truck comes online (Kick) its unconfirmed orders are sent again: the
	// broker delivers its queue first, and most confirmations arrive within it. Zero: DefaultOnlineGrace
	// (15 s). Negative: at once.
	OnlineGrace time.Duration
	// Poll is how often the re-sender looks at the store for orders written by another process or due.
	// Zero: DefaultPoll (1 s).
	Poll time.Duration
	// RetryDelay is the wait after a failed publish (link down, broker refused). Zero: DefaultRetryDelay (5 s).
	RetryDelay time.Duration
	// MaxInFlight bounds publishes waiting for their PUBACK at once. Zero: DefaultMaxInFlight (64).
	MaxInFlight int
	// MaxBatch bounds the orders taken per round. Zero: DefaultMaxBatch (500), half the truck's replay window
	// so that orders signed in one round stay inside it however they interleave.
	MaxBatch int
	// PublishTimeout bounds one publish. Zero: DefaultPublishTimeout (30 s).
	PublishTimeout time.Duration

	// Logger gets one line per send round and per failure. Nil: discard.
	Logger *slog.Logger
}

func (c OutboxConfig) withDefaults() (OutboxConfig, error) {
	if c.Store == nil && c.Path == "" {
		return c, errors.New("dispatch: outbox needs a Store or a Path")
	}
	if c.Certificate == nil || c.Key == nil {
		return c, errors.New("dispatch: outbox needs the dispatch Certificate and Key to sign orders")
	}
	if err := c.Topics.Validate(); err != nil {
		return c, err
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	c.BackoffMax = max(c.BackoffMax, c.BackoffMin)
	if c.OnlineGrace == 0 {
		c.OnlineGrace = DefaultOnlineGrace
	}
	c.OnlineGrace = max(c.OnlineGrace, 0)
	if c.Poll <= 0 {
		c.Poll = DefaultPoll
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = DefaultRetryDelay
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Outbox is dispatch's durable record of every order revision, re-sent until the truck confirms it. Its
// methods are safe for concurrent use.
type Outbox struct {
	cfg    OutboxConfig
	signer *sdk.Signer
	seq    *reservedSeq
	log    *slog.Logger

	openMu sync.Mutex // serialises opens of Path: bbolt's lock is per open file, also within one process

	// mu guards the fields below it.
	mu      sync.Mutex
	kicked  map[string]time.Time // truck -> when it came online
	epochs  map[string]sdk.Epoch // truck -> the store epoch last recorded or read (NoteStore)
	wake    chan struct{}        // closed and replaced to wake the re-sender
	started time.Time            // when Run started; zero before
	running bool
}

// NewOutbox checks cfg. It does not open the store: the first operation does.
func NewOutbox(cfg OutboxConfig) (*Outbox, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	seq := &reservedSeq{}
	signer, err := sdk.NewSigner(sdk.SignerConfig{Certificate: cfg.Certificate, Key: cfg.Key, Sequencer: seq,
		Clock: cfg.Clock})
	if err != nil {
		return nil, fmt.Errorf("dispatch: %w", err)
	}
	return &Outbox{cfg: cfg, signer: signer, seq: seq, log: cfg.Logger, kicked: map[string]time.Time{},
		epochs: map[string]sdk.Epoch{}, wake: make(chan struct{})}, nil
}

// Signer is the identity orders are signed with.
func (o *Outbox) Signer() *sdk.Signer { return o.signer }

// with runs fn with the store: the configured one, or Path opened for the duration of fn.
func (o *Outbox) with(fn func(st *store.Store) error) error {
	if o.cfg.Store != nil {
		return fn(o.cfg.Store)
	}
	o.openMu.Lock()
	defer o.openMu.Unlock()
	unlock, err := lockPath(o.cfg.Path+".lock", o.cfg.StoreOptions.LockTimeout)
	if err != nil {
		return fmt.Errorf("dispatch: outbox: %w", err)
	}
	defer unlock()
	st, err := store.Open(o.cfg.Path, o.cfg.StoreOptions)
	if err != nil {
		return fmt.Errorf("dispatch: outbox: %w", err)
	}
	err = fn(st)
	if cerr := st.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("dispatch: outbox: close: %w", cerr)
	}
	return err
}

func getEntry(tx *store.Tx, truck, id string) (*Entry, error) {
	raw, err := tx.Get(ordersBucket, entryKey(truck, id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeEntry(raw)
}

func putEntry(tx *store.Tx, e *Entry) error {
	raw, err := encodeEntry(e)
	if err != nil {
		return err
	}
	return tx.Put(ordersBucket, entryKey(e.Order.Truck, e.Order.ID), raw)
}

// Create stores a new order (revision 1) and returns its entry once it is on disk; the re-sender sends it.
// Revision, Created and Status are set by the outbox; Expires is required. Creating an order that exists
// with the same content (recipient, address, destination, radius, notes) returns the existing entry, so a
// repeated create is harmless; other content is ErrExists.
func (o *Outbox) Create(ctx context.Context, ord sdk.Order) (Entry, error) {
	now := o.cfg.Clock().UTC()
	ord.Revision, ord.Status = 1, sdk.OrderActive
	if ord.Created.IsZero() {
		ord.Created = now
	}
	n, err := NormalizeOrder(ord)
	if err != nil {
		return Entry{}, err
	}
	var out Entry
	err = o.with(func(st *store.Store) error {
		return st.Update(ctx, func(tx *store.Tx) error {
			cur, err := getEntry(tx, n.Truck, n.ID)
			if err != nil {
				return err
			}
			if cur != nil {
				if !SameContent(&cur.Order, &n) {
					return fmt.Errorf("%w: %s/%s", ErrExists, n.Truck, n.ID)
				}
				out = *cur
				return nil
			}
			e := &Entry{Order: n, State: StatePending, Updated: now}
			e.Hash, _ = n.Hash()
			out = *e
			return putEntry(tx, e)
		})
	})
	if err != nil {
		return Entry{}, err
	}
	o.nudge()
	return out, nil
}

// Revise stores a new revision of an existing order: its content replaces the current one (Truck and ID
// name the order; Revision, Created and Status are set by the outbox). The new revision is sent until
// the truck confirms it; the older one is no longer sent.
func (o *Outbox) Revise(ctx context.Context, ord sdk.Order) (Entry, error) {
	return o.newRevision(ctx, ord.Truck, ord.ID, func(cur *Entry) (sdk.Order, error) {
		if cur.Order.Status == sdk.OrderCancelled {
			return sdk.Order{}, fmt.Errorf("%w: %s/%s", ErrCancelled, ord.Truck, ord.ID)
		}
		ord.Created, ord.Status = cur.Order.Created, sdk.OrderActive
		if ord.Expires.IsZero() {
			ord.Expires = cur.Order.Expires
		}
		return ord, nil
	})
}

// Cancel stores a cancellation: a new revision with status cancelled. Cancelling a cancelled order returns
// it unchanged. Cancelling an order the outbox knows is delivered or failed is ErrClosed, and nothing is
// stored: the truck would refuse it. When the delivery is not known yet the cancellation is sent, and a
// truck that already closed the order answers with a conflict: the entry then keeps the delivered (or
// failed) state and sets CancelRefused.
func (o *Outbox) Cancel(ctx context.Context, truck, id, reason string) (Entry, error) {
	return o.newRevision(ctx, truck, id, func(cur *Entry) (sdk.Order, error) {
		if cur.Order.Status == sdk.OrderCancelled {
			return sdk.Order{}, nil // nothing to do
		}
		switch cur.State {
		case StateDelivered, StateFailed, StateConflict:
			at := ""
			if cur.LastEvent != nil && cur.LastEvent.Kind != sdk.EventReceived {
				at = " at " + cur.LastEvent.Time.UTC().Format(time.DateTime) + " UTC"
			}
			return sdk.Order{}, fmt.Errorf("%w: %s/%s was %s%s; nothing was cancelled, the order stays %s",
				ErrClosed, truck, id, cur.State, at, cur.State)
		}
		ord := cur.Order
		ord.Status = sdk.OrderCancelled
		if reason != "" {
			ord.Notes = "cancelled: " + reason
		}
		return ord, nil
	})
}

// newRevision applies change to the current entry and stores the result as the next revision. change
// returning a zero order means no change.
func (o *Outbox) newRevision(ctx context.Context, truck, id string, change func(cur *Entry) (sdk.Order, error)) (Entry, error) {
	now := o.cfg.Clock().UTC()
	var out Entry
	err := o.with(func(st *store.Store) error {
		return st.Update(ctx, func(tx *store.Tx) error {
			cur, err := getEntry(tx, truck, id)
			if err != nil {
				return err
			}
			if cur == nil {
				return fmt.Errorf("%w: %s/%s", ErrNotFound, truck, id)
			}
			ord, err := change(cur)
			if err != nil {
				return err
			}
			if ord.ID == "" {
				out = *cur
				return nil
			}
			ord.Truck, ord.ID, ord.Revision = truck, id, cur.Order.Revision+1
			n, err := NormalizeOrder(ord)
			if err != nil {
				return err
			}
			e := &Entry{Order: n, State: StatePending, Confirmed: cur.Confirmed, ConfirmedAt: cur.ConfirmedAt,
				LastEvent: cur.LastEvent, Updated: now, CancelRefused: cur.CancelRefused}
			if cur.State == StateConflict || cur.State == StateDelivered || cur.State == StateFailed {
				e.State = cur.State // what the driver did stays visible; Confirmed says the revision is pending
			}
			e.Hash, _ = n.Hash()
			out = *e
			return putEntry(tx, e)
		})
	})
	if err != nil {
		return Entry{}, err
	}
	o.nudge()
	return out, nil
}

// Get returns one order's entry, or ErrNotFound.
func (o *Outbox) Get(ctx context.Context, truck, id string) (Entry, error) {
	var out *Entry
	err := o.with(func(st *store.Store) error {
		raw, err := st.Get(ordersBucket, entryKey(truck, id))
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %s/%s", ErrNotFound, truck, id)
		}
		if err != nil {
			return err
		}
		out, err = decodeEntry(raw)
		return err
	})
	if err != nil {
		return Entry{}, err
	}
	return *out, nil
}

// List returns every order in the outbox, oldest created first.
func (o *Outbox) List(ctx context.Context) ([]Entry, error) {
	var out []Entry
	err := o.with(func(st *store.Store) error {
		var err error
		out, err = ListStore(ctx, st)
		return err
	})
	return out, err
}

// ListStore lists the outbox entries kept in st, oldest created first, without an Outbox (and so without
// a signing identity): for tools that only read.
func ListStore(ctx context.Context, st *store.Store) ([]Entry, error) {
	var out []Entry
	err := st.ForEach(ordersBucket, func(_, v []byte) error {
		e, err := decodeEntry(v)
		if err != nil {
			return err
		}
		out = append(out, *e)
		return ctx.Err()
	})
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Order.Created.Equal(out[j].Order.Created) {
			return out[i].Order.Created.Before(out[j].Order.Created)
		}
		return out[i].Order.Truck+"/"+out[i].Order.ID < out[j].Order.Truck+"/"+out[j].Order.ID
	})
	return out, err
}

// TruckEvent is a verified event and the truck that signed it.
type TruckEvent struct {
	Truck string
	Event *sdk.Event
}

// Apply records verified events from trucks in one store transaction: received events confirm revisions
// (matching order id, revision and OrderHash), the others update the order's state. Events about orders
// the outbox does not hold are ignored. Applying the same event again changes nothing. Only pass events
// that a sdk.Verifier accepted, with the truck it verified as signer.
func (o *Outbox) Apply(ctx context.Context, evs ...TruckEvent) error {
	if len(evs) == 0 {
		return nil
	}
	now := o.cfg.Clock().UTC()
	var notes []string
	err := o.with(func(st *store.Store) error {
		return st.Update(ctx, func(tx *store.Tx) error {
			notes = notes[:0]
			for _, te := range evs {
				ev := te.Event
				if ev.Kind.IsTrip() {
					continue // movement events name no order
				}
				e, err := getEntry(tx, te.Truck, ev.OrderID)
				if err != nil {
					return err
				}
				if e == nil {
					continue
				}
				changed, note := applyEvent(e, ev, now)
				if note != "" {
					notes = append(notes, fmt.Sprintf("%s/%s: %s", te.Truck, ev.OrderID, note))
				}
				if !changed {
					continue
				}
				e.Updated = now
				if err := putEntry(tx, e); err != nil {
					return err
				}
			}
			return nil
		})
	})
	for _, n := range notes {
		o.log.Warn("dispatch: event does not match the outbox", "detail", n)
	}
	return err
}

// applyEvent updates e for one event and reports whether anything changed, and a note for the log.
func applyEvent(e *Entry, ev *sdk.Event, now time.Time) (changed bool, note string) {
	info := &EventInfo{Kind: ev.Kind, Revision: ev.Revision, Time: ev.Time, Reason: ev.Reason, Via: ev.Via,
		OffSite: ev.OffSite, Conflict: ev.Conflict, Fix: ev.Fix}
	if ev.Kind == sdk.EventReceived {
		switch {
		case ev.Revision < e.Order.Revision || ev.Revision <= e.Confirmed && !ev.Conflict:
			return false, "" // an older revision's receipt, or one we have
		case e.Awaiting != (sdk.Epoch{}) && ev.Epoch != e.Awaiting:
			return false, "" // the lost store's confirmation (re-sent from a salvaged store): the new one must confirm
		case ev.Revision > e.Order.Revision:
			// Another outbox revised this order: the truck holds a newer revision than ours, which it keeps, so
			// sending ours again is pointless.
			e.Confirmed, e.ConfirmedAt = e.Order.Revision, now
			e.Note = fmt.Sprintf("the truck holds revision %d, newer than the outbox's %d", ev.Revision, e.Order.Revision)
			return true, e.Note
		case ev.OrderHash != e.Hash:
			e.Note = fmt.Sprintf("the truck confirmed revision %d with another order hash: a different order "+
				"was signed with this revision; still sending ours", ev.Revision)
			return true, e.Note
		}
		e.Confirmed, e.ConfirmedAt, e.LastError, e.Awaiting = ev.Revision, now, "", sdk.Epoch{}
		switch {
		case ev.Conflict:
			// The truck refused the cancellation: the driver closed the order first. Keep what the driver
			// did; until its event arrives the outcome is unknown (conflict).
			e.CancelRefused = true
			if e.State != StateDelivered && e.State != StateFailed {
				e.State = StateConflict
			}
			if e.LastEvent == nil || e.LastEvent.Kind == sdk.EventReceived {
				e.LastEvent = info
			}
		case e.Order.Status == sdk.OrderCancelled:
			e.State = StateCancelled
		case e.State == StatePending || e.State == StateExpired:
			e.State = StateReceived
		}
		return true, ""
	}
	// A driver event (arrived, delivered, failed, problem). Older events arriving late do not undo newer
	// ones, and arriving after delivery does not undo the delivery.
	if l := e.LastEvent; l != nil && l.Kind != sdk.EventReceived && ev.Time.Before(l.Time) {
		return false, ""
	}
	if ev.Kind == sdk.EventArrived && (e.State == StateDelivered || e.State == StateFailed) {
		return false, ""
	}
	if l := e.LastEvent; l != nil && l.Kind == ev.Kind && l.Time.Equal(ev.Time) && l.Revision == ev.Revision {
		return false, "" // the same event again
	}
	e.LastEvent = info
	closes := ev.Kind == sdk.EventDelivered || ev.Kind == sdk.EventFailed
	switch {
	case closes && (e.State == StateConflict || e.Order.Status == sdk.OrderCancelled):
		// The driver closed the order before the cancellation reached the truck: that is what happened,
		// and the cancellation did not take effect.
		e.State, e.CancelRefused = stateOf(ev.Kind), true
	case e.State == StateConflict:
	default:
		e.State = stateOf(ev.Kind)
	}
	return true, ""
}

func stateOf(k sdk.EventKind) State {
	switch k {
	case sdk.EventArrived:
		return StateArrived
	case sdk.EventDelivered:
		return StateDelivered
	case sdk.EventFailed:
		return StateFailed
	case sdk.EventProblem:
		return StateProblem
	}
	return StateReceived
}

// Kick tells the re-sender that truck came online (its retained status says so): its unconfirmed orders
// sent before now go out again after OnlineGrace, whatever their backoff says. The broker may have lost
// its queue for the truck (a crash, an expired session); if not, the truck confirms them within the grace.
func (o *Outbox) Kick(truck string) {
	o.mu.Lock()
	o.kicked[truck] = o.cfg.Clock()
	o.mu.Unlock()
	o.nudge()
}

// nudge wakes the re-sender.
func (o *Outbox) nudge() {
	o.mu.Lock()
	close(o.wake)
	o.wake = make(chan struct{})
	o.mu.Unlock()
}

// reservedSeq is the order signer's sdk.Sequencer: it hands out numbers reserved in the outbox's store, so
// envelope sequence numbers keep increasing across restarts and across the processes sharing the outbox.
type reservedSeq struct {
	mu         sync.Mutex
	next, last uint64 // guarded by mu: next is handed out next, while next <= last
}

func (s *reservedSeq) Next(t sdk.MsgType) (uint64, error) {
	if t != sdk.MsgOrder {
		return 0, fmt.Errorf("dispatch: the outbox signs only orders, not %s", t)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next == 0 || s.next > s.last {
		return 0, errors.New("dispatch: no reserved sequence numbers left")
	}
	n := s.next
	s.next++
	return n, nil
}

// reserve takes n sequence numbers in tx. The first reservation starts at the clock in microseconds, so
// an identity that signed with a clock-based sdk.MemorySequencer before does not start behind it.
func (s *reservedSeq) reserve(tx *store.Tx, n int, now time.Time) (first, last uint64, err error) {
	var prev uint64
	raw, err := tx.Get(metaBucket, keySeq)
	switch {
	case errors.Is(err, store.ErrNotFound):
		prev = uint64(now.UnixMicro())
	case err != nil:
		return 0, 0, err
	case len(raw) != 8:
		return 0, 0, fmt.Errorf("dispatch: outbox sequence number has %d bytes", len(raw))
	default:
		prev = binary.BigEndian.Uint64(raw)
	}
	first, last = prev+1, prev+uint64(n)
	if err := tx.Put(metaBucket, keySeq, binary.BigEndian.AppendUint64(nil, last)); err != nil {
		return 0, 0, err
	}
	return first, last, nil
}

// use makes [first, last] the numbers Next hands out, after the reservation committed.
func (s *reservedSeq) use(first, last uint64) {
	s.mu.Lock()
	s.next, s.last = first, last
	s.mu.Unlock()
}
