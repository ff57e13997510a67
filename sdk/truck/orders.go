package truck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/store"
)

// orderBucket is the store bucket of the order book: key order id, value a JSON Entry.
const orderBucket = "orders"

// receiptRepeat is how long after queuing a receipt a duplicate of the same revision queues another: dispatch
// re-sends an order while it has not seen the receipt, which may still be waiting in the queue.
const receiptRepeat = time.Minute

// State is where an order stands on the truck.
type State string

const (
	StateActive    State = "active"    // to be delivered
	StateDelivered State = "delivered" // the driver confirmed delivery
	StateFailed    State = "failed"    // the driver could not deliver
	StateCancelled State = "cancelled" // dispatch cancelled it
)

// Entry is one order in the truck's order book.
type Entry struct {
	Order     sdk.Order     `json:"order"`      // the highest revision received
	Hash      sdk.OrderHash `json:"hash"`       // of that revision as signed
	State     State         `json:"state"`      //
	Received  time.Time     `json:"received"`   // when the current revision was stored
	Arrived   bool          `json:"arrived"`    // an arrived event was queued
	Conflict  bool          `json:"conflict"`   // a cancellation arrived after delivery
	Problems  int           `json:"problems"`   // problem reports so far
	Action    *ActionResult `json:"action"`     // the driver's final action, for idempotent repeats
	ReceiptAt time.Time     `json:"receipt_at"` // when the last receipt was queued
	// Closed is when the order closed on this truck (delivered, failed or cancelled): retention counts from
	// it. Zero while active, and in entries written before it was kept (closedAt stands in).
	Closed time.Time `json:"closed,omitzero"`
	// Unseen marks a cancellation of an order this truck never held: there was nothing to cancel, so it is
	// not listed (Orders) nor acted on (ErrUnknownOrder). It is kept only as a high-water mark, so that a late
	// lower or equal revision of that order does not bring it to the driver; a higher revision applies as a
	// new order.
	Unseen bool `json:"unseen,omitempty"`
}

// ActionResult is what a driver's action produced: the event queued as proof.
type ActionResult struct {
	Kind    sdk.EventKind `json:"kind"`
	Reason  string        `json:"reason,omitempty"`
	Via     sdk.Via       `json:"via"`
	Time    time.Time     `json:"time"`
	Seq     uint64        `json:"seq"` // the event's record sequence number in the store
	OffSite bool          `json:"off_site"`
	Fix     *sdk.Fix      `json:"fix,omitempty"`
}

// BookConfig configures a Book.
type BookConfig struct {
	Store    *store.Store  // required
	Verifier *sdk.Verifier // required: orders are verified before anything else
	Truck    string        // required: this truck's identity
	// Clock is the time for receipts and actions. Nil = time.Now.
	Clock func() time.Time
	// OnChange is called after an order changed in the store (new, revised, cancelled, acted on). It must not
	// block for long.
	OnChange func(Entry)
	// KeepClosed is how long a closed order (delivered, failed, cancelled) stays in the book after it closed,
	// for the driver's history and for repeated actions and re-sent revisions to be recognised; then Run
	// removes it (see Prune: not before its expiry has passed). Active orders are never removed. Zero: 30
	// days (DefaultKeepClosed).
	KeepClosed time.Duration
	// PruneInterval is how often Run looks for closed orders past KeepClosed. Zero: 1 hour.
	PruneInterval time.Duration
	Logger        *slog.Logger // nil discards
}

// Book is the truck's order book: orders received from dispatch, verified and stored, and the driver's
// actions on them, each queued as a signed proof in the store's critical lane.
//
// Closed orders (delivered, failed, cancelled) stay KeepClosed (30 days) after they closed, then Run removes
// them, once their expiry has passed too: a revision re-sent after that is refused by the verifier as
// expired, so a pruned order never comes back as a new one (Prune says why). Active orders stay however
// old. What runs per GPS fix (Active, CheckArrival) and per page (Closed, Get, Counts) reads two indexes
// kept in the same transactions as the entries (book.go), so its cost does not grow with the history;
// Orders reads everything and is for tools and tests.
type Book struct {
	cfg BookConfig

	// indexed is set once the open and closed indexes match the entries (checkIndex); until then Active and
	// Counts read the whole book and Prune does nothing.
	indexed atomic.Bool
	stats   bookStats

	amu    sync.Mutex
	active map[string]activeEntry // Active's decoded open orders by id; guarded by amu
}

