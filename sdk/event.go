package sdk

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"
)

// EventKind is what happened to an order (received .. problem), or to the truck itself (trip_start,
// trip_end, stop: movement events, not about any order).
type EventKind uint8

const (
	_              EventKind = iota
	EventReceived            // the truck verified and stored the order revision
	EventArrived             // the truck reached the destination's arrival radius
	EventDelivered           // the driver confirmed delivery
	EventFailed              // the driver could not deliver; Reason says why
	EventProblem             // the driver reports a problem; Reason says what
	// EventTripStart: the truck started moving after standing long enough to end a trip (with an ignition
	// input: the ignition was switched on; Time is that change, Fix the latest fix). Fix is where, Odometer
	// the reading there.
	EventTripStart
	// EventTripEnd: the truck has stood still long enough to end its trip (with an ignition input: the
	// ignition was switched off; Time is that change, Fix the latest fix). Time and Fix are when and where
	// it stopped; Distance and Duration cover the trip from its start to that stop, Idle the stops inside it.
	EventTripEnd
	// EventStop: the truck moved again after a stop inside a trip (a delivery, a queue); Time and Fix are when
	// and where the stop began, Duration how long it stood (idle time: without an ignition input the agent
	// cannot tell an engine left running from one switched off).
	EventStop
)

var eventKindNames = [...]string{EventReceived: "received", EventArrived: "arrived", EventDelivered: "delivered",
	EventFailed: "failed", EventProblem: "problem", EventTripStart: "trip_start", EventTripEnd: "trip_end",
	EventStop: "stop"}

// IsTrip reports whether the kind is a movement event (trip_start, trip_end, stop), about no order.
func (k EventKind) IsTrip() bool { return k >= EventTripStart && k <= EventStop }

