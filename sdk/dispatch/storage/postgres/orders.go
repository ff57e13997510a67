package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
)

// Create stores revision 1 of a new order (see dispatch.Outbox.Create).
func (s *Store) Create(ctx context.Context, ord sdk.Order) (dispatch.Entry, error) {
	now := s.o.Clock().UTC()
	ord.Revision, ord.Status = 1, sdk.OrderActive
	if ord.Created.IsZero() {
		ord.Created = now
	}
	n, err := dispatch.NormalizeOrder(ord)
	if err != nil {
		return dispatch.Entry{}, err
	}
	var out dispatch.Entry
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Serialises creates of one order id: a row lock cannot, there is no row yet.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", n.Truck+"/"+n.ID); err != nil {
			return err
		}
		cur, err := getEntry(ctx, tx, n.Truck, n.ID, true)
		if err != nil {
			return err
		}
		if cur != nil {
			if !dispatch.SameContent(&cur.Order, &n) {
				return fmt.Errorf("%w: %s/%s", dispatch.ErrExists, n.Truck, n.ID)
			}
			out = *cur
			return nil
		}
		e := &dispatch.Entry{Order: n, State: dispatch.StatePending, Updated: now}
		e.Hash, _ = n.Hash()
		out = *e
		return putEntry(ctx, tx, e, nil)
	})
	if err != nil {
		return dispatch.Entry{}, err
	}
	s.nudge()
	s.announce(ctx, storage.Change{Kind: storage.ChangeOrder, Truck: out.Order.Truck, Order: out.Order.ID})
	return out, nil
}

// Revise stores a new revision (see dispatch.Outbox.Revise).
func (s *Store) Revise(ctx context.Context, ord sdk.Order) (dispatch.Entry, error) {
	return s.newRevision(ctx, ord.Truck, ord.ID, func(cur *dispatch.Entry) (sdk.Order, error) {
		if cur.Order.Status == sdk.OrderCancelled {
			return sdk.Order{}, fmt.Errorf("%w: %s/%s", dispatch.ErrCancelled, ord.Truck, ord.ID)
		}
		ord.Created, ord.Status = cur.Order.Created, sdk.OrderActive
		if ord.Expires.IsZero() {
			ord.Expires = cur.Order.Expires
		}
		return ord, nil
	})
}

// Cancel stores a cancellation (see dispatch.Outbox.Cancel).
func (s *Store) Cancel(ctx context.Context, truck, id, reason string) (dispatch.Entry, error) {
	return s.newRevision(ctx, truck, id, func(cur *dispatch.Entry) (sdk.Order, error) {
		if cur.Order.Status == sdk.OrderCancelled {
			return sdk.Order{}, nil
		}
		switch cur.State {
		case dispatch.StateDelivered, dispatch.StateFailed, dispatch.StateConflict:
			return sdk.Order{}, fmt.Errorf("%w: %s/%s was %s; nothing was cancelled, the order stays %s",
				dispatch.ErrClosed, truck, id, cur.State, cur.State)
		}
		ord := cur.Order
		ord.Status = sdk.OrderCancelled
		if reason != "" {
			ord.Notes = "cancelled: " + reason
		}
		return ord, nil
	})
}

func (s *Store) newRevision(ctx context.Context, truck, id string, change func(cur *dispatch.Entry) (sdk.Order, error)) (dispatch.Entry, error) {
	now := s.o.Clock().UTC()
	var out dispatch.Entry
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := getEntry(ctx, tx, truck, id, true)
		if err != nil {
			return err
		}
		if cur == nil {
			return fmt.Errorf("%w: %s/%s", dispatch.ErrNotFound, truck, id)
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
		n, err := dispatch.NormalizeOrder(ord)
		if err != nil {
			return err
		}
		e := &dispatch.Entry{Order: n, State: dispatch.StatePending, Confirmed: cur.Confirmed, ConfirmedAt: cur.ConfirmedAt,
			LastEvent: cur.LastEvent, Updated: now, CancelRefused: cur.CancelRefused}
		if cur.State == dispatch.StateConflict || cur.State == dispatch.StateDelivered || cur.State == dispatch.StateFailed {
			e.State = cur.State
		}
		e.Hash, _ = n.Hash()
		out = *e
		return putEntry(ctx, tx, e, nil)
	})
	if err != nil {
		return dispatch.Entry{}, err
	}
	s.nudge()
	s.announce(ctx, storage.Change{Kind: storage.ChangeOrder, Truck: out.Order.Truck, Order: out.Order.ID})
	return out, nil
}

