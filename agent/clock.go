package agent

import (
	"fmt"
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
	sysAtFix   time.Time     // guarded by mu: the system clock when it was seen
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
	seen, sys := c.elapsed(), c.now()
	c.mu.Lock()
	c.gps, c.gpsSeen, c.sysAtFix = gpsTime, seen, sys
	c.mu.Unlock()
}

// clockCheck compares the last fix's GPS time with the system clock at that moment, for the warnings of
// check, /healthz and the status message. It does not decide which clock is used (read does).
type clockCheck struct {
	GPS, System time.Time     // the last fix's time and the system clock when it was seen; zero before any fix
	Skew        time.Duration // GPS minus system; zero unless Comparable
	// Comparable: a fix was seen while the system clock was past the floor. A clock before the floor (no
	// RTC, 1970) is no reference: GPS time is used and there is nothing to compare.
	Comparable bool
	// Disagree: Comparable and the two differ by more than MaxClockSkew. Either the system clock is wrong
	// (a restored fake-hwclock save) or the receiver's date is (a week-rollover bug, or our correction of
	// one); the agent cannot tell which, and uses GPS time while the fix is fresh (see clock).
	Disagree bool
}

// check returns the comparison at the last fix.
func (c *clock) check() clockCheck {
	c.mu.Lock()
	defer c.mu.Unlock()
	cc := clockCheck{GPS: c.gps, System: c.sysAtFix}
	if c.gps.IsZero() || c.sysAtFix.Before(c.floor) {
		return cc
	}
	cc.Comparable, cc.Skew = true, c.gps.Sub(c.sysAtFix)
	cc.Disagree = cc.Skew > MaxClockSkew || cc.Skew < -MaxClockSkew
	return cc
}

// warning says what is wrong in one sentence, or "" when the clocks agree. rollovers is how many fixes the
// GPS source moved forward by 1024 weeks (gps.Stats.Rollovers) and floor its rollover floor: a corrected
// date that disagrees with a plausible clock is most likely a wrong correction.
func (cc clockCheck) warning(rollovers uint64, floor time.Time) string {
	if !cc.Disagree {
		return ""
	}
	s := fmt.Sprintf("GPS time %s and the system clock %s disagree by %s (tolerance %s)",
		cc.GPS.UTC().Format(time.RFC3339), cc.System.UTC().Format(time.RFC3339), formatSkew(cc.Skew), MaxClockSkew)
	if rollovers > 0 {
		s += fmt.Sprintf("; the receiver's date was before gps.rollover_floor (%s) and was moved forward by 1024 weeks: "+
			"if the system clock is right, that correction is wrong (lower gps.rollover_floor)", floor.Format(time.DateOnly))
	} else {
		s += "; if the system clock is right (NTP), the receiver reports a wrong date (firmware week-rollover bug?)"
	}
	return s
}

// formatSkew writes a skew with its sign and a unit a person reads: "GPS ahead by 2994 days", "GPS behind
// by 12m0s".
func formatSkew(d time.Duration) string {
	dir := "ahead"
	if d < 0 {
		dir, d = "behind", -d
	}
	if d >= 48*time.Hour {
		return fmt.Sprintf("GPS %s by %d days", dir, int(d.Hours()/24))
	}
	return fmt.Sprintf("GPS %s by %s", dir, d.Round(time.Second))
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
			"system_time", sys, "gps_time", gpsNow, "skew", skew.Round(time.Second), "bound", MaxClockSkew,
			"hint", "if the system clock is right (NTP), the receiver's date is wrong: see waybill-agent check and gps.rollover_floor")
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
