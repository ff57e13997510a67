package dispatch

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	"github.com/waybill-iot/waybill/sdk"
)

// State is where an order stands, as far as dispatch knows from the truck's verified events.
type State string

const (
	StatePending   State = "pending"   // the current revision is not confirmed by the truck yet
	StateReceived  State = "received"  // the truck confirmed the current revision
	StateArrived   State = "arrived"   // the truck reached the destination's arrival radius
	StateDelivered State = "delivered" // the driver confirmed delivery
	StateFailed    State = "failed"    // the driver could not deliver (LastEvent.Reason says why)
	StateProblem   State = "problem"   // the driver reported a problem
	StateCancelled State = "cancelled" // the truck confirmed the cancellation
	// StateConflict: the truck refused a cancellation because the driver had already closed the order, and
	// the outbox has not yet heard whether it was delivered or failed. Once that event arrives the state is
	// delivered or failed again, with CancelRefused set: the delivery is what happened.
	StateConflict State = "conflict"
	StateExpired  State = "expired" // expired before the truck confirmed it: no longer sent
)

// EventInfo is the last event the outbox applied to an order.
type EventInfo struct {
	Kind     sdk.EventKind `json:"kind"`
	Revision uint32        `json:"revision"`
	Time     time.Time     `json:"time"` // when it happened on the truck
	Reason   string        `json:"reason,omitempty"`
	Via      sdk.Via       `json:"via"`
	OffSite  bool          `json:"off_site,omitempty"`
	Conflict bool          `json:"conflict,omitempty"`
	Fix      *sdk.Fix      `json:"fix,omitempty"`
}

// Entry is one order in the outbox: its current revision and what the truck said about it.
type Entry struct {
	Order sdk.Order     `json:"order"` // the current (highest) revision, as signed
	Hash  sdk.OrderHash `json:"hash"`  // its OrderHash: the truck's received event must carry it
	State State         `json:"state"`
	// Confirmed is the highest revision the truck confirmed with a signed received event (0: none).
	Confirmed   uint32    `json:"confirmed"`
	ConfirmedAt time.Time `json:"confirmed_at,omitzero"`
	// Sends counts publishes of the current revision that the broker acknowledged; it drives the backoff.
	Sends       int        `json:"sends"`
	LastSent    time.Time  `json:"last_sent,omitzero"`
	NextAttempt time.Time  `json:"next_attempt,omitzero"` // zero: as soon as possible
	LastError   string     `json:"last_error,omitempty"`  // why the last publish failed, if it did
	LastEvent   *EventInfo `json:"last_event,omitempty"`
	Note        string     `json:"note,omitempty"` // anything odd, for people (a hash mismatch, a newer revision)
	Updated     time.Time  `json:"updated"`
	// Awaiting, when not zero, is the truck's new store epoch whose received event the revision waits for
	// (Outbox.NoteStore reopened it): a received event from an older store (a salvaged store re-sends its
	// old records) does not confirm it.
	Awaiting sdk.Epoch `json:"awaiting,omitzero"`
	// CancelRefused records that a cancellation came too late: the driver had delivered (or failed) the
	// order before it reached the truck, which answered with a conflict. State keeps what the driver did,
	// so the delivery stays visible; this says that a later cancel was refused.
	CancelRefused bool `json:"cancel_refused,omitempty"`
}

// StateText is State for people, saying when a cancellation came too late: "delivered (cancel refused)",
// so a list shows both what the driver did and that the later cancel did not take effect.
func (e *Entry) StateText() string {
	s := string(e.State)
	if e.CancelRefused && e.State != StateConflict {
		s += " (cancel refused)"
	}
	if e.State == StateConflict {
		s += " (cancel refused: delivered or failed on the truck)"
	}
	return s
}

// Unconfirmed reports whether the current revision still waits for the truck's received event.
func (e *Entry) Unconfirmed() bool { return e.Confirmed < e.Order.Revision }

// entryWire is the stored form. The order is kept as its signed body bytes, so the hash is exact and the
// order decodes exactly as the truck decodes it.
type entryWire struct {
	Body        []byte     `json:"body"`
	State       State      `json:"state"`
	Confirmed   uint32     `json:"confirmed,omitempty"`
	ConfirmedAt time.Time  `json:"confirmed_at,omitzero"`
	Sends       int        `json:"sends,omitempty"`
	LastSent    time.Time  `json:"last_sent,omitzero"`
	NextAttempt time.Time  `json:"next_attempt,omitzero"`
	LastError   string     `json:"last_error,omitempty"`
	LastEvent   *EventInfo `json:"last_event,omitempty"`
	Note        string     `json:"note,omitempty"`
	Updated     time.Time  `json:"updated"`
	Awaiting    []byte     `json:"awaiting,omitempty"`
	Refused     bool       `json:"cancel_refused,omitempty"`
}

func encodeEntry(e *Entry) ([]byte, error) {
	body, err := e.Order.MarshalBody()
	if err != nil {
		return nil, err
	}
	return json.Marshal(entryWire{Body: body, State: e.State, Confirmed: e.Confirmed, ConfirmedAt: e.ConfirmedAt,
		Sends: e.Sends, LastSent: e.LastSent, NextAttempt: e.NextAttempt, LastError: e.LastError,
		LastEvent: e.LastEvent, Note: e.Note, Updated: e.Updated, Awaiting: awaitingWire(e.Awaiting),
		Refused: e.CancelRefused})
}

func awaitingWire(e sdk.Epoch) []byte {
	if e == (sdk.Epoch{}) {
		return nil
	}
	return e[:]
}

func decodeEntry(b []byte) (*Entry, error) {
	var w entryWire
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("dispatch: outbox entry: %w", err)
	}
	o, err := sdk.UnmarshalOrder(w.Body)
	if err != nil {
		return nil, fmt.Errorf("dispatch: outbox entry: %w", err)
	}
	e := &Entry{Order: *o, Hash: sha256.Sum256(w.Body), State: w.State, Confirmed: w.Confirmed,
		ConfirmedAt: w.ConfirmedAt, Sends: w.Sends, LastSent: w.LastSent, NextAttempt: w.NextAttempt,
		LastError: w.LastError, LastEvent: w.LastEvent, Note: w.Note, Updated: w.Updated, CancelRefused: w.Refused}
	copy(e.Awaiting[:], w.Awaiting)
	return e, nil
}

// DefaultRadiusM is the arrival radius, in metres, of an order created without one (the office API and
// `waybill order create`): with 0 the truck would never see itself arrive, and every proof would be off site.
const DefaultRadiusM = 100

// NormalizeOrder returns the order exactly as the truck will decode it (times in UTC milliseconds,
// coordinates at 1e-7 degree), so an outbox (this package's or another engine's) shows what was signed.
func NormalizeOrder(o sdk.Order) (sdk.Order, error) {
	body, err := o.MarshalBody()
	if err != nil {
		return sdk.Order{}, err
	}
	n, err := sdk.UnmarshalOrder(body)
	if err != nil {
		return sdk.Order{}, err
	}
	return *n, nil
}

// SameContent reports whether two orders say the same thing to the driver (times aside): creating an order
// again with the same content is a repeat, with other content a conflict.
func SameContent(a, b *sdk.Order) bool {
	return a.Truck == b.Truck && a.ID == b.ID && a.Recipient == b.Recipient && a.Address == b.Address &&
		a.Lat == b.Lat && a.Lon == b.Lon && a.RadiusM == b.RadiusM && a.Notes == b.Notes && a.Status == b.Status
}

func entryKey(truck, id string) []byte { return []byte(truck + "/" + id) }
