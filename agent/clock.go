package agent

import (
	"io"
	"log/slog"
	"sync"
	"time"
)

// Bounds of the clock's trust in GPS time.
const (
	// MaxClockSkew is how far the system clock may disagree with the time of a recent GPS fix before it is
	// treated as wrong. A receiver's time is good to a microsecond and NTP to milliseconds, so only a wrong
	// clock is this far off: a unit whose fake-hwclock restored a save from weeks ago, or an RTC that was
	// set wrong. Ten minutes stays clear of both GPS latency and the TLS and envelope tolerances, which are
	// minutes.
	MaxClockSkew = 10 * time.Minute
	// GPSTimeFresh is how recent the last fix must be for its time to overrule a plausible system clock.
	// The GPS time is carried forward by the monotonic clock, which does not count while the unit is
	// suspended: an old observation could be off by however long the unit slept.
	GPSTimeFresh = 5 * time.Minute
)

// clock is the agent's idea of the time, for TLS certificate checks and envelopes. Units without a
// real-time clock boot in 1970 (or at the last fake-hwclock save) until NTP runs, which may be never in
// a dead zone; certificates would look invalid and envelopes ancient. So the clock is GPS time (the last
// fix's time plus the monotonic time since it was seen) while either
//
//   - the system clock is before the floor (the build date): implausible, whatever the age of the fix; or
//   - a fix was seen within GPSTimeFresh and the system clock disagrees with it by more than MaxClockSkew:
//     plausible but wrong (a fake-hwclock save from weeks ago is past the floor).
//
// Otherwise it is the system clock. It logs once when it starts overruling a plausible system clock and
// once when that ends (the clocks agree again, or the fix went stale).
type clock struct {
	floor   time.Time
	now     func() time.Time     // the system clock; time.Now outside tests
	elapsed func() time.Duration // monotonic time since the clock was made; tests set it
	log     *slog.Logger

	mu         sync.Mutex
	gps        time.Time     // guarded by mu: the last fix's GPS time
	gpsSeen    time.Duration // guarded by mu: elapsed() when it was seen
	overruling bool          // guarded by mu: a plausible system clock is treated as wrong
}

// newClock returns a clock with the given floor; nil now means time.Now, nil log discards.
func newClock(floor time.Time, now func() time.Time, log *slog.Logger) *clock {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	start := time.Now()
	// time.Since uses the monotonic reading, so a step of the system clock (NTP) does not move it.
	return &clock{floor: floor, now: now, elapsed: func() time.Duration { return time.Since(start) }, log: log}
}

// observe records a fix's GPS time (fixes from the source are position fixes, whose time is good).
func (c *clock) observe(gpsTime time.Time) {
	seen := c.elapsed()
	c.mu.Lock()
	c.gps, c.gpsSeen = gpsTime, seen
	c.mu.Unlock()
}

// Now returns the system time when it is plausible and agrees with a recent fix, else GPS time carried
// forward; before any fix, the system time.
func (c *clock) Now() time.Time {
	t, _ := c.read()
	return t
}

// plausible reports whether the system clock is used as it is: past the floor and not overruled by a
// recent fix. (The status page and metrics report GPS time in use when it is false.)
func (c *clock) plausible() bool {
	_, fromGPS := c.read()
	return !fromGPS && !c.now().Before(c.floor)
}

// read decides between the system clock and GPS time, and logs a change of the overruling.
func (c *clock) read() (t time.Time, fromGPS bool) {
	sys, mono := c.now(), c.elapsed()
	c.mu.Lock()
	if c.gps.IsZero() {
		c.mu.Unlock()
		return sys, false
	}
	age := mono - c.gpsSeen
	gpsNow := c.gps.Add(age)
	if sys.Before(c.floor) {
		c.mu.Unlock()
		return gpsNow, true // the agent warns about an implausible clock at start
	}
	skew := sys.Sub(gpsNow) // wall clock against GPS: positive when the system clock is ahead
	wrong := age <= GPSTimeFresh && (skew > MaxClockSkew || skew < -MaxClockSkew)
	changed := wrong != c.overruling
	c.overruling = wrong
	c.mu.Unlock()
	switch {
	case changed && wrong:
		c.log.Warn("system clock disagrees with GPS time: using GPS time for certificates and messages",
			"system_time", sys, "gps_time", gpsNow, "skew", skew.Round(time.Second), "bound", MaxClockSkew)
	case changed && age > GPSTimeFresh:
		c.log.Warn("no recent GPS fix: back to the system clock, which disagreed with GPS time",
			"system_time", sys, "gps_time", gpsNow, "fix_age", age.Round(time.Second))
	case changed:
		c.log.Warn("system clock agrees with GPS time again: using the system clock",
			"system_time", sys, "gps_time", gpsNow, "skew", skew.Round(time.Second))
	}
	if wrong {
		return gpsNow, true
	}
	return sys, false
}
