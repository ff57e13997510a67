package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/store"
)

// Publisher is what the re-sender needs from a connection; *transport.Conn has it.
type Publisher interface {
	// Publish sends one message and returns after the broker's acknowledgement (QoS 1).
	Publish(ctx context.Context, topic string, payload []byte, o transport.PublishOptions) error
	// Wait returns once the link is up, or ctx's error.
	Wait(ctx context.Context) error
}

// Run is the re-sender: it publishes every unconfirmed revision (new ones at once, then on a per-order
// jittered exponential backoff, again after a truck comes online, and, for orders last sent by an earlier
// run more than BackoffMin ago, at start) until ctx ends. It returns nil when ctx ends, after every publish
// it started has returned. Only one Run per outbox at a time, and only one process should run the re-sender
// of a shared outbox (see doc.go).
func (o *Outbox) Run(ctx context.Context, pub Publisher) error {
	o.mu.Lock()
	if o.running {
		o.mu.Unlock()
		return errors.New("dispatch: the outbox re-sender is already running")
	}
	o.running, o.started = true, o.cfg.Clock()
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.running = false
		o.mu.Unlock()
	}()

	loop := SendLoop{Round: o.round, Poll: o.cfg.Poll, RetryDelay: o.cfg.RetryDelay, MaxBatch: o.cfg.MaxBatch,
		Clock: o.cfg.Clock,
		Wake: func() <-chan struct{} {
			o.mu.Lock()
			defer o.mu.Unlock()
			return o.wake
		},
		OnError: func(err error) { o.log.Error("dispatch: outbox re-send round failed", "err", err) }}
	if err := loop.Run(ctx, pub); err != nil {
		return fmt.Errorf("dispatch: re-sender: %w", err) // the connection ended for good
	}
	return nil
}

// due reports whether an unconfirmed entry is to be sent now, and when it will be otherwise.
func (o *Outbox) due(e *Entry, now, started time.Time, kicked map[string]time.Time) (bool, time.Time) {
	if !e.NextAttempt.After(now) {
		return true, time.Time{}
	}
	// At start, re-send what an earlier run sent a while ago: it may have died before the confirmation.
	if e.LastSent.Before(started.Add(-o.cfg.BackoffMin)) {
		return true, time.Time{}
	}
	next := e.NextAttempt
	if k, ok := kicked[e.Order.Truck]; ok && e.LastSent.Before(k) {
		at := k.Add(o.cfg.OnlineGrace)
		if !at.After(now) {
			return true, time.Time{}
		}
		if at.Before(next) {
			next = at
		}
	}
	return false, next
}

