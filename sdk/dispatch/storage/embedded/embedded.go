package embedded

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/archive"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
	"github.com/waybill-iot/waybill/store"
)

// OutboxFile is the outbox's name in the data directory (the one `waybill order` uses).
const OutboxFile = "outbox.db"

// Options configure Open.
type Options struct {
	// Dir is the dispatch data directory. Required.
	Dir string
	// Outbox configures the outbox: Certificate and Key (the identity orders are signed with) are
	// required; Path defaults to Dir/outbox.db, StoreOptions.LockTimeout to 10 s.
	Outbox dispatch.OutboxConfig
	// LockTimeout bounds the wait for the archive's file lock. Zero: archive.DefaultTimeout (10 s).
	LockTimeout time.Duration
}

// Store is the embedded engine.
type Store struct {
	arc *archive.Archive
	ob  *dispatch.Outbox
	trk *bolt.DB              // TrackingFile
	oc  dispatch.OutboxConfig // as the outbox got it (Export reads its store)

	// mu guards the fields below.
	mu     sync.Mutex
	last   map[string]*dispatch.Fix // truck -> newest fix by time seen so far
	loaded map[string]bool          // truck -> its archive was read into last
}

var _ storage.Store = (*Store)(nil)

// Open opens (creating) the archive and prepares the outbox.
func Open(o Options) (*Store, error) {
	if o.Dir == "" {
		return nil, errors.New("embedded: Options.Dir is required")
	}
	oc := o.Outbox
	if oc.Path == "" && oc.Store == nil {
		oc.Path = filepath.Join(o.Dir, OutboxFile)
	}
	if oc.StoreOptions.LockTimeout == 0 {
		oc.StoreOptions = store.Options{LockTimeout: 10 * time.Second, Logger: oc.Logger}
	}
	ob, err := dispatch.NewOutbox(oc)
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	arc, err := archive.Open(filepath.Join(o.Dir, archive.File), archive.Options{Timeout: o.LockTimeout})
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	timeout := o.LockTimeout
	if timeout == 0 {
		timeout = archive.DefaultTimeout
	}
	trk, err := openTracking(filepath.Join(o.Dir, TrackingFile), timeout)
	if err != nil {
		arc.Close()
		return nil, err
	}
	return &Store{arc: arc, ob: ob, trk: trk, oc: oc, last: map[string]*dispatch.Fix{}, loaded: map[string]bool{}}, nil
}

// Outbox is the wrapped outbox.
func (s *Store) Outbox() *dispatch.Outbox { return s.ob }

// Close closes the archive and the tracking tokens.
func (s *Store) Close() error { return errors.Join(s.arc.Close(), s.trk.Close()) }

// Commit commits u to the archive and then applies an event to the outbox.
func (s *Store) Commit(ctx context.Context, u dispatch.Update) error {
	if err := s.arc.Commit(ctx, u); err != nil {
		return err
	}
	switch {
	case u.Event != nil:
		ev := u.Event.Event
		if err := s.ob.Apply(ctx, dispatch.TruckEvent{Truck: u.Event.Truck, Event: &ev}); err != nil {
			return fmt.Errorf("embedded: applying an event to the outbox: %w", err)
		}
	case len(u.Fixes) > 0:
		s.noteFixes(u.Fixes)
	}
	return nil
}

func (s *Store) noteFixes(fs []dispatch.Fix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mergeLocked(fs)
}

// mergeLocked keeps the newest of fs (one truck's) as the truck's last fix. Call with mu held.
func (s *Store) mergeLocked(fs []dispatch.Fix) {
	if len(fs) == 0 {
		return
	}
	truck := fs[0].Truck
	cur := s.last[truck]
	for i := range fs {
		if cur == nil || fs[i].Fix.Time.After(cur.Fix.Time) {
			f := fs[i]
			cur = &f
		}
	}
	s.last[truck] = cur
}