func (k EventKind) String() string {
	if k >= EventReceived && k <= EventStop {
		return eventKindNames[k]
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

func (k EventKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

func (k *EventKind) UnmarshalText(b []byte) error {
	for i, n := range eventKindNames {
		if i > 0 && n == string(b) {
			*k = EventKind(i)
			return nil
		}
	}
	return fmt.Errorf("sdk: unknown event kind %q", b)
}

// Via is how the driver's action was given.
type Via uint8

const (
	ViaAuto   Via = iota // by the agent itself (received, arrived)
	ViaButton            // a hardware button
	ViaScreen            // a tap on the driver page
	ViaHTTP              // the agent's local HTTP hook
)

var viaNames = [...]string{ViaAuto: "auto", ViaButton: "button", ViaScreen: "screen", ViaHTTP: "http"}

func (v Via) String() string {
	if int(v) < len(viaNames) {
		return viaNames[v]
	}
	return fmt.Sprintf("via(%d)", uint8(v))
}

func (v Via) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

func (v *Via) UnmarshalText(b []byte) error {
	for i, n := range viaNames {
		if n == string(b) {
			*v = Via(i)
			return nil
		}
	}
	return fmt.Errorf("sdk: unknown via %q", b)
}

// Epoch identifies one truck store's lifetime (8 random bytes made when the store is created). Together with
// a record's sequence number in that store it names a fix or an event for good: re-sent after a crash, in a
// differently cut batch or envelope, it keeps the same (truck, epoch, record seq).
type Epoch [8]byte

func (e Epoch) MarshalText() ([]byte, error) { return hexText(e[:]), nil }

// EpochOf is the Epoch of a store's epoch number (store.Store.Epoch), big-endian.
func EpochOf(n uint64) Epoch {
	var e Epoch
	binary.BigEndian.PutUint64(e[:], n)
	return e
}

// UnmarshalText reads the hex form MarshalText writes.
func (e *Epoch) UnmarshalText(b []byte) error { return unhexText(e[:], b) }

// Event is a delivery event from a truck: a signed proof of what the driver did, where and when; or a
// movement event (Kind.IsTrip: trip_start, trip_end, stop), which names no order (OrderID empty, Revision 0)
// and carries the odometer, a distance and durations instead.
type Event struct {
	Kind      EventKind `json:"kind"`
	Epoch     Epoch     `json:"epoch"`      // the truck store's epoch
	RecordSeq uint64    `json:"record_seq"` // the event's record sequence number in that store
	Time      time.Time `json:"time"`       // when it happened (the envelope's time is when it was signed)
	OrderID   string    `json:"order_id"`
	Revision  uint32    `json:"revision"`
	OrderHash OrderHash `json:"order_hash"`       // of the revision it answers
	Reason    string    `json:"reason,omitempty"` // failed, problem: the driver's words or a code
	Via       Via       `json:"via"`
	Fix       *Fix      `json:"fix,omitempty"`      // the GPS fix at that moment; nil = none
	OffSite   bool      `json:"off_site,omitempty"` // the fix was outside the order's arrival radius
	Conflict  bool      `json:"conflict,omitempty"` // a cancellation arrived for an order already delivered
	// Movement events only. Odometer is the reading at the event in metres (zero: not known); Distance
	// the metres driven (trip_end); Duration the trip's (trip_end) or the stop's (stop) length; Idle the
	// time stood still in stops inside the trip (trip_end).
	Odometer uint64        `json:"odometer_m,omitempty"`
	Distance uint64        `json:"distance_m,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	Idle     time.Duration `json:"idle,omitempty"`
}

// fixWire is one fix in an event: integer keys, absent fields omitted.
type fixWire struct {
	Time   int64  `cbor:"1,keyasint"`
	Lat    int64  `cbor:"2,keyasint"`
	Lon    int64  `cbor:"3,keyasint"`
	Alt    *int64 `cbor:"4,keyasint,omitempty"`
	Speed  *int64 `cbor:"5,keyasint,omitempty"`
	Course *int64 `cbor:"6,keyasint,omitempty"`
	Mode   uint8  `cbor:"7,keyasint,omitempty"`
	Sats   *int64 `cbor:"8,keyasint,omitempty"`
	HDOP   *int64 `cbor:"9,keyasint,omitempty"`
}

type eventWire struct {
	Kind      uint8    `cbor:"1,keyasint"`
	Epoch     []byte   `cbor:"2,keyasint"`
	RecordSeq uint64   `cbor:"3,keyasint"`
	Time      int64    `cbor:"4,keyasint"`
	OrderID   string   `cbor:"5,keyasint"`
	Revision  uint32   `cbor:"6,keyasint"`
	OrderHash []byte   `cbor:"7,keyasint,omitempty"`
	Reason    string   `cbor:"8,keyasint,omitempty"`
	Via       uint8    `cbor:"9,keyasint,omitempty"`
	Fix       *fixWire `cbor:"10,keyasint,omitempty"`
	OffSite   bool     `cbor:"11,keyasint,omitempty"`
	Conflict  bool     `cbor:"12,keyasint,omitempty"`
	Odometer  uint64   `cbor:"13,keyasint,omitempty"` // metres
	Distance  uint64   `cbor:"14,keyasint,omitempty"` // metres
	Duration  int64    `cbor:"15,keyasint,omitempty"` // milliseconds
	Idle      int64    `cbor:"16,keyasint,omitempty"` // milliseconds
}

// Validate checks every field.
func (e *Event) Validate() error {
	if e.Kind.IsTrip() {
		return e.validateTrip()
	}
	switch {
	case e.Kind < EventReceived || e.Kind > EventProblem:
		return fmt.Errorf("sdk: unknown event kind %d", e.Kind)
	case e.Odometer != 0 || e.Distance != 0 || e.Duration != 0 || e.Idle != 0:
		return fmt.Errorf("sdk: %s event with trip values (odometer, distance, duration, idle)", e.Kind)
	case int(e.Via) >= len(viaNames):
		return fmt.Errorf("sdk: unknown event via %d", e.Via)
	case e.Time.IsZero():
		return fmt.Errorf("sdk: event time is required")
	case e.Revision == 0:
		return fmt.Errorf("sdk: event revision must be at least 1")
	case len(e.Reason) > maxOrderText:
		return fmt.Errorf("sdk: event reason over %d bytes", maxOrderText)
	case !utf8.ValidString(e.Reason):
		return fmt.Errorf("sdk: event reason is not valid UTF-8")
	}
	if err := ValidateOrderID(e.OrderID); err != nil {
		return err
	}
	if e.Fix != nil {
		if err := e.Fix.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// maxTripDuration bounds durations: a truck that stood a year has a broken clock, not a long stop.
const maxTripDuration = 366 * 24 * time.Hour

// validateTrip checks a movement event: no order, no driver, durations in range.
func (e *Event) validateTrip() error {
	switch {
	case e.Time.IsZero():
		return fmt.Errorf("sdk: event time is required")
	case e.OrderID != "" || e.Revision != 0 || e.OrderHash != (OrderHash{}) || e.Reason != "":
		return fmt.Errorf("sdk: %s event names an order; movement events name none", e.Kind)
	case e.Via != ViaAuto || e.OffSite || e.Conflict:
		return fmt.Errorf("sdk: %s event with driver fields (via, off_site, conflict)", e.Kind)
	case e.Duration < 0 || e.Duration > maxTripDuration || e.Idle < 0 || e.Idle > e.Duration && e.Kind == EventTripEnd:
		return fmt.Errorf("sdk: %s event duration %s, idle %s: want 0 <= idle <= duration <= 366 days", e.Kind, e.Duration, e.Idle)
	case e.Kind != EventTripEnd && (e.Distance != 0 || e.Idle != 0):
		return fmt.Errorf("sdk: %s event with a distance or idle time; only trip_end has them", e.Kind)
	case e.Kind == EventTripStart && e.Duration != 0:
		return fmt.Errorf("sdk: trip_start event with a duration")
	}
	if e.Fix != nil {
		if err := e.Fix.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// MessageID is the event's stable message id: its epoch and record sequence number, so a re-sent event
// carries the same id.
func (e *Event) MessageID() MsgID {
	var id MsgID
	copy(id[:8], e.Epoch[:])
	binary.BigEndian.PutUint64(id[8:], e.RecordSeq)
	return id
}

// MarshalBody returns the event's CBOR body.
func (e *Event) MarshalBody() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	w := eventWire{
		Kind: uint8(e.Kind), Epoch: e.Epoch[:], RecordSeq: e.RecordSeq, Time: e.Time.UnixMilli(),
		OrderID: e.OrderID, Revision: e.Revision, OrderHash: e.OrderHash[:], Reason: e.Reason,
		Via: uint8(e.Via), OffSite: e.OffSite, Conflict: e.Conflict, Odometer: e.Odometer, Distance: e.Distance,
		Duration: e.Duration.Milliseconds(), Idle: e.Idle.Milliseconds(),
	}
	if e.Kind.IsTrip() {
		w.OrderHash = nil // no order: the key stays out (key 7 is required only for order events)
	}
	if e.Fix != nil {
		w.Fix = fixToWire(e.Fix)
	}
	return encMode.Marshal(w)
}

// UnmarshalEvent decodes and validates an event body.
func UnmarshalEvent(body []byte) (*Event, error) {
	var w eventWire
	if err := decMode.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("sdk: event body: %w", err)
	}
	if len(w.Epoch) != len(Epoch{}) || len(w.OrderHash) != len(OrderHash{}) && !(EventKind(w.Kind).IsTrip() && len(w.OrderHash) == 0) {
		return nil, fmt.Errorf("sdk: event body: epoch must be 8 bytes and order hash 32")
	}
	const maxMillis = int64(maxTripDuration / time.Millisecond)
	if w.Duration < 0 || w.Duration > maxMillis || w.Idle < 0 || w.Idle > maxMillis {
		return nil, fmt.Errorf("sdk: event body: duration or idle time out of range")
	}
	e := &Event{
		Kind: EventKind(w.Kind), RecordSeq: w.RecordSeq, Time: time.UnixMilli(w.Time).UTC(),
		OrderID: w.OrderID, Revision: w.Revision, Reason: w.Reason, Via: Via(w.Via),
		OffSite: w.OffSite, Conflict: w.Conflict, Odometer: w.Odometer, Distance: w.Distance,
		Duration: time.Duration(w.Duration) * time.Millisecond, Idle: time.Duration(w.Idle) * time.Millisecond,
	}
	copy(e.Epoch[:], w.Epoch)
	copy(e.OrderHash[:], w.OrderHash)
	if w.Fix != nil {
		e.Fix = fixFromWire(w.Fix)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return e, nil
}

func fixToWire(f *Fix) *fixWire {
	opt := func(has FixFields, v, scale float64) *int64 {
		if f.Has&has == 0 {
			return nil
		}
		x := q(v, scale)
		return &x
	}
	w := &fixWire{
		Time: f.Time.UnixMilli(), Lat: q(f.Lat, eventScale), Lon: q(f.Lon, eventScale), Mode: f.Mode,
		Alt: opt(FixAlt, f.Alt, altScale), Speed: opt(FixSpeed, f.Speed, speedScale),
		Course: opt(FixCourse, f.Course, courseScale), HDOP: opt(FixHDOP, f.HDOP, hdopScale),
	}
	if f.Has&FixSats != 0 {
		s := int64(f.Sats)
		w.Sats = &s
	}
	return w
}

func fixFromWire(w *fixWire) *Fix {
	f := &Fix{Time: time.UnixMilli(w.Time).UTC(), Lat: float64(w.Lat) / eventScale,
		Lon: float64(w.Lon) / eventScale, Mode: w.Mode}
	if w.Alt != nil {
		f.Alt, f.Has = float64(*w.Alt)/altScale, f.Has|FixAlt
	}
	if w.Speed != nil {
		f.Speed, f.Has = float64(*w.Speed)/speedScale, f.Has|FixSpeed
	}
	if w.Course != nil {
		f.Course, f.Has = float64(*w.Course)/courseScale, f.Has|FixCourse
	}
	if w.Sats != nil {
		// out of range values fail Validate; clamp so the int conversion itself is harmless
		s := *w.Sats
		if s < -1 || s > 1000 {
			s = -1
		}
		f.Sats, f.Has = int(s), f.Has|FixSats
	}
	if w.HDOP != nil {
		f.HDOP, f.Has = float64(*w.HDOP)/hdopScale, f.Has|FixHDOP
	}
	return f
}
