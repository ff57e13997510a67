package sdk

import (
	"fmt"
	"math"
	"math/big"
	"time"
)

// State is a truck's connection state as published on its retained status topic.
type State uint8

const (
	_            State = iota
	StateOnline        // published after each connect
	StateOffline       // the MQTT will (signed at connect time) or a clean shutdown
)

func (s State) String() string {
	switch s {
	case StateOnline:
		return "online"
	case StateOffline:
		return "offline"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Health is the agent's health summary. Zero values are encoded as absent and decode back to zero. New
// fields take new CBOR keys; older decoders ignore them.
type Health struct {
	FixAge       time.Duration `json:"fix_age,omitempty"`        // age of the last GPS fix; negative: no fix yet
	Sats         int           `json:"sats,omitempty"`           // satellites used in the last fix
	QueueDepth   int           `json:"queue_depth,omitempty"`    // records waiting for upload
	OldestAge    time.Duration `json:"oldest_age,omitempty"`     // age of the oldest waiting record
	Link         string        `json:"link,omitempty"`           // e.g. "lte", "wifi", "eth"
	CertDaysLeft int           `json:"cert_days_left,omitempty"` // days until the truck certificate expires
	DiskFree     uint64        `json:"disk_free,omitempty"`      // bytes free where the store lives
	Version      string        `json:"version,omitempty"`        // agent version
	Unreceipted  int           `json:"unreceipted,omitempty"`    // records sent and waiting for dispatch's receipt
	// StoreEpoch, StoreOrigin and StoreSince say which store the truck's records come from and how it
	// began: "created" (first start, or the file was lost: an SD card swapped), "recreated" (the file was
	// unusable and moved aside), "salvaged" (damaged; readable records carried into a new epoch).
	StoreEpoch  Epoch     `json:"store_epoch,omitzero"`
	StoreOrigin string    `json:"store_origin,omitempty"`
	StoreSince  time.Time `json:"store_since,omitzero"`
	// CRL is the fleet CRL the truck verifies orders with. Nil: not reported (an agent older than this
	// field); Loaded false: the truck has no CRL at all and would accept orders signed by a revoked
	// dispatch key. Number, ThisUpdate, NextUpdate and Revoked travel; a Number over 20 bytes is not sent.
	CRL *CRLInfo `json:"crl,omitempty"`
	// ClockSkew is GPS time minus the system clock at the last fix, when the two disagree by more than
	// the agent's tolerance; zero when they agree or there is no fix. A large value means a dead clock
	// battery or a receiver with a wrong date (week rollover): records carry the time the agent trusted.
	ClockSkew time.Duration `json:"clock_skew,omitempty"`
	// Odometer is the truck's mileage in metres, from GPS (set from the vehicle's odometer by the
	// operator); zero: not reported.
	Odometer uint64 `json:"odometer_m,omitempty"`
	// Ignition is the ignition-sense input, debounced: true on, false off. Nil: the truck has no ignition
	// input (trips follow movement), or its agent is older than this field.
	Ignition *bool `json:"ignition,omitempty"`
}

// Status is what a truck publishes, retained, on its status topic.
type Status struct {
	State  State             `json:"state"`
	Time   time.Time         `json:"time"`             // when the state was true (for the will: when it was set)
	Health *Health           `json:"health,omitempty"` // nil: no summary in this message
	Extra  map[string]string `json:"extra,omitempty"`  // integrator-defined, small
	// Session names the connection the status belongs to: when its will was signed, just before it
	// connected. The will carries its own Time; each online status of that connection carries the same
	// value. The will is signed at connect but fires at the end, so its Time alone is older than every
	// refresh of its connection: Newer orders by Session first. Zero: not reported (an older agent).
	Session time.Time `json:"session,omitzero"`
}

// Newer reports whether s replaces old as a truck's current status, whatever order they arrive in:
// a later connection's status wins; within one connection the will (offline) ends it, after every
// online status of it; otherwise the later Time wins. Statuses without a Session are ordered by Time.
func (s Status) Newer(old Status) bool {
	sk, ok := s.orderKey(), old.orderKey()
	for i := range sk {
		if sk[i] != ok[i] {
			return sk[i] > ok[i]
		}
	}
	return false
}

// OrderKey is Newer's order as three numbers compared in turn, for a database's row comparison: the
// session in Unix milliseconds (Time when not reported), 1 for offline or 0 for online, and Time in Unix
// milliseconds.
func (s Status) OrderKey() (session int64, offline int64, t int64) {
	k := s.orderKey()
	return k[0], k[1], k[2]
}

func (s Status) orderKey() [3]int64 {
	sess := s.Session
	if sess.IsZero() {
		sess = s.Time
	}
	var off int64
	if s.State == StateOffline {
		off = 1
	}
	return [3]int64{sess.UnixMilli(), off, s.Time.UnixMilli()}
}

type healthWire struct {
	FixAge       int64    `cbor:"1,keyasint,omitempty"` // milliseconds
	Sats         int64    `cbor:"2,keyasint,omitempty"`
	QueueDepth   int64    `cbor:"3,keyasint,omitempty"`
	OldestAge    int64    `cbor:"4,keyasint,omitempty"` // milliseconds
	Link         string   `cbor:"5,keyasint,omitempty"`
	CertDaysLeft int64    `cbor:"6,keyasint,omitempty"`
	DiskFree     uint64   `cbor:"7,keyasint,omitempty"`
	Version      string   `cbor:"8,keyasint,omitempty"`
	Unreceipted  int64    `cbor:"9,keyasint,omitempty"`
	StoreEpoch   []byte   `cbor:"10,keyasint,omitempty"`
	StoreOrigin  string   `cbor:"11,keyasint,omitempty"`
	StoreSince   int64    `cbor:"12,keyasint,omitempty"` // Unix ms
	CRL          *crlWire `cbor:"13,keyasint,omitempty"`
	ClockSkew    int64    `cbor:"14,keyasint,omitempty"` // milliseconds
	Odometer     uint64   `cbor:"15,keyasint,omitempty"` // metres
	Ignition     uint8    `cbor:"16,keyasint,omitempty"` // ignitionOn or ignitionOff; absent: no input
}

// Health.Ignition on the wire: a number, so "off" is not the zero value that omitempty leaves out.
const (
	ignitionOn  = 1
	ignitionOff = 2
)

// crlWire is CRLInfo in a status: an empty map says "no CRL".
type crlWire struct {
	Number     []byte `cbor:"1,keyasint,omitempty"` // big-endian, unsigned (RFC 5280: at most 20 octets)
	ThisUpdate int64  `cbor:"2,keyasint,omitempty"` // Unix ms; set whenever a CRL is loaded
	NextUpdate int64  `cbor:"3,keyasint,omitempty"` // Unix ms
	Revoked    int64  `cbor:"4,keyasint,omitempty"`
}

// maxCRLNumberLen is RFC 5280's bound on a CRL Number, in octets.
const maxCRLNumberLen = 20

func crlToWire(i *CRLInfo) *crlWire {
	w := &crlWire{}
	if !i.Loaded {
		return w
	}
	if i.Number != nil && i.Number.Sign() >= 0 && len(i.Number.Bytes()) <= maxCRLNumberLen {
		w.Number = i.Number.Bytes()
	}
	w.ThisUpdate = i.ThisUpdate.UnixMilli()
	if !i.NextUpdate.IsZero() {
		w.NextUpdate = i.NextUpdate.UnixMilli()
	}
	w.Revoked = int64(i.Revoked)
	return w
}

func crlFromWire(w *crlWire) (*CRLInfo, error) {
	if len(w.Number) > maxCRLNumberLen || w.Revoked < 0 || w.Revoked > math.MaxInt32 {
		return nil, fmt.Errorf("sdk: status body: CRL values out of range")
	}
	if w.ThisUpdate == 0 {
		if len(w.Number) != 0 || w.NextUpdate != 0 || w.Revoked != 0 {
			return nil, fmt.Errorf("sdk: status body: a CRL without this-update")
		}
		return &CRLInfo{}, nil
	}
	i := &CRLInfo{Loaded: true, ThisUpdate: time.UnixMilli(w.ThisUpdate).UTC(), Revoked: int(w.Revoked)}
	if len(w.Number) > 0 {
		i.Number = new(big.Int).SetBytes(w.Number)
	}
	if w.NextUpdate != 0 {
		i.NextUpdate = time.UnixMilli(w.NextUpdate).UTC()
	}
	return i, nil
}

type statusWire struct {
	State   uint8             `cbor:"1,keyasint"`
	Time    int64             `cbor:"2,keyasint"`
	Health  *healthWire       `cbor:"3,keyasint,omitempty"`
	Extra   map[string]string `cbor:"4,keyasint,omitempty"`
	Session int64             `cbor:"5,keyasint,omitempty"` // Unix ms
}

const maxStatusExtra = 32

// Validate checks every field.
func (s *Status) Validate() error {
	if s.State != StateOnline && s.State != StateOffline {
		return fmt.Errorf("sdk: unknown status state %d", s.State)
	}
	if s.Time.IsZero() {
		return fmt.Errorf("sdk: status time is required")
	}
	if len(s.Extra) > maxStatusExtra {
		return fmt.Errorf("sdk: status has %d extra fields, at most %d", len(s.Extra), maxStatusExtra)
	}
	if h := s.Health; h != nil && (len(h.Link) > 64 || len(h.Version) > 64 || len(h.StoreOrigin) > 64) {
		return fmt.Errorf("sdk: status health link, version or store origin over 64 bytes")
	}
	return nil
}

// MarshalBody returns the status's CBOR body.
func (s *Status) MarshalBody() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	w := statusWire{State: uint8(s.State), Time: s.Time.UnixMilli(), Extra: s.Extra}
	if !s.Session.IsZero() {
		w.Session = s.Session.UnixMilli()
	}
	if h := s.Health; h != nil {
		w.Health = &healthWire{
			FixAge: h.FixAge.Milliseconds(), Sats: int64(h.Sats), QueueDepth: int64(h.QueueDepth),
			OldestAge: h.OldestAge.Milliseconds(), Link: h.Link, CertDaysLeft: int64(h.CertDaysLeft),
			DiskFree: h.DiskFree, Version: h.Version, Unreceipted: int64(h.Unreceipted), StoreOrigin: h.StoreOrigin,
			ClockSkew: h.ClockSkew.Milliseconds(), Odometer: h.Odometer,
		}
		if h.StoreEpoch != (Epoch{}) {
			w.Health.StoreEpoch = h.StoreEpoch[:]
		}
		if !h.StoreSince.IsZero() {
			w.Health.StoreSince = h.StoreSince.UnixMilli()
		}
		if h.CRL != nil {
			w.Health.CRL = crlToWire(h.CRL)
		}
		if h.Ignition != nil {
			w.Health.Ignition = ignitionOff
			if *h.Ignition {
				w.Health.Ignition = ignitionOn
			}
		}
	}
	return encMode.Marshal(w)
}

// UnmarshalStatus decodes and validates a status body.
func UnmarshalStatus(body []byte) (*Status, error) {
	var w statusWire
	if err := decMode.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("sdk: status body: %w", err)
	}
	s := &Status{State: State(w.State), Time: time.UnixMilli(w.Time).UTC(), Extra: w.Extra}
	if w.Session != 0 {
		s.Session = time.UnixMilli(w.Session).UTC()
	}
	if h := w.Health; h != nil {
		const maxMs = int64(100 * 365 * 24 * time.Hour / time.Millisecond) // keeps Duration from overflowing
		if h.FixAge > maxMs || h.FixAge < -maxMs || h.OldestAge > maxMs || h.OldestAge < -maxMs ||
			h.ClockSkew > maxMs || h.ClockSkew < -maxMs ||
			h.Sats < 0 || h.Sats > 1000 || h.QueueDepth < 0 || h.QueueDepth > math.MaxInt32 ||
			h.CertDaysLeft < -1<<20 || h.CertDaysLeft > 1<<20 || h.Unreceipted < 0 || h.Unreceipted > math.MaxInt32 ||
			(len(h.StoreEpoch) != 0 && len(h.StoreEpoch) != len(Epoch{})) || h.Ignition > ignitionOff {
			return nil, fmt.Errorf("sdk: status body: health values out of range")
		}
		s.Health = &Health{
			FixAge: time.Duration(h.FixAge) * time.Millisecond, Sats: int(h.Sats), QueueDepth: int(h.QueueDepth),
			OldestAge: time.Duration(h.OldestAge) * time.Millisecond, Link: h.Link,
			CertDaysLeft: int(h.CertDaysLeft), DiskFree: h.DiskFree, Version: h.Version,
			Unreceipted: int(h.Unreceipted), StoreOrigin: h.StoreOrigin,
			ClockSkew: time.Duration(h.ClockSkew) * time.Millisecond, Odometer: h.Odometer,
		}
		copy(s.Health.StoreEpoch[:], h.StoreEpoch)
		if h.Ignition != 0 {
			on := h.Ignition == ignitionOn
			s.Health.Ignition = &on
		}
		if h.StoreSince != 0 {
			s.Health.StoreSince = time.UnixMilli(h.StoreSince).UTC()
		}
		if h.CRL != nil {
			crl, err := crlFromWire(h.CRL)
			if err != nil {
				return nil, err
			}
			s.Health.CRL = crl
		}
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}