func (s *Store) Create(ctx context.Context, o sdk.Order) (dispatch.Entry, error) {
	return s.ob.Create(ctx, o)
}
func (s *Store) Revise(ctx context.Context, o sdk.Order) (dispatch.Entry, error) {
	return s.ob.Revise(ctx, o)
}
func (s *Store) Cancel(ctx context.Context, truck, id, reason string) (dispatch.Entry, error) {
	return s.ob.Cancel(ctx, truck, id, reason)
}
func (s *Store) Order(ctx context.Context, truck, id string) (dispatch.Entry, error) {
	return s.ob.Get(ctx, truck, id)
}
func (s *Store) Orders(ctx context.Context) ([]dispatch.Entry, error) { return s.ob.List(ctx) }

// Track reads the truck's fixes and keeps those in [from, to), by time.
func (s *Store) Track(ctx context.Context, truck string, from, to time.Time) ([]dispatch.Fix, error) {
	if err := storage.CheckRange(from, to); err != nil {
		return nil, err
	}
	all, err := s.arc.Fixes(truck)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, f := range all {
		if !f.Fix.Time.Before(from) && f.Fix.Time.Before(to) {
			out = append(out, f)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Fix.Time.Before(out[j].Fix.Time) })
	return out, ctx.Err()
}

// Events reads the truck's events and keeps those in [from, to), by event time.
func (s *Store) Events(ctx context.Context, truck string, from, to time.Time) ([]dispatch.Event, error) {
	if err := storage.CheckRange(from, to); err != nil {
		return nil, err
	}
	all, err := s.arc.Events(truck)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, e := range all {
		if !e.Event.Time.Before(from) && e.Event.Time.Before(to) {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Event.Time.Before(out[j].Event.Time) })
	return out, ctx.Err()
}

// Trucks lists the archive's trucks and the trucks of orders.
func (s *Store) Trucks(ctx context.Context) ([]storage.Truck, error) {
	names, err := s.arc.Trucks()
	if err != nil {
		return nil, err
	}
	orders, err := s.ob.List(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	for _, e := range orders {
		if !seen[e.Order.Truck] {
			seen[e.Order.Truck] = true
			names = append(names, e.Order.Truck)
		}
	}
	sort.Strings(names)
	out := make([]storage.Truck, 0, len(names))
	for _, n := range names {
		t := storage.Truck{Name: n}
		st, ok, err := s.arc.Status(n)
		if err != nil {
			return nil, err
		}
		if ok {
			t.Status = &st
		}
		if t.LastFix, err = s.lastFix(n); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, ctx.Err()
}

// Truck reads one truck's status from the archive and its last fix from memory (the archive once per
// truck per process, as Trucks does).
func (s *Store) Truck(ctx context.Context, name string) (storage.Truck, error) {
	t := storage.Truck{Name: name}
	st, ok, err := s.arc.Status(name)
	if err != nil {
		return t, err
	}
	if ok {
		t.Status = &st
	}
	if t.LastFix, err = s.lastFix(name); err != nil {
		return storage.Truck{Name: name}, err
	}
	return t, ctx.Err()
}

// lastFix returns the truck's newest fix: read from the archive once, then kept up to date by Commit
// (both merge, so a Commit during the first read is not lost).
func (s *Store) lastFix(truck string) (*dispatch.Fix, error) {
	s.mu.Lock()
	loaded := s.loaded[truck]
	cur := s.last[truck]
	s.mu.Unlock()
	if loaded {
		return cur, nil
	}
	all, err := s.arc.Fixes(truck)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mergeLocked(all)
	s.loaded[truck] = true
	return s.last[truck], nil
}

// NoteStatus records a truck's store epoch and kicks the re-sender when it came online.
func (s *Store) NoteStatus(ctx context.Context, st dispatch.Status) (*dispatch.StoreChange, error) {
	if st.Status.State != sdk.StateOnline {
		return nil, nil
	}
	ch, err := s.ob.NoteStore(ctx, st.Truck, st.Status.Health)
	if err != nil {
		return nil, err
	}
	if st.Changed {
		s.ob.Kick(st.Truck)
	}
	return ch, nil
}

// RunSender is the outbox's re-sender.
func (s *Store) RunSender(ctx context.Context, pub dispatch.Publisher) error {
	return s.ob.Run(ctx, pub)
}
