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
