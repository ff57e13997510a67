package postgres

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
)

// Options configure Open. DSN, Certificate and Key are required; the durations take the outbox's
// defaults (dispatch.Default*) when zero.
type Options struct {
	// DSN is the PostgreSQL connection string (libpq keywords or a postgres:// URL).
	DSN string
	// Certificate and Key are this process's dispatch identity: orders it sends are signed with it.
	Certificate *x509.Certificate
	Key         crypto.Signer
	// Topics gives the topic prefix. Zero: sdk.DefaultPrefix.
	Topics sdk.Topics
	// Clock is the time for orders, schedules and signatures. Nil: time.Now.
	Clock func() time.Time
	// BackoffMin, BackoffMax, OnlineGrace, Poll, RetryDelay, MaxInFlight, MaxBatch and PublishTimeout mean
	// what they mean in dispatch.OutboxConfig (zero: its defaults; OnlineGrace negative: at once).
	BackoffMin, BackoffMax time.Duration
	OnlineGrace            time.Duration
	Poll                   time.Duration
	RetryDelay             time.Duration
	MaxInFlight, MaxBatch  int
	PublishTimeout         time.Duration
	// MaxConns bounds the pool's connections. Zero: 8.
	MaxConns int32
	// Logger; nil discards.
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.DSN == "" {
		return o, errors.New("postgres: Options.DSN is required")
	}
	if o.Certificate == nil || o.Key == nil {
		return o, errors.New("postgres: Options.Certificate and Key (the dispatch identity that signs orders) are required")
	}
	if err := o.Topics.Validate(); err != nil {
		return o, err
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.BackoffMin, dispatch.DefaultBackoffMin)
	def(&o.BackoffMax, dispatch.DefaultBackoffMax)
	o.BackoffMax = max(o.BackoffMax, o.BackoffMin)
	if o.OnlineGrace == 0 {
		o.OnlineGrace = dispatch.DefaultOnlineGrace
	}
	o.OnlineGrace = max(o.OnlineGrace, 0)
	def(&o.Poll, dispatch.DefaultPoll)
	def(&o.RetryDelay, dispatch.DefaultRetryDelay)
	def(&o.PublishTimeout, dispatch.DefaultPublishTimeout)
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = dispatch.DefaultMaxInFlight
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = dispatch.DefaultMaxBatch
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 8
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Store is the PostgreSQL engine.
type Store struct {
	o      Options
	pool   *pgxpool.Pool
	signer *sdk.Signer
	seq    *reservedSeq
	log    *slog.Logger
	id     string // this process, in the changes it announces (watch.go)

	// mu guards the fields below.
	mu      sync.Mutex
	stores  map[storeKey]int32 // (truck, epoch) -> stores.id
	wake    chan struct{}      // closed and replaced to wake the sender
	running bool
}

type storeKey struct {
	truck string
	epoch sdk.Epoch
}

var _ storage.Store = (*Store)(nil)

// Open connects, runs the migrations and prepares the signer. It fails when the database cannot be
// reached within ctx.
func Open(ctx context.Context, o Options) (*Store, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres: DSN: %w", err)
	}
	pc.MaxConns = o.MaxConns
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	seq := &reservedSeq{}
	signer, err := sdk.NewSigner(sdk.SignerConfig{Certificate: o.Certificate, Key: o.Key, Sequencer: seq, Clock: o.Clock})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return &Store{o: o, pool: pool, signer: signer, seq: seq, log: o.Logger, id: newProcessID(), stores: map[storeKey]int32{},
		wake: make(chan struct{})}, nil
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Pool is the connection pool (for tools and tests).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

func (s *Store) nudge() {
	s.mu.Lock()
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()
}

// storeID returns the id of (truck, epoch), creating the row in tx when needed.
func (s *Store) storeID(ctx context.Context, tx pgx.Tx, truck string, e sdk.Epoch) (int32, error) {
	k := storeKey{truck, e}
	s.mu.Lock()
	id, ok := s.stores[k]
	s.mu.Unlock()
	if ok {
		return id, nil
	}
	err := tx.QueryRow(ctx, `INSERT INTO stores (truck, epoch) VALUES ($1, $2)
		ON CONFLICT (truck, epoch) DO UPDATE SET truck = excluded.truck RETURNING id`, truck, e[:]).Scan(&id)
	if err != nil {
		return 0, err
	}
	return id, nil // cached by the caller once the transaction committed (a rolled-back id is not real)
}

func (s *Store) cacheStore(truck string, e sdk.Epoch, id int32) {
	s.mu.Lock()
	s.stores[storeKey{truck, e}] = id
	s.mu.Unlock()
}

// Commit stores u in one transaction (durable at commit: synchronous_commit is PostgreSQL's default).
func (s *Store) Commit(ctx context.Context, u dispatch.Update) error {
	var err error
	var c *storage.Change // what the other processes' consoles are told
	switch {
	case len(u.Fixes) > 0:
		var added int64
		var newest int
		if added, newest, err = s.commitFixes(ctx, u.Fixes); added > 0 {
			f := u.Fixes[newest]
			c = &storage.Change{Kind: storage.ChangeFix, Truck: f.Truck, Fix: &f.Fix}
		}
	case u.Event != nil:
		if err = s.commitEvent(ctx, u.Event); u.Event.Event.OrderID != "" {
			c = &storage.Change{Kind: storage.ChangeOrder, Truck: u.Event.Truck, Order: u.Event.Event.OrderID}
		}
	case u.Status != nil:
		var written bool
		if written, err = s.upsertStatus(ctx, u.Status, true); written {
			c = &storage.Change{Kind: storage.ChangeStatus, Truck: u.Status.Truck,
				Online: u.Status.Status.State == sdk.StateOnline, Time: u.Status.Status.Time}
		}
	}
	if err != nil {
		return fmt.Errorf("postgres: commit: %w", err)
	}
	if c != nil {
		s.announce(ctx, *c)
	}
	return nil
}

func q(v, scale float64) int64 { return int64(math.Round(v * scale)) }

// commitFixes stores fs (one truck's) and returns how many were new, and the index of the newest by time.
func (s *Store) commitFixes(ctx context.Context, fs []dispatch.Fix) (added int64, newest int, _ error) {
	truck := fs[0].Truck
	if truck == "" {
		return 0, 0, errors.New("an update without a truck")
	}
	type key = storeKey
	var ids = map[key]int32{}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		n := len(fs)
		seq, sid := make([]int64, n), make([]int32, n)
		ts := make([]time.Time, n)
		lat, lon, alt, speed := make([]int32, n), make([]int32, n), make([]int32, n), make([]int32, n)
		course, hdop, sats, flags := make([]int16, n), make([]int16, n), make([]int16, n), make([]int16, n)
		newest = 0
		for i, f := range fs {
			if f.Truck != truck {
				return fmt.Errorf("one update with fixes of %q and %q", truck, f.Truck)
			}
			k := key{f.Truck, f.Epoch}
			id, ok := ids[k]
			if !ok {
				var err error
				if id, err = s.storeID(ctx, tx, f.Truck, f.Epoch); err != nil {
					return err
				}
				ids[k] = id
			}
			x := f.Fix
			seq[i], sid[i], ts[i] = int64(f.Seq), id, x.Time.UTC()
			lat[i], lon[i] = int32(q(x.Lat, 1e6)), int32(q(x.Lon, 1e6))
			alt[i], speed[i] = int32(q(x.Alt, 10)), int32(q(x.Speed, 100))
			course[i], hdop[i], sats[i] = int16(q(x.Course, 10)), int16(q(x.HDOP, 100)), int16(x.Sats)
			flags[i] = int16(x.Mode)<<8 | int16(x.Has)
			if x.Time.After(fs[newest].Fix.Time) {
				newest = i
			}
		}
		added = 0
		tag, err := tx.Exec(ctx, `INSERT INTO fixes (seq, t, store_id, lat, lon, alt, speed, course, hdop, sats, flags)
			SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::int[], $4::int[], $5::int[], $6::int[],
				$7::int[], $8::smallint[], $9::smallint[], $10::smallint[], $11::smallint[])
			ON CONFLICT (store_id, t, seq) DO NOTHING`,
			seq, ts, sid, lat, lon, alt, speed, course, hdop, sats, flags)
		if err != nil {
			return err
		}
		added = tag.RowsAffected()
		last, err := json.Marshal(fs[newest])
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO last_fixes (truck, t, fix) VALUES ($1, $2, $3)
			ON CONFLICT (truck) DO UPDATE SET t = excluded.t, fix = excluded.fix WHERE last_fixes.t < excluded.t`,
			truck, fs[newest].Fix.Time.UTC(), last)
		return err
	})
	if err == nil {
		for k, id := range ids {
			s.cacheStore(k.truck, k.epoch, id)
		}
	}
	return added, newest, err
}

func (s *Store) commitEvent(ctx context.Context, ev *dispatch.Event) error {
	if ev.Truck == "" {
		return errors.New("an event without a truck")
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	now := s.o.Clock().UTC()
	var id int32
	var note string
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		note = ""
		var err error
		if id, err = s.storeID(ctx, tx, ev.Truck, ev.Event.Epoch); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO events (store_id, seq, t, truck, order_id, body) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (store_id, seq, t) DO NOTHING`,
			id, int64(ev.Event.RecordSeq), ev.Event.Time.UTC(), ev.Truck, ev.Event.OrderID, body)
		if err != nil || tag.RowsAffected() == 0 || ev.Event.Kind.IsTrip() {
			return err // stored before (applied then), or a movement event: it names no order
		}
		e, err := getEntry(ctx, tx, ev.Truck, ev.Event.OrderID, true)
		if err != nil || e == nil {
			return err
		}
		x := ev.Event
		changed, n := e.ApplyEvent(&x, now)
		note = n
		if !changed {
			return nil
		}
		e.Updated = now
		return putEntry(ctx, tx, e, nil)
	})
	if note != "" {
		s.log.Warn("postgres: event does not match the outbox", "truck", ev.Truck, "order", ev.Event.OrderID, "detail", note)
	}
	if err == nil {
		s.cacheStore(ev.Truck, ev.Event.Epoch, id)
	}
	return err
}