// Order returns one order.
func (s *Store) Order(ctx context.Context, truck, id string) (dispatch.Entry, error) {
	var out *dispatch.Entry
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		out, err = getEntry(ctx, tx, truck, id, false)
		return err
	})
	if err != nil {
		return dispatch.Entry{}, fmt.Errorf("postgres: %w", err)
	}
	if out == nil {
		return dispatch.Entry{}, fmt.Errorf("%w: %s/%s", dispatch.ErrNotFound, truck, id)
	}
	return *out, nil
}

// Orders returns every order, oldest created first.
func (s *Store) Orders(ctx context.Context) ([]dispatch.Entry, error) {
	rows, err := s.pool.Query(ctx, `SELECT body, entry, next_attempt FROM orders ORDER BY created, truck, id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	var out []dispatch.Entry
	var body, raw []byte
	var next time.Time
	_, err = pgx.ForEachRow(rows, []any{&body, &raw, &next}, func() error {
		e, err := decodeEntry(body, raw, next)
		if err != nil {
			return err
		}
		out = append(out, *e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return out, nil
}

// Track returns the truck's fixes in [from, to) by time, through the (store, time) index.
func (s *Store) Track(ctx context.Context, truck string, from, to time.Time) ([]dispatch.Fix, error) {
	if err := storage.CheckRange(from, to); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT st.epoch, f.seq, f.t, f.lat, f.lon, f.alt, f.speed, f.course, f.hdop, f.sats, f.flags
		FROM stores st JOIN fixes f ON f.store_id = st.id
		WHERE st.truck = $1 AND f.t >= $2 AND f.t < $3 ORDER BY f.t, st.id, f.seq`, truck, from.UTC(), to.UTC())
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	var out []dispatch.Fix
	var epoch []byte
	var seq int64
	var t time.Time
	var lat, lon, alt, speed int32
	var course, hdop, sats, flags int16
	_, err = pgx.ForEachRow(rows, []any{&epoch, &seq, &t, &lat, &lon, &alt, &speed, &course, &hdop, &sats, &flags}, func() error {
		f := dispatch.Fix{Truck: truck, Seq: uint64(seq)}
		copy(f.Epoch[:], epoch)
		f.Fix = sdk.Fix{Time: t.UTC(), Lat: float64(lat) / 1e6, Lon: float64(lon) / 1e6, Mode: uint8(flags >> 8),
			Has: sdk.FixFields(flags & 0xff)}
		if f.Fix.Has&sdk.FixAlt != 0 {
			f.Fix.Alt = float64(alt) / 10
		}
		if f.Fix.Has&sdk.FixSpeed != 0 {
			f.Fix.Speed = float64(speed) / 100
		}
		if f.Fix.Has&sdk.FixCourse != 0 {
			f.Fix.Course = float64(course) / 10
		}
		if f.Fix.Has&sdk.FixHDOP != 0 {
			f.Fix.HDOP = float64(hdop) / 100
		}
		if f.Fix.Has&sdk.FixSats != 0 {
			f.Fix.Sats = int(sats)
		}
		out = append(out, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return out, nil
}

// Events returns the truck's events in [from, to) by event time.
func (s *Store) Events(ctx context.Context, truck string, from, to time.Time) ([]dispatch.Event, error) {
	if err := storage.CheckRange(from, to); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT body FROM events WHERE truck = $1 AND t >= $2 AND t < $3 ORDER BY t, store_id, seq`,
		truck, from.UTC(), to.UTC())
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	var out []dispatch.Event
	var raw []byte
	_, err = pgx.ForEachRow(rows, []any{&raw}, func() error {
		var e dispatch.Event
		if err := json.Unmarshal(raw, &e); err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return out, nil
}

// Trucks lists every truck with a status, a fix or an order.
func (s *Store) Trucks(ctx context.Context) ([]storage.Truck, error) {
	rows, err := s.pool.Query(ctx, `SELECT n.truck, st.body, lf.fix FROM
		(SELECT truck FROM statuses UNION SELECT truck FROM last_fixes UNION SELECT DISTINCT truck FROM orders) n
		LEFT JOIN statuses st ON st.truck = n.truck LEFT JOIN last_fixes lf ON lf.truck = n.truck ORDER BY n.truck`)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	var out []storage.Truck
	var name string
	var stRaw, fixRaw []byte
	_, err = pgx.ForEachRow(rows, []any{&name, &stRaw, &fixRaw}, func() error {
		t, err := decodeTruck(name, stRaw, fixRaw)
		out = append(out, t)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return out, nil
}

// Truck reads one truck's status and last fix: two primary-key lookups in one statement.
func (s *Store) Truck(ctx context.Context, name string) (storage.Truck, error) {
	var stRaw, fixRaw []byte
	err := s.pool.QueryRow(ctx, `SELECT (SELECT body FROM statuses WHERE truck = $1),
		(SELECT fix FROM last_fixes WHERE truck = $1)`, name).Scan(&stRaw, &fixRaw)
	if err != nil {
		return storage.Truck{Name: name}, fmt.Errorf("postgres: truck %s: %w", name, err)
	}
	t, err := decodeTruck(name, stRaw, fixRaw)
	if err != nil {
		return storage.Truck{Name: name}, fmt.Errorf("postgres: truck %s: %w", name, err)
	}
	return t, nil
}

// decodeTruck builds a Truck from its stored status and last fix (either may be nil).
func decodeTruck(name string, stRaw, fixRaw []byte) (storage.Truck, error) {
	t := storage.Truck{Name: name}
	if stRaw != nil {
		var w statusWire
		if err := json.Unmarshal(stRaw, &w); err != nil {
			return t, err
		}
		t.Status = &dispatch.Status{Truck: name, Retained: w.Retained, Status: sdk.Status{State: sdk.State(w.State),
			Time: w.Time, Session: w.Session, Health: w.Health, Extra: w.Extra}}
	}
	if fixRaw != nil {
		var f dispatch.Fix
		if err := json.Unmarshal(fixRaw, &f); err != nil {
			return t, err
		}
		t.LastFix = &f
	}
	return t, nil
}

// NoteStatus records the truck's store epoch (reopening its open orders when the store is new, as
// dispatch.Outbox.NoteStore does) and, when it came online, pulls its unconfirmed orders' next attempt in
// to now + OnlineGrace, in the database, so whichever process sends next sends them.
func (s *Store) NoteStatus(ctx context.Context, st dispatch.Status) (*dispatch.StoreChange, error) {
	if st.Status.State != sdk.StateOnline || st.Truck == "" {
		return nil, nil
	}
	now := s.o.Clock().UTC()
	var ch *dispatch.StoreChange
	if h := st.Status.Health; h != nil && h.StoreEpoch != (sdk.Epoch{}) {
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			ch = nil
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "epoch/"+st.Truck); err != nil {
				return err
			}
			var prev []byte
			err := tx.QueryRow(ctx, "SELECT epoch FROM truck_epochs WHERE truck = $1", st.Truck).Scan(&prev)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				_, err = tx.Exec(ctx, "INSERT INTO truck_epochs (truck, epoch) VALUES ($1, $2)", st.Truck, h.StoreEpoch[:])
				return err // the first epoch seen: only recorded
			case err != nil:
				return err
			}
			var p sdk.Epoch
			copy(p[:], prev)
			if p == h.StoreEpoch {
				return nil
			}
			if _, err := tx.Exec(ctx, "UPDATE truck_epochs SET epoch = $2 WHERE truck = $1", st.Truck, h.StoreEpoch[:]); err != nil {
				return err
			}
			ch = &dispatch.StoreChange{Truck: st.Truck, Epoch: h.StoreEpoch, Previous: p, Origin: h.StoreOrigin, Since: h.StoreSince}
			rows, err := tx.Query(ctx, "SELECT body, entry, next_attempt FROM orders WHERE truck = $1 FOR UPDATE", st.Truck)
			if err != nil {
				return err
			}
			var reopened []*dispatch.Entry
			var body, raw []byte
			var next time.Time
			_, err = pgx.ForEachRow(rows, []any{&body, &raw, &next}, func() error {
				e, err := decodeEntry(body, raw, next)
				if err != nil {
					return err
				}
				if e.Reopen(ch, now) {
					reopened = append(reopened, e)
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, e := range reopened {
				if err := putEntry(ctx, tx, e, &now); err != nil {
					return err
				}
			}
			ch.Reopened = len(reopened)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("postgres: store epoch of %s: %w", st.Truck, err)
		}
		if ch != nil {
			s.log.Warn("postgres: a truck's store is new: its open orders are sent again", "truck", st.Truck,
				"reopened", ch.Reopened)
		}
	}
	if st.Changed {
		at := now.Add(s.o.OnlineGrace)
		// Not the orders another process has claimed and may be publishing: their lease stands.
		if _, err := s.pool.Exec(ctx, `UPDATE orders SET next_attempt = $2 WHERE truck = $1 AND open AND next_attempt > $2
			AND (leased_until IS NULL OR leased_until <= $3)`, st.Truck, at, now); err != nil {
			return ch, fmt.Errorf("postgres: kick %s: %w", st.Truck, err)
		}
	}
	if ch != nil || st.Changed {
		s.nudge()
	}
	return ch, nil
}
