package storage

import (
	"context"
	"errors"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
)

// Store is the office's durable record. Implementations are safe for concurrent use.
type Store interface {
	// Commit stores a verified update durably (see dispatch.Record). An event is applied to its order in
	// the same step, once: the same event committed again changes nothing.
	dispatch.Record

	// Create stores a new order (revision 1); a repeat with the same content returns the stored entry,
	// other content is dispatch.ErrExists. Revise stores a new revision (Truck and ID name the order).
	// Cancel stores a cancellation; dispatch.ErrClosed when the driver already closed the order.
	Create(ctx context.Context, o sdk.Order) (dispatch.Entry, error)
	Revise(ctx context.Context, o sdk.Order) (dispatch.Entry, error)
	Cancel(ctx context.Context, truck, id, reason string) (dispatch.Entry, error)
	// Order returns one order's entry, or an error wrapping dispatch.ErrNotFound.
	Order(ctx context.Context, truck, id string) (dispatch.Entry, error)
	// Orders returns every order, oldest created first.
	Orders(ctx context.Context) ([]dispatch.Entry, error)

	// TrackingToken returns the order's customer tracking token, creating it (NewTrackingToken) on the
	// first call; the same token after that, from any process. An error wrapping dispatch.ErrNotFound when
	// there is no such order.
	TrackingToken(ctx context.Context, truck, id string) (string, error)
	// Tracked returns the order whose tracking token is token: looked up by TrackingKey(token), then the
	// stored token compared in constant time. An error wrapping dispatch.ErrNotFound for any other string.
	Tracked(ctx context.Context, token string) (dispatch.Entry, error)

	// Track returns a truck's fixes with from <= time < to, in time order.
	Track(ctx context.Context, truck string, from, to time.Time) ([]dispatch.Fix, error)
	// Events returns a truck's events with from <= event time < to, in time order.
	Events(ctx context.Context, truck string, from, to time.Time) ([]dispatch.Event, error)
	// Trucks returns every truck the store knows (sent anything or has orders), sorted by name.
	Trucks(ctx context.Context) ([]Truck, error)
	// Truck returns one truck's latest status and newest fix, without reading the others (the tracking
	// page asks this per request). A truck the store knows nothing of is Truck{Name: name} with neither,
	// not an error.
	Truck(ctx context.Context, name string) (Truck, error)

	// PruneFixes deletes at most limit fixes whose GPS time is before `before`, in one short transaction
	// (an embedded commit waits for one batch at most; PostgreSQL locks only the deleted rows), and returns how many it deleted: fewer than limit when the pass
	// is done (on PostgreSQL, or when the rest is being deleted by another process at that moment). Call
	// it again until it returns fewer. Safe from several processes at once. Only fixes: events (proofs of
	// delivery among them), statuses, orders and tracking tokens are never deleted, nor PostgreSQL's last
	// fix of each truck (the embedded engine keeps that in memory: after a restart Truck has none for a
	// truck whose every fix was pruned). An error wrapping ErrNoPruning when the engine cannot.
	PruneFixes(ctx context.Context, before time.Time, limit int) (int, error)

	// NoteStatus tells the outbox about a verified online status: a new truck store reopens its open
	// orders (dispatch.Outbox.NoteStore), and a truck that came online (st.Changed) gets its unconfirmed
	// orders again after the online grace (dispatch.Outbox.Kick). It returns the store change, if any.
	NoteStatus(ctx context.Context, st dispatch.Status) (*dispatch.StoreChange, error)
	// RunSender re-sends unconfirmed orders on pub until ctx ends (dispatch.Outbox.Run's schedule). It
	// returns nil when ctx ends, after every publish it started returned.
	RunSender(ctx context.Context, pub dispatch.Publisher) error

	// Close releases the store. Call it after RunSender returned.
	Close() error
}

// Truck is what the office knows about one truck.
type Truck struct {
	Name string `json:"name"`
	// Status is the latest verified status; nil when none arrived.
	Status *dispatch.Status `json:"status,omitempty"`
	// LastFix is the newest fix by time; nil when none arrived.
	LastFix *dispatch.Fix `json:"last_fix,omitempty"`
}

// ErrNoPruning is returned by PruneFixes of an engine that cannot delete fixes.
var ErrNoPruning = errors.New("storage: this engine cannot prune fixes")

// ErrBadRange is returned for a time range whose end is not after its start.
var ErrBadRange = errors.New("storage: the range's end is not after its start")

// CheckRange validates a [from, to) range.
func CheckRange(from, to time.Time) error {
	if !to.After(from) {
		return ErrBadRange
	}
	return nil
}

// Change is something one office process committed to a store several processes share, as the others'
// consoles show it live: a truck's newest fix, an order that changed, a truck's status.
type Change struct {
	Kind  ChangeKind `json:"k"`
	Truck string     `json:"t"`
	Order string     `json:"o,omitempty"` // ChangeOrder: the order's id
	Fix   *sdk.Fix   `json:"f,omitempty"` // ChangeFix: the newest fix committed
	// ChangeStatus: whether the truck is online, and the status's time.
	Online bool      `json:"on,omitempty"`
	Time   time.Time `json:"at,omitzero"`
}

// ChangeKind says what a Change is about.
type ChangeKind string

// The kinds of Change.
const (
	ChangeFix    ChangeKind = "fix"
	ChangeOrder  ChangeKind = "order"
	ChangeStatus ChangeKind = "status"
)

// Watcher is a Store several processes share (PostgreSQL), which can tell each what the others commit.
// An engine only one process may open (embedded) is not one: that process sees everything itself.
type Watcher interface {
	// Watch calls fn with each change another process committed, in the order they were announced, until
	// ctx ends; then it returns nil. A lost database connection is logged and listened on again with
	// backoff; what was committed meanwhile is not reported (the console's periodic refresh shows it).
	// fn runs on Watch's goroutine: a slow fn delays the next change.
	Watch(ctx context.Context, fn func(Change)) error
}
