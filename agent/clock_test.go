package agent

import (
	"testing"
	"time"
)

// A unit without a real-time clock boots in 1970: until its clock is plausible, the agent's time is the last
// GPS time carried forward by the elapsed time; once plausible, the system clock wins.
func TestClockUsesGPSTimeUntilTheSystemClockIsPlausible(t *testing.T) {
	floor := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sys := time.Date(1970, 1, 1, 0, 0, 10, 0, time.UTC)
	c := newClock(floor, func() time.Time { return sys })
	if c.plausible() || !c.Now().Equal(sys) {
		t.Fatalf("before any fix: %v (plausible %v)", c.Now(), c.plausible())
	}
	gpsTime := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	c.observe(gpsTime)
	sys = sys.Add(5 * time.Second)
	if got := c.Now(); !got.Equal(gpsTime.Add(5 * time.Second)) {
		t.Fatalf("with GPS: %v, want %v", got, gpsTime.Add(5*time.Second))
	}
	sys = time.Date(2026, 11, 25, 12, 0, 7, 0, time.UTC) // NTP set the clock
	if !c.plausible() || !c.Now().Equal(sys) {
		t.Fatalf("after NTP: %v", c.Now())
	}
}