type bookStats struct{ applied, duplicates, stale, rejected, conflicts, pruned atomic.Uint64 }

// BookStats counts what the order handler did.
type BookStats struct {
	Applied    uint64 // new orders and revisions stored
	Duplicates uint64 // the current revision again (acknowledged, not applied twice)
	Stale      uint64 // an older revision (acknowledged, ignored)
	Rejected   uint64 // refused by the verifier (acknowledged, never applied; reasons in the verifier's stats)
	Conflicts  uint64 // cancellations of orders already delivered (not counted in Applied)
	Pruned     uint64 // closed orders removed after KeepClosed
}

// NewBook checks cfg and indexes the book if it has no index yet (a book written by an older version, or a
// salvaged store): one full read, logged with its duration. Pruning starts with Run.
func NewBook(cfg BookConfig) (*Book, error) {
	if cfg.Store == nil || cfg.Verifier == nil || cfg.Truck == "" {
		return nil, errors.New("truck: order book needs a Store, a Verifier and the Truck name")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.KeepClosed <= 0 {
		cfg.KeepClosed = DefaultKeepClosed
	}
	if cfg.PruneInterval <= 0 {
		cfg.PruneInterval = DefaultPruneInterval
	}
	b := &Book{cfg: cfg}
	b.checkIndex(context.Background())
	return b, nil
}

// VerifierStats returns the order verifier's counts, rejections by reason.
func (b *Book) VerifierStats() sdk.Stats { return b.cfg.Verifier.Stats() }

// Stats returns the counters.
func (b *Book) Stats() BookStats {
	return BookStats{b.stats.applied.Load(), b.stats.duplicates.Load(), b.stats.stale.Load(),
		b.stats.rejected.Load(), b.stats.conflicts.Load(), b.stats.pruned.Load()}
}

// Handle is the transport.OnPublish handler for the truck's orders topic. It returns nil (the PUBLISH is
// acknowledged) once the order is stored with its receipt queued, or when the message is refused: a forged
// order must not come back forever. It returns an error only when the store fails, so the broker redelivers.
func (b *Book) Handle(ctx context.Context, m transport.Message) error {
	msg, err := b.cfg.Verifier.Verify(ctx, m.Topic, m.Payload)
	dup := errors.Is(err, sdk.ReasonDuplicate)
	switch {
	case err != nil && !dup:
		b.stats.rejected.Add(1)
		b.cfg.Logger.Warn("truck: order refused", "topic", m.Topic, "err", err)
		return nil
	case msg.Order == nil:
		b.stats.rejected.Add(1)
		b.cfg.Logger.Warn("truck: message on the orders topic is not an order", "topic", m.Topic, "type", msg.Type)
		return nil
	}
	o, hash := *msg.Order, msg.BodyHash()
	var changed *Entry
	var outcome *atomic.Uint64 // counted once the transaction committed: fn may run more than once
	var unseen bool
	err = b.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		changed, outcome, unseen = nil, &b.stats.applied, false
		now := b.cfg.Clock().UTC()
		cur, found, err := getEntry(tx, o.ID)
		if err != nil {
			return err
		}
		switch {
		case found && o.Revision < cur.Order.Revision:
			outcome = &b.stats.stale
			return nil
		case found && o.Revision == cur.Order.Revision:
			outcome = &b.stats.duplicates
			if now.Sub(cur.ReceiptAt) < receiptRepeat {
				return nil
			}
			prev := cur
			cur.ReceiptAt = now
			if err := queueReceipt(tx, cur, now); err != nil {
				return err
			}
			return putEntry(tx, &prev, &cur, now)
		}
		e := Entry{Order: o, Hash: hash, State: StateActive, Received: now, ReceiptAt: now}
		if found && !cur.Unseen { // after an unseen cancellation there is no driver state to carry over
			e.Arrived, e.Problems, e.Action, e.State = cur.Arrived, cur.Problems, cur.Action, cur.State
		}
		if o.Status == sdk.OrderCancelled {
			if found && (cur.State == StateDelivered || cur.State == StateFailed) {
				e.Conflict = true // keep what the driver did; dispatch learns of the conflict
				outcome = &b.stats.conflicts
			} else {
				e.State = StateCancelled
				e.Unseen = !found || cur.Unseen
			}
		}
		if err := queueReceipt(tx, e, now); err != nil {
			return err
		}
		var prev *Entry
		if found {
			prev = &cur
		}
		if err := putEntry(tx, prev, &e, now); err != nil {
			return err
		}
		if e.Unseen {
			unseen = true // nothing the driver has changed: no OnChange
			return nil
		}
		changed = &e
		return nil
	})
	if err != nil {
		return fmt.Errorf("truck: store order %s: %w", o.ID, err)
	}
	outcome.Add(1)
	if unseen {
		b.cfg.Logger.Info("truck: cancellation of an order this truck never had: kept so older revisions stay refused",
			"order", o.ID, "revision", o.Revision)
	}
	if changed != nil {
		b.cfg.Logger.Info("truck: order stored", "order", o.ID, "revision", o.Revision, "state", changed.State,
			"conflict", changed.Conflict)
		if b.cfg.OnChange != nil {
			b.cfg.OnChange(*changed)
		}
	}
	return nil
}

