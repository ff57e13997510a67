package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
)

// RunSender re-sends unconfirmed orders until ctx ends (see doc.go, Coordination). Any number of
// processes may run it on one database; one per Store.
func (s *Store) RunSender(ctx context.Context, pub dispatch.Publisher) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("postgres: the sender is already running")
	}
	s.running = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()
	loop := dispatch.SendLoop{Round: s.round, Poll: s.o.Poll, RetryDelay: s.o.RetryDelay, MaxBatch: s.o.MaxBatch,
		Clock: s.o.Clock,
		Wake: func() <-chan struct{} {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.wake
		},
		OnError: func(err error) { s.log.Error("postgres: order send round failed", "err", err) }}
	if err := loop.Run(ctx, pub); err != nil {
		return fmt.Errorf("postgres: sender: %w", err)
	}
	return nil
}

// round claims up to MaxBatch due orders (SKIP LOCKED, then a lease), publishes them and records the
// outcome. It returns how many it sent and when the next open order falls due (zero: none).
func (s *Store) round(ctx context.Context, pub dispatch.Publisher) (int, time.Time, error) {
	now := s.o.Clock().UTC()
	lease := now.Add(s.o.PublishTimeout + s.o.RetryDelay)
	var items []*dispatch.Send
	var expired int
	if err := ctx.Err(); err != nil {
		return 0, time.Time{}, err
	}
	// The claim is not cut off by ctx: a COMMIT cancelled in flight may still commit on the server, leaving
	// leases this process would never publish or record (the orders would wait out the lease).
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := pgx.BeginFunc(cctx, s.pool, func(tx pgx.Tx) error {
		ctx := cctx
		items, expired = items[:0], 0
		rows, err := tx.Query(ctx, `SELECT body, entry, next_attempt FROM orders WHERE open AND next_attempt <= $1
			ORDER BY next_attempt LIMIT $2 FOR UPDATE SKIP LOCKED`, now, s.o.MaxBatch)
		if err != nil {
			return err
		}
		var due []*dispatch.Entry
		var body, raw []byte
		var next time.Time
		_, err = pgx.ForEachRow(rows, []any{&body, &raw, &next}, func() error {
			e, err := decodeEntry(body, raw, next)
			if err != nil {
				s.log.Error("postgres: unreadable order skipped", "err", err)
				return nil
			}
			due = append(due, e)
			return nil
		})
		if err != nil {
			return err
		}
		var send []*dispatch.Entry
		for _, e := range due {
			if !now.Before(e.Order.Expires) {
				e.State, e.Updated = dispatch.StateExpired, now
				if err := putEntry(ctx, tx, e, &now); err != nil {
					return err
				}
				expired++
				continue
			}
			if err := leaseEntry(ctx, tx, e, lease); err != nil { // the lease: others skip it until then
				return err
			}
			send = append(send, e)
		}
		if len(send) == 0 {
			return nil
		}
		first, last, err := s.seq.reserve(ctx, tx, s.signer.Identity().Name, len(send), now)
		if err != nil {
			return err
		}
		s.seq.use(first, last)
		for _, e := range send {
			topic, err := s.o.Topics.Order(e.Order.Truck, e.Order.ID)
			if err != nil {
				return err
			}
			payload, err := s.signer.SignOrder(&e.Order)
			if err != nil {
				return fmt.Errorf("sign order %s/%s: %w", e.Order.Truck, e.Order.ID, err)
			}
			items = append(items, &dispatch.Send{Entry: e, Topic: topic, Payload: payload})
		}
		return nil
	})
	if err != nil {
		return 0, time.Time{}, err
	}
	if expired > 0 {
		s.log.Warn("postgres: orders expired before the truck confirmed them; no longer sent", "orders", expired)
	}
	if len(items) > 0 {
		dispatch.PublishAll(ctx, pub, items, s.o.MaxInFlight, s.o.PublishTimeout)
		if err := s.record(items); err != nil {
			return len(items), time.Time{}, err
		}
	}
	var next *time.Time
	if err := s.pool.QueryRow(ctx, "SELECT min(next_attempt) FROM orders WHERE open").Scan(&next); err != nil {
		return len(items), time.Time{}, err
	}
	if next == nil {
		return len(items), time.Time{}, nil
	}
	return len(items), *next, nil
}

// record writes each send's outcome, even after ctx ended (bounded): a revision changed meanwhile keeps
// its own schedule.
func (s *Store) record(items []*dispatch.Send) error {
	now := s.o.Clock().UTC()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, it := range items {
			e := it.Entry
			cur, err := getEntry(ctx, tx, e.Order.Truck, e.Order.ID, true)
			if err != nil {
				return err
			}
			if cur == nil || cur.Order.Revision != e.Order.Revision {
				continue
			}
			var next time.Time
			if it.Err != nil {
				cur.LastError = it.Err.Error()
				next = now.Add(s.o.RetryDelay)
			} else {
				cur.Sends++
				cur.LastSent, cur.LastError = now, ""
				next = now.Add(dispatch.Backoff(cur.Sends, s.o.BackoffMin, s.o.BackoffMax))
			}
			if !cur.Unconfirmed() {
				next = now // confirmed while we sent: open is false, the time does not matter
			}
			cur.Updated = now
			if err := putEntry(ctx, tx, cur, &next); err != nil {
				return err
			}
		}
		return nil
	})
}

// reservedSeq hands out envelope sequence numbers reserved in the database (signer_seq) per identity, so
// they keep increasing across restarts and across processes signing as one identity.
type reservedSeq struct {
	mu         sync.Mutex
	next, last uint64 // guarded by mu
}

func (r *reservedSeq) Next(t sdk.MsgType) (uint64, error) {
	if t != sdk.MsgOrder {
		return 0, fmt.Errorf("postgres: the order signer signs only orders, not %s", t)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next == 0 || r.next > r.last {
		return 0, errors.New("postgres: no reserved sequence numbers left")
	}
	n := r.next
	r.next++
	return n, nil
}

// reserve takes n numbers for identity in tx, starting no lower than the clock in microseconds (so an
// identity that signed with a clock-based sequencer before does not fall behind).
func (r *reservedSeq) reserve(ctx context.Context, tx pgx.Tx, identity string, n int, now time.Time) (first, last uint64, err error) {
	var l int64
	err = tx.QueryRow(ctx, `INSERT INTO signer_seq (identity, last) VALUES ($1, $2::bigint + $3::bigint)
		ON CONFLICT (identity) DO UPDATE SET last = greatest(signer_seq.last, $2::bigint) + $3::bigint RETURNING last`,
		identity, now.UnixMicro(), int64(n)).Scan(&l)
	if err != nil {
		return 0, 0, err
	}
	return uint64(l) - uint64(n) + 1, uint64(l), nil
}

func (r *reservedSeq) use(first, last uint64) {
	r.mu.Lock()
	r.next, r.last = first, last
	r.mu.Unlock()
}