// statusWire is a status as stored: sdk.State has no text decoding, so the state is its number.
type statusWire struct {
	State    uint8             `json:"state"`
	Time     time.Time         `json:"time"`
	Session  time.Time         `json:"session,omitzero"`
	Health   *sdk.Health       `json:"health,omitempty"`
	Extra    map[string]string `json:"extra,omitempty"`
	Retained bool              `json:"retained,omitempty"`
}

// upsertStatus stores a truck's status unless the stored one is newer (sdk.Status.Newer, as a row
// comparison of its OrderKey: a connection's will ends it although it was signed first); ties replace the
// stored one when orEqual. It reports whether the row was written.
func (s *Store) upsertStatus(ctx context.Context, st *dispatch.Status, orEqual bool) (bool, error) {
	if st.Truck == "" {
		return false, errors.New("a status without a truck")
	}
	body, err := json.Marshal(statusWire{State: uint8(st.Status.State), Time: st.Status.Time, Session: st.Status.Session,
		Health: st.Status.Health, Extra: st.Status.Extra, Retained: st.Retained})
	if err != nil {
		return false, err
	}
	cmp := "<"
	if orEqual {
		cmp = "<="
	}
	session, offline, tms := st.Status.OrderKey()
	tag, err := s.pool.Exec(ctx, `INSERT INTO statuses (truck, t, body, session_ms, offline, t_ms) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (truck) DO UPDATE SET t = excluded.t, body = excluded.body, session_ms = excluded.session_ms,
			offline = excluded.offline, t_ms = excluded.t_ms
		WHERE (statuses.session_ms, statuses.offline, statuses.t_ms) `+cmp+` (excluded.session_ms, excluded.offline, excluded.t_ms)`,
		st.Truck, st.Status.Time.UTC(), body, session, offline, tms)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// entryWire is dispatch.Entry as stored in orders.entry; the order itself is orders.body.
type entryWire = dispatch.Entry

// getEntry reads an order; lock takes a row lock (FOR UPDATE). nil without error: no such order.
func getEntry(ctx context.Context, tx pgx.Tx, truck, id string, lock bool) (*dispatch.Entry, error) {
	sql := `SELECT body, entry, next_attempt FROM orders WHERE truck = $1 AND id = $2`
	if lock {
		sql += " FOR UPDATE"
	}
	var body, raw []byte
	var next time.Time
	err := tx.QueryRow(ctx, sql, truck, id).Scan(&body, &raw, &next)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeEntry(body, raw, next)
}

func decodeEntry(body, raw []byte, next time.Time) (*dispatch.Entry, error) {
	var e entryWire
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, fmt.Errorf("order entry: %w", err)
	}
	o, err := sdk.UnmarshalOrder(body)
	if err != nil {
		return nil, fmt.Errorf("order entry: %w", err)
	}
	e.Order, e.Hash, e.NextAttempt = *o, sha256.Sum256(body), next.UTC()
	return &e, nil
}