func queueReceipt(tx *store.Tx, e Entry, now time.Time) error {
	entry, err := EncodeEvent(sdk.Event{Kind: sdk.EventReceived, Time: now, OrderID: e.Order.ID,
		Revision: e.Order.Revision, OrderHash: e.Hash, Via: sdk.ViaAuto, Conflict: e.Conflict})
	if err != nil {
		return err
	}
	_, err = tx.Append(entry)
	return err
}

func getEntry(tx *store.Tx, id string) (Entry, bool, error) {
	raw, err := tx.Get(orderBucket, []byte(id))
	if errors.Is(err, store.ErrNotFound) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, err
	}
	var e Entry
	if err := json.Unmarshal(raw, &e); err != nil {
		return Entry{}, false, fmt.Errorf("%w %s: %w", errBadEntry, id, err)
	}
	return e, true, nil
}

// errBadEntry is an entry that is stored intact but is not an Entry.
var errBadEntry = errors.New("truck: order book entry unreadable:")

// Orders lists the whole order book, newest received first. Cancellations of orders the truck never held
// are left out. It reads and decodes every entry, so its cost grows with the closed history (bounded by
// KeepClosed): per GPS fix use Active, for a page of history Closed, for one order Get, for counts Counts.
func (b *Book) Orders() ([]Entry, error) {
	var out []Entry
	err := b.cfg.Store.ForEach(orderBucket, func(_, v []byte) error {
		var e Entry
		if err := json.Unmarshal(v, &e); err != nil {
			return err
		}
		if !e.Unseen {
			out = append(out, e)
		}
		return nil
	})
	sortNewest(out)
	return out, err
}

// Errors of Act.
var (
	ErrUnknownOrder   = errors.New("truck: unknown order")
	ErrOrderCancelled = errors.New("truck: order cancelled")
	ErrOrderClosed    = errors.New("truck: order already closed with another action")
	// ErrBadReason is a reason that is not valid UTF-8: refused, not repaired, since it becomes part of a
	// signed proof.
	ErrBadReason = errors.New("truck: the reason is not valid UTF-8")
)

// Action is a driver's acknowledgement of an order.
type Action struct {
	OrderID string
	Kind    sdk.EventKind // EventDelivered, EventFailed or EventProblem
	Reason  string        // required for failed and problem
	Via     sdk.Via       // button, screen, HTTP
	Fix     *sdk.Fix      // the latest fix, or nil when there is none
}