// round sends up to MaxBatch due revisions and records the outcome. It returns how many it sent and the
// earliest time another one falls due (zero: none waiting).
func (o *Outbox) round(ctx context.Context, pub Publisher) (int, time.Time, error) {
	now := o.cfg.Clock()
	o.mu.Lock()
	started := o.started
	kicked := make(map[string]time.Time, len(o.kicked))
	for k, v := range o.kicked {
		kicked[k] = v
	}
	o.mu.Unlock()

	var items []*Send
	var next time.Time
	var expired []*Entry
	err := o.with(func(st *store.Store) error {
		var due []*Entry
		err := st.ForEach(ordersBucket, func(_, v []byte) error {
			e, err := decodeEntry(v)
			if err != nil {
				o.log.Error("dispatch: unreadable outbox entry skipped", "err", err)
				return nil
			}
			if !e.Unconfirmed() || e.State == StateExpired {
				return nil
			}
			if !now.Before(e.Order.Expires) {
				expired = append(expired, e)
				return nil
			}
			ok, at := o.due(e, now, started, kicked)
			switch {
			case ok:
				due = append(due, e)
			case next.IsZero() || at.Before(next):
				next = at
			}
			return nil
		})
		if err != nil {
			return err
		}
		// Oldest attempts first, so a backlog larger than a batch makes progress for every order.
		sort.SliceStable(due, func(i, j int) bool {
			if !due[i].LastSent.Equal(due[j].LastSent) {
				return due[i].LastSent.Before(due[j].LastSent)
			}
			return due[i].Order.Created.Before(due[j].Order.Created)
		})
		if len(due) > o.cfg.MaxBatch {
			due = due[:o.cfg.MaxBatch]
		}
		if len(due) == 0 && len(expired) == 0 {
			return nil
		}
		var first, last uint64
		err = st.Update(ctx, func(tx *store.Tx) error {
			for _, e := range expired {
				cur, err := getEntry(tx, e.Order.Truck, e.Order.ID)
				if err != nil {
					return err
				}
				if cur == nil || cur.Order.Revision != e.Order.Revision || !cur.Unconfirmed() {
					continue
				}
				cur.State, cur.Updated = StateExpired, now.UTC()
				if err := putEntry(tx, cur); err != nil {
					return err
				}
			}
			if len(due) == 0 {
				return nil
			}
			var err error
			first, last, err = o.seq.reserve(tx, len(due), now)
			return err
		})
		if err != nil {
			return err
		}
		if len(due) > 0 {
			o.seq.use(first, last)
		}
		for _, e := range due {
			topic, err := o.cfg.Topics.Order(e.Order.Truck, e.Order.ID)
			if err != nil {
				return err
			}
			// Signed at every send: a fresh envelope (time, sequence number), the same message id and body.
			payload, err := o.signer.SignOrder(&e.Order)
			if err != nil {
				return fmt.Errorf("dispatch: sign order %s/%s: %w", e.Order.Truck, e.Order.ID, err)
			}
			items = append(items, &Send{Entry: e, Topic: topic, Payload: payload})
		}
		return nil
	})
	for _, e := range expired {
		o.log.Warn("dispatch: order expired before the truck confirmed it; no longer sent",
			"truck", e.Order.Truck, "order", e.Order.ID, "revision", e.Order.Revision, "expires", e.Order.Expires)
	}
	if err != nil || len(items) == 0 {
		return 0, next, err
	}

	PublishAll(ctx, pub, items, o.cfg.MaxInFlight, o.cfg.PublishTimeout)
	if err := o.record(items); err != nil {
		return len(items), next, err
	}
	failed := 0
	for _, it := range items {
		if it.Err != nil {
			failed++
		}
	}
	o.log.Info("dispatch: orders sent", "sent", len(items)-failed, "failed", failed)
	return len(items), next, nil
}

// record writes each item's outcome: a send acknowledged by the broker moves the order's next attempt out by
// the backoff; a failed one is retried after RetryDelay. It is written even when ctx has ended.
func (o *Outbox) record(items []*Send) error {
	now := o.cfg.Clock().UTC()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return o.with(func(st *store.Store) error {
		return st.Update(ctx, func(tx *store.Tx) error {
			for _, it := range items {
				e := it.Entry
				cur, err := getEntry(tx, e.Order.Truck, e.Order.ID)
				if err != nil {
					return err
				}
				if cur == nil || cur.Order.Revision != e.Order.Revision {
					continue // revised meanwhile: the new revision has its own schedule
				}
				if it.Err != nil {
					cur.LastError = it.Err.Error()
					cur.NextAttempt = now.Add(o.cfg.RetryDelay)
				} else {
					cur.Sends++
					cur.LastSent, cur.LastError = now, ""
					cur.NextAttempt = now.Add(Backoff(cur.Sends, o.cfg.BackoffMin, o.cfg.BackoffMax))
				}
				cur.Updated = now
				if err := putEntry(tx, cur); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// Pending reports how many orders wait for the truck's confirmation (not expired).
func (o *Outbox) Pending(ctx context.Context) (int, error) {
	list, err := o.List(ctx)
	n := 0
	for i := range list {
		if list[i].Unconfirmed() && list[i].State != StateExpired {
			n++
		}
	}
	return n, err
}

var _ Publisher = (*transport.Conn)(nil)
var _ sdk.Sequencer = (*reservedSeq)(nil)