// putEntry writes e; next, when not nil, is its next attempt (otherwise e.NextAttempt, zero: now).
func putEntry(ctx context.Context, tx pgx.Tx, e *dispatch.Entry, next *time.Time) error {
	return writeEntry(ctx, tx, e, next, nil)
}

// leaseEntry writes a claimed order: next_attempt and leased_until are the lease's end, so that neither
// other senders (next_attempt) nor a truck coming online (leased_until) bring it forward meanwhile.
func leaseEntry(ctx context.Context, tx pgx.Tx, e *dispatch.Entry, lease time.Time) error {
	return writeEntry(ctx, tx, e, &lease, &lease)
}

// writeEntry writes an order; every write but a claim ends its lease (leased nil).
func writeEntry(ctx context.Context, tx pgx.Tx, e *dispatch.Entry, next, leased *time.Time) error {
	body, err := e.Order.MarshalBody()
	if err != nil {
		return err
	}
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	at := e.NextAttempt
	if next != nil {
		at = *next
	}
	if at.IsZero() {
		at = e.Updated
	}
	open := e.Unconfirmed() && e.State != dispatch.StateExpired
	var lease *time.Time
	if leased != nil {
		l := leased.UTC()
		lease = &l
	}
	_, err = tx.Exec(ctx, `INSERT INTO orders (truck, id, created, body, entry, open, next_attempt, leased_until)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (truck, id) DO UPDATE SET body = excluded.body, entry = excluded.entry, open = excluded.open,
			next_attempt = excluded.next_attempt, leased_until = excluded.leased_until`,
		e.Order.Truck, e.Order.ID, e.Order.Created, body, raw, open, at.UTC(), lease)
	return err
}
