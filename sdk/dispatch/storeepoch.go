package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/store"
)

// epochsBucket holds the last store epoch seen per truck: key truck, value the 8 epoch bytes.
const epochsBucket = "dispatch-epochs"

// StoreChange says that a truck's store is new (its status carries another store epoch than the one the
// outbox recorded for it) and what the outbox did about it.
type StoreChange struct {
	Truck    string    `json:"truck"`
	Epoch    sdk.Epoch `json:"epoch"`    // the new store epoch
	Previous sdk.Epoch `json:"previous"` // the one recorded before
	// Origin and Since are how and when the new store began, as the truck says (sdk.Health.StoreOrigin,
	// StoreSince): "created" (first start, or the file was lost), "recreated", "salvaged".
	Origin string    `json:"origin,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	// Reopened counts the open order revisions (not delivered, failed, cancelled, conflicting or expired)
	// marked unconfirmed again: the re-sender sends them at once and the new store must confirm them.
	Reopened int `json:"reopened"`
}

// NoteStore records the store epoch of a truck's online status (h.StoreEpoch; zero, or nil h, does
// nothing). The first epoch seen for a truck is only recorded. When it differs from the recorded one the
// truck lost (or salvaged) its store and with it its order book: in one transaction the new epoch is
// recorded and every open order revision of the truck is marked unconfirmed, due at once and awaiting a
// received event from the new store; the re-sender is woken. It returns the change, or nil when the epoch
// is not new. Seeing the same epoch again does nothing, also in another process sharing the outbox: only the
// epoch in the outbox's store counts.
func (o *Outbox) NoteStore(ctx context.Context, truck string, h *sdk.Health) (*StoreChange, error) {
	if h == nil || h.StoreEpoch == (sdk.Epoch{}) || truck == "" {
		return nil, nil
	}
	o.mu.Lock()
	known, ok := o.epochs[truck]
	o.mu.Unlock()
	if ok && known == h.StoreEpoch {
		return nil, nil // the usual case: a status refresh of the same store, no store access
	}
	now := o.cfg.Clock().UTC()
	var ch *StoreChange
	err := o.with(func(st *store.Store) error {
		prev, err := storedEpoch(st.Get(epochsBucket, []byte(truck)))
		if err != nil || prev == h.StoreEpoch {
			return err
		}
		// The truck's entries, read before the write transaction (the store has no prefix scan inside one);
		// each is read again in it, so a revision written meanwhile is what gets reopened.
		var keys [][]byte
		if prev != (sdk.Epoch{}) {
			prefix := string(entryKey(truck, ""))
			err = st.ForEach(ordersBucket, func(k, _ []byte) error {
				if len(k) > len(prefix) && string(k[:len(prefix)]) == prefix {
					keys = append(keys, k)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return st.Update(ctx, func(tx *store.Tx) error {
			ch = nil
			prev, err := storedEpoch(tx.Get(epochsBucket, []byte(truck)))
			if err != nil || prev == h.StoreEpoch {
				return err
			}
			if err := tx.Put(epochsBucket, []byte(truck), h.StoreEpoch[:]); err != nil {
				return err
			}
			if prev == (sdk.Epoch{}) {
				return nil // the first epoch seen for this truck: only recorded
			}
			ch = &StoreChange{Truck: truck, Epoch: h.StoreEpoch, Previous: prev, Origin: h.StoreOrigin,
				Since: h.StoreSince}
			for _, k := range keys {
				raw, err := tx.Get(ordersBucket, k)
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				e, err := decodeEntry(raw)
				if err != nil {
					return err
				}
				if e.Order.Truck != truck || !isOpen(e, now) {
					continue
				}
				reopenEntry(e, ch, now)
				if err := putEntry(tx, e); err != nil {
					return err
				}
				ch.Reopened++
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	o.epochs[truck] = h.StoreEpoch
	o.mu.Unlock()
	if ch != nil {
		o.log.Warn("dispatch: a truck's store is new: its open orders are sent again", "truck", truck,
			"epoch", fmt.Sprintf("%x", ch.Epoch[:]), "previous", fmt.Sprintf("%x", ch.Previous[:]),
			"origin", ch.Origin, "since", ch.Since, "reopened", ch.Reopened)
		if ch.Reopened > 0 {
			o.nudge()
		}
	}
	return ch, nil
}

// storedEpoch reads a recorded epoch (zero when none is).
func storedEpoch(raw []byte, err error) (sdk.Epoch, error) {
	var e sdk.Epoch
	switch {
	case errors.Is(err, store.ErrNotFound):
		return e, nil
	case err != nil:
		return e, err
	case len(raw) != len(e):
		return e, fmt.Errorf("dispatch: outbox: a recorded store epoch has %d bytes", len(raw))
	}
	copy(e[:], raw)
	return e, nil
}

// isOpen reports whether an entry's order is still to be delivered: not delivered, failed, cancelled,
// conflicting or expired.
func isOpen(e *Entry, now time.Time) bool {
	switch e.State {
	case StatePending, StateReceived, StateArrived, StateProblem:
	default:
		return false
	}
	if e.Order.Status == sdk.OrderCancelled || !now.Before(e.Order.Expires) {
		return false
	}
	return true
}

// reopenEntry makes an open entry wait for the new store's confirmation, due at once.
func reopenEntry(e *Entry, ch *StoreChange, now time.Time) {
	e.Confirmed, e.ConfirmedAt = 0, time.Time{}
	if e.State == StateReceived {
		e.State = StatePending
	}
	e.Sends, e.NextAttempt, e.LastError = 0, time.Time{}, ""
	e.Awaiting = ch.Epoch
	origin := ch.Origin
	if origin == "" {
		origin = "new"
	}
	e.Note = fmt.Sprintf("the truck's store is new (%s, epoch %x): sent again", origin, ch.Epoch[:])
	e.Updated = now
}
