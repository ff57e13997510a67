package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
)

// The Import methods copy another engine's record in as it is (`waybill dispatch migrate`): nothing is
// re-applied or re-signed, and what the database already holds is left alone, so an import run twice
// copies nothing twice. Each is safe while offices run on the database.

// ImportResult says what an import did with one item.
type ImportResult int

const (
	Imported ImportResult = iota // copied
	Present                      // the database held it already
	Differs                      // the database holds another version (newer, or made here): left as it is
)

// ImportOrder copies an order entry as it is (state, confirmations, sends, last event, schedule) and its
// tracking token, when token is not empty. An order already in the database is Present when it is the
// same revision with the same hash (its token is set if it has none), Differs otherwise. tokenSet says
// whether token was stored.
func (s *Store) ImportOrder(ctx context.Context, e dispatch.Entry, token string) (res ImportResult, tokenSet bool, err error) {
	if token != "" {
		if err := storage.CheckTrackingToken(token); err != nil {
			return 0, false, fmt.Errorf("postgres: import %s/%s: %w", e.Order.Truck, e.Order.ID, err)
		}
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tokenSet = false
		// Serialises with Create of the same order id, as Create does.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", e.Order.Truck+"/"+e.Order.ID); err != nil {
			return err
		}
		cur, err := getEntry(ctx, tx, e.Order.Truck, e.Order.ID, true)
		if err != nil {
			return err
		}
		switch {
		case cur == nil:
			res = Imported
			if err := putEntry(ctx, tx, &e, nil); err != nil {
				return err
			}
		case cur.Order.Revision == e.Order.Revision && cur.Hash == e.Hash:
			res = Present
		default:
			res = Differs
			return nil
		}
		if token == "" {
			return nil
		}
		key := storage.TrackingKey(token)
		tag, err := tx.Exec(ctx, `UPDATE orders SET tracking_token = $3, tracking_key = $4
			WHERE truck = $1 AND id = $2 AND tracking_token IS NULL`, e.Order.Truck, e.Order.ID, token, key[:])
		tokenSet = err == nil && tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("postgres: import %s/%s: %w", e.Order.Truck, e.Order.ID, err)
	}
	if res == Imported {
		s.nudge()
	}
	return res, tokenSet, nil
}

// ImportFixes copies fixes of one truck (idempotent, as Commit) and returns how many were new.
func (s *Store) ImportFixes(ctx context.Context, fs []dispatch.Fix) (int, error) {
	if len(fs) == 0 {
		return 0, nil
	}
	n, _, err := s.commitFixes(ctx, fs)
	if err != nil {
		return 0, fmt.Errorf("postgres: import fixes: %w", err)
	}
	return int(n), nil
}

// ImportEvent copies an archived event without applying it to its order (ImportOrder brings the order's
// state as it was). It reports whether the event was new.
func (s *Store) ImportEvent(ctx context.Context, ev dispatch.Event) (bool, error) {
	if ev.Truck == "" {
		return false, errors.New("postgres: import: an event without a truck")
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return false, err
	}
	var added bool
	var id int32
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if id, err = s.storeID(ctx, tx, ev.Truck, ev.Event.Epoch); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO events (store_id, seq, t, truck, order_id, body) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (store_id, seq, t) DO NOTHING`,
			id, int64(ev.Event.RecordSeq), ev.Event.Time.UTC(), ev.Truck, ev.Event.OrderID, body)
		added = err == nil && tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("postgres: import event: %w", err)
	}
	s.cacheStore(ev.Truck, ev.Event.Epoch, id)
	return added, nil
}

// ImportStatus copies a truck's status unless the database holds one as new or newer. It reports
// whether it was copied.
func (s *Store) ImportStatus(ctx context.Context, st dispatch.Status) (bool, error) {
	ok, err := s.upsertStatus(ctx, &st, false)
	if err != nil {
		return false, fmt.Errorf("postgres: import status of %s: %w", st.Truck, err)
	}
	return ok, nil
}

// ImportEpoch records a truck's store epoch as NoteStatus would have (so a truck whose store is later
// recreated gets its open orders again), unless the database has one for the truck. It reports whether
// it was copied.
func (s *Store) ImportEpoch(ctx context.Context, truck string, e sdk.Epoch) (bool, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO truck_epochs (truck, epoch) VALUES ($1, $2) ON CONFLICT (truck) DO NOTHING`,
		truck, e[:])
	if err != nil {
		return false, fmt.Errorf("postgres: import store epoch of %s: %w", truck, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ImportSignerSeq raises identity's last reserved envelope sequence number to at least last, so orders
// signed here never reuse a number the other engine signed with (trucks would refuse them as replays).
func (s *Store) ImportSignerSeq(ctx context.Context, identity string, last uint64) error {
	if last == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO signer_seq (identity, last) VALUES ($1, $2)
		ON CONFLICT (identity) DO UPDATE SET last = greatest(signer_seq.last, excluded.last)`, identity, int64(last))
	if err != nil {
		return fmt.Errorf("postgres: import the sequence numbers of %s: %w", identity, err)
	}
	return nil
}