// Act records a driver's action as a signed proof of delivery: the event is in the store's critical lane,
// fsync'd, when Act returns. It is idempotent: repeating the same final action returns the first result
// unchanged; a different final action on a closed order is ErrOrderClosed. Problems may be reported many
// times.
func (b *Book) Act(ctx context.Context, a Action) (ActionResult, error) {
	if !utf8.ValidString(a.Reason) {
		return ActionResult{}, fmt.Errorf("%w (order %q)", ErrBadReason, a.OrderID)
	}
	switch a.Kind {
	case sdk.EventDelivered:
	case sdk.EventFailed, sdk.EventProblem:
		if a.Reason == "" {
			return ActionResult{}, fmt.Errorf("truck: a %s action needs a reason", a.Kind)
		}
	default:
		return ActionResult{}, fmt.Errorf("truck: %s is not a driver action", a.Kind)
	}
	var res ActionResult
	var changed Entry
	err := b.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		changed = Entry{}
		e, found, err := getEntry(tx, a.OrderID)
		if err != nil {
			return err
		}
		if !found || e.Unseen {
			return fmt.Errorf("%w %q", ErrUnknownOrder, a.OrderID)
		}
		if e.State == StateCancelled {
			return fmt.Errorf("%w: %q was cancelled by dispatch", ErrOrderCancelled, a.OrderID)
		}
		prev := e
		if e.Action != nil && a.Kind != sdk.EventProblem {
			if e.Action.Kind == a.Kind {
				res = *e.Action
				return nil
			}
			return fmt.Errorf("%w: %q is already %s", ErrOrderClosed, a.OrderID, e.Action.Kind)
		}
		now := b.cfg.Clock().UTC()
		off := a.Fix != nil && Distance(a.Fix.Lat, a.Fix.Lon, e.Order.Lat, e.Order.Lon) > float64(e.Order.RadiusM)
		ev := sdk.Event{Kind: a.Kind, Time: now, OrderID: e.Order.ID, Revision: e.Order.Revision, OrderHash: e.Hash,
			Reason: a.Reason, Via: a.Via, Fix: a.Fix, OffSite: off}
		entry, err := EncodeEvent(ev)
		if err != nil {
			return err
		}
		seqs, err := tx.Append(entry)
		if err != nil {
			return err
		}
		res = ActionResult{Kind: a.Kind, Reason: a.Reason, Via: a.Via, Time: now, Seq: seqs[0], OffSite: off, Fix: a.Fix}
		switch a.Kind {
		case sdk.EventDelivered:
			e.State, e.Action = StateDelivered, &res
		case sdk.EventFailed:
			e.State, e.Action = StateFailed, &res
		case sdk.EventProblem:
			e.Problems++
		}
		changed = e
		return putEntry(tx, &prev, &changed, now)
	})
	if err != nil {
		return ActionResult{}, err
	}
	if changed.Order.ID != "" && b.cfg.OnChange != nil {
		b.cfg.OnChange(changed)
	}
	return res, nil
}

// CheckArrival queues an arrived event, computed on the unit and offline, for every active order whose
// arrival radius the fix is inside, once per order. It returns the orders it marked. It reads only the
// active orders (Active), so it may run for every fix whatever the book's history.
func (b *Book) CheckArrival(ctx context.Context, f sdk.Fix) ([]string, error) {
	entries, err := b.Active()
	if err != nil {
		return nil, err
	}
	var arrived []string
	for _, e := range entries {
		if e.State != StateActive || e.Arrived || Distance(f.Lat, f.Lon, e.Order.Lat, e.Order.Lon) > float64(e.Order.RadiusM) {
			continue
		}
		var changed Entry
		err := b.cfg.Store.Update(ctx, func(tx *store.Tx) error {
			cur, found, err := getEntry(tx, e.Order.ID)
			if err != nil || !found || cur.Arrived || cur.State != StateActive {
				return err
			}
			fix := f
			entry, err := EncodeEvent(sdk.Event{Kind: sdk.EventArrived, Time: f.Time, OrderID: cur.Order.ID,
				Revision: cur.Order.Revision, OrderHash: cur.Hash, Via: sdk.ViaAuto, Fix: &fix})
			if err != nil {
				return err
			}
			if _, err := tx.Append(entry); err != nil {
				return err
			}
			prev := cur
			cur.Arrived = true
			changed = cur
			return putEntry(tx, &prev, &changed, b.cfg.Clock().UTC())
		})
		if err != nil {
			return arrived, err
		}
		if changed.Order.ID != "" {
			arrived = append(arrived, changed.Order.ID)
			if b.cfg.OnChange != nil {
				b.cfg.OnChange(changed)
			}
		}
	}
	return arrived, nil
}

// Distance is the great-circle distance in metres between two WGS84 points (haversine; accurate to
// about 0.5 % which is far below GPS error at delivery distances).
func Distance(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371008.8
	rad := math.Pi / 180
	dLat, dLon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * r * math.Asin(math.Min(1, math.Sqrt(a)))
}

// Bearing is the initial bearing in degrees (0 = north, clockwise) from the first point to the second.
func Bearing(lat1, lon1, lat2, lon2 float64) float64 {
	rad := math.Pi / 180
	y := math.Sin((lon2-lon1)*rad) * math.Cos(lat2*rad)
	x := math.Cos(lat1*rad)*math.Sin(lat2*rad) - math.Sin(lat1*rad)*math.Cos(lat2*rad)*math.Cos((lon2-lon1)*rad)
	return math.Mod(math.Atan2(y, x)/rad+360, 360)
}
