package sdk

import (
	"testing"
	"time"
)

// A truck's status order does not depend on arrival: the will of a connection ends it (it was signed at
// connect, so its Time is older than the connection's refreshes), and a later connection's status wins
// over an earlier connection's will.
func TestStatusNewer(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	willA := Status{State: StateOffline, Time: at(0), Session: at(0)}
	onA := Status{State: StateOnline, Time: at(time.Second), Session: at(0)}
	refreshA := Status{State: StateOnline, Time: at(10 * time.Minute), Session: at(0)}
	willB := Status{State: StateOffline, Time: at(11 * time.Minute), Session: at(11 * time.Minute)}
	onB := Status{State: StateOnline, Time: at(11*time.Minute + time.Second), Session: at(11 * time.Minute)}
	oldOn := Status{State: StateOnline, Time: at(5 * time.Minute)} // an agent without Session
	oldOff := Status{State: StateOffline, Time: at(6 * time.Minute)}
	for _, c := range []struct {
		name   string
		n, old Status
		newer  bool
	}{
		{"the will after its connection's refresh", willA, refreshA, true},
		{"a late refresh after its connection's will", refreshA, willA, false},
		{"a refresh after the connection's first status", refreshA, onA, true},
		{"the next connection's online after the will", onB, willA, true},
		{"an old will after the next connection's online", willA, onB, false},
		{"the next connection's will after the old refresh", willB, refreshA, true},
		{"the same status again", onA, onA, false},
		{"without sessions: the later time", oldOff, oldOn, true},
		{"without sessions: an earlier time", oldOn, oldOff, false},
	} {
		if got := c.n.Newer(c.old); got != c.newer {
			t.Errorf("%s: Newer = %v, want %v", c.name, got, c.newer)
		}
	}
	// The session travels.
	body, err := refreshA.MarshalBody()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalStatus(body)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Session.Equal(refreshA.Session) || back.Newer(refreshA) || refreshA.Newer(*back) {
		t.Errorf("decoded %+v, want the session %v and the same order", back, refreshA.Session)
	}
}

// Health.Ignition (CBOR key 16) travels as on, off or absent; a body without it is the body an older
// agent sends, and a decoder older than the key (healthWire up to key 15) still decodes a body with it.
func TestHealthIgnition(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	on, off := true, false
	var bodies [][]byte
	for _, ign := range []*bool{nil, &on, &off} {
		s := Status{State: StateOnline, Time: t0, Health: &Health{Sats: 7, Odometer: 1234, Ignition: ign}}
		body, err := s.MarshalBody()
		if err != nil {
			t.Fatal(err)
		}
		back, err := UnmarshalStatus(body)
		if err != nil {
			t.Fatal(err)
		}
		if got := back.Health.Ignition; (got == nil) != (ign == nil) || got != nil && *got != *ign {
			t.Errorf("ignition %v decoded as %v", ign, got)
		}
		bodies = append(bodies, body)
	}
	without, err := (&Status{State: StateOnline, Time: t0, Health: &Health{Sats: 7, Odometer: 1234}}).MarshalBody()
	if err != nil {
		t.Fatal(err)
	}
	if string(bodies[0]) != string(without) {
		t.Errorf("a status without ignition input changed its bytes")
	}
	// An older decoder: the health map as it was before key 16.
	type oldHealth struct {
		Sats     int64  `cbor:"2,keyasint,omitempty"`
		Odometer uint64 `cbor:"15,keyasint,omitempty"`
	}
	type oldStatus struct {
		State  uint8      `cbor:"1,keyasint"`
		Time   int64      `cbor:"2,keyasint"`
		Health *oldHealth `cbor:"3,keyasint,omitempty"`
	}
	for _, body := range bodies[1:] {
		var old oldStatus
		if err := decMode.Unmarshal(body, &old); err != nil || old.Health == nil || old.Health.Sats != 7 || old.Health.Odometer != 1234 {
			t.Errorf("an older decoder: %v %+v", err, old.Health)
		}
	}
	// A value beyond off is refused, as other out-of-range health values are.
	bad, err := encMode.Marshal(statusWire{State: uint8(StateOnline), Time: t0.UnixMilli(), Health: &healthWire{Ignition: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UnmarshalStatus(bad); err == nil {
		t.Error("ignition 3 decoded")
	}
}
