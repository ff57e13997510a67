package agent

import (
	"sync"
	"time"
)

// clock is the agent's idea of the time. Units without a real-time clock boot in 1970 (or at the last
// fake-hwclock save) until NTP runs, which may be never in a dead zone; certificates would look invalid
// and envelopes ancient. While the system clock is before the floor, the clock is the last GPS time plus
// the monotonic time since it was seen.
type clock struct {
	floor time.Time
	now   func() time.Time // the system clock; time.Now outside tests

	mu      sync.Mutex
	gps     time.Time // guarded by mu: the last fix's GPS time
	gpsSeen time.Time // guarded by mu: system time (with its monotonic reading) when it was seen
}

func newClock(floor time.Time, now func() time.Time) *clock {
	if now == nil {
		now = time.Now
	}
	return &clock{floor: floor, now: now}
}

// observe records a fix's GPS time.
func (c *clock) observe(gpsTime time.Time) {
	c.mu.Lock()
	c.gps, c.gpsSeen = gpsTime, c.now()
	c.mu.Unlock()
}

// Now returns the system time when it is plausible, else GPS time carried forward, else the system time.
func (c *clock) Now() time.Time {
	sys := c.now()
	if !sys.Before(c.floor) {
		return sys
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gps.IsZero() {
		return sys
	}
	return c.gps.Add(sys.Sub(c.gpsSeen))
}

// plausible reports whether the system clock is past the floor.
func (c *clock) plausible() bool { return !c.now().Before(c.floor) }
