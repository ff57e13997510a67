package gps

import (
	"math"
	"time"
)

// FilterMode selects how the filter picks the fixes to send.
type FilterMode string

// Filter modes. The zero FilterMode is DefaultFilterMode.
const (
	// FilterThresholds reports a fix when a period, distance, heading, speed change or stop/start
	// threshold is crossed (Teltonika's kind of filter): decided at once, fix by fix.
	FilterThresholds FilterMode = "thresholds"
	// FilterCurve is curve logging: 1 Hz fixes wait in a bounded buffer and Ramer-Douglas-Peucker keeps
	// only those needed to redraw the drive within PositionError and SpeedError (Geotab's kind of
	// filter). Fixes are decided up to MaxDelay late; see Filter.Push.
	FilterCurve FilterMode = "curve"
)

// DefaultFilterMode is the mode of a zero FilterConfig.Mode; doc.go gives the measurements behind it.
const DefaultFilterMode = FilterCurve

// FilterConfig holds the reporting thresholds. A zero field takes the default in brackets (justified in
// doc.go); a negative one disables that criterion.
type FilterConfig struct {
	Mode FilterMode // FilterThresholds or FilterCurve [DefaultFilterMode]

	// Both modes use StopSpeed, StopAfter, StartSpeed, StartDistance, StoppedPeriod and MaxHDOP below.
	// Only thresholds mode uses Period, MinInterval, MinDistance, MinHeading, HeadingMinSpeed and
	// MinSpeedChange; only curve mode uses the five fields that follow.

	PositionError float64       // metres: no dropped fix is further than this from the logged track [5]
	SpeedError    float64       // m/s: nor is its speed further than this from the track's [1.39, 5 km/h]
	Timeout       time.Duration // a fix is logged at least this often while moving [100 s]
	MaxDelay      time.Duration // no fix waits undecided in the buffer longer than this [60 s]
	Buffer        int           // most fixes waiting undecided, bounding memory (at least 2) [128]

	Period          time.Duration // report at least this often while moving [60 s]
	StoppedPeriod   time.Duration // and this often while stopped [15 min]
	MinInterval     time.Duration // no distance/heading/speed report sooner than this after the last [5 s]
	MinDistance     float64       // metres moved since the last report [200]
	MinHeading      float64       // degrees of course change since the last report [15]
	HeadingMinSpeed float64       // m/s below which the course is noise and ignored [2.5, 9 km/h]
	MinSpeedChange  float64       // m/s of speed change since the last report [2.78, 10 km/h]
	StopSpeed       float64       // m/s under which the truck may be stopping [1.0]
	StopAfter       time.Duration // that slow for this long = stopped [30 s]
	StartSpeed      float64       // m/s over which a stopped truck is moving again [2.5]
	StartDistance   float64       // or metres away from where it stopped [50]
	MaxHDOP         float64       // fixes with a worse HDOP are dropped [5]
	// Clock gives "now". Nil uses each fix's own GPS time, which needs no real-time clock and makes the
	// filter deterministic.
	Clock func() time.Time
}

func (c FilterConfig) withDefaults() FilterConfig {
	dur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	num := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	dur(&c.Period, 60*time.Second)
	dur(&c.StoppedPeriod, 15*time.Minute)
	dur(&c.MinInterval, 5*time.Second)
	dur(&c.StopAfter, 30*time.Second)
	num(&c.MinDistance, 200)
	num(&c.MinHeading, 15)
	num(&c.HeadingMinSpeed, 2.5)
	num(&c.MinSpeedChange, 10/3.6)
	num(&c.StopSpeed, 1.0)
	num(&c.StartSpeed, 2.5)
	num(&c.StartDistance, 50)
	num(&c.MaxHDOP, 5)
	if c.Mode == "" {
		c.Mode = DefaultFilterMode
	}
	num(&c.PositionError, 5)
	num(&c.SpeedError, 5/3.6)
	dur(&c.Timeout, 100*time.Second)
	dur(&c.MaxDelay, 60*time.Second)
	if c.Buffer == 0 {
		c.Buffer = 128
	}
	c.Buffer = min(max(c.Buffer, 2), maxCurveBuffer)
	return c
}

// Reason says why a fix was or was not reported.
type Reason string

// Reasons to report.
const (
	ReasonFirst         Reason = "first"          // the first usable fix
	ReasonPeriod        Reason = "period"         // Period elapsed while moving
	ReasonStoppedPeriod Reason = "stopped-period" // StoppedPeriod elapsed while stopped
	ReasonDistance      Reason = "distance"
	ReasonHeading       Reason = "heading"
	ReasonSpeed         Reason = "speed"
	ReasonStopped       Reason = "stopped" // the truck has just stopped: the fix where it stands
	ReasonMoving        Reason = "moving"  // the truck has just started again
	// Curve mode only.
	ReasonCurve   Reason = "curve"       // a vertex the track needs to stay within the error bounds
	ReasonTimeout Reason = "timeout"     // Timeout elapsed since the last logged fix while moving
	ReasonDelay   Reason = "delay"       // the oldest undecided fix waited MaxDelay: the newest is sent
	ReasonFull    Reason = "buffer-full" // the buffer was full and the whole of it fitted one line
	ReasonEnd     Reason = "end"         // Flush: the input ended
)

// Logged is a fix the filter decided to send, and why.
type Logged struct {
	Fix    Fix
	Reason Reason
}

// Reasons not to report.
const (
	ReasonNone    Reason = ""         // nothing worth sending
	ReasonBadHDOP Reason = "bad-hdop" // dropped: HDOP above MaxHDOP
)

// Filter decides which fixes are worth sending. It is pure: no goroutines, no I/O, time from the
// injected clock or the fixes. Not safe for concurrent use.
type Filter struct {
	cfg      FilterConfig
	last     Fix // last reported fix
	lastAt   time.Time
	have     bool
	stopped  bool
	slowFrom time.Time // when the speed dropped below StopSpeed, zero if it did not
	stopPos  Fix
	prev     Fix // previous fix seen, to estimate speed when the receiver gives none
	havePrev bool
	curve    curve // curve mode's buffer; empty in thresholds mode
}

// NewFilter returns a filter with cfg's thresholds. In curve mode it allocates the whole buffer here,
// so Push never allocates beyond what it appends to dst.
func NewFilter(cfg FilterConfig) *Filter {
	f := &Filter{cfg: cfg.withDefaults()}
	if f.cfg.Mode == FilterCurve {
		f.curve.init(f.cfg.Buffer)
	}
	return f
}

// Push takes every fix in order and appends to dst the fixes to send now, oldest first, with their
// reasons. In thresholds mode that is the fix itself or nothing, as Next decides. In curve mode it may be
// earlier fixes (vertices found when the buffer is simplified), none of them older than MaxDelay; the
// caller sends them in the order given. Call Flush when the input ends.
func (f *Filter) Push(fix Fix, dst []Logged) []Logged {
	if f.cfg.Mode != FilterCurve {
		if ok, why := f.Next(fix); ok {
			dst = append(dst, Logged{fix, why})
		}
		return dst
	}
	return f.pushCurve(fix, dst)
}

// Flush appends what the filter still holds undecided (curve mode: the vertices of the buffer and its
// newest fix, so the end of a drive is not lost) and empties it. Pushing may continue afterwards.
func (f *Filter) Flush(dst []Logged) []Logged {
	if f.cfg.Mode != FilterCurve {
		return dst
	}
	return f.flushCurve(dst)
}

// Pending is the number of fixes waiting undecided (always 0 in thresholds mode).
func (f *Filter) Pending() int { return f.curve.pending() }

// Stopped reports whether the filter believes the truck is stopped.
func (f *Filter) Stopped() bool { return f.stopped }

func on(v float64) bool { return v > 0 }

// Next takes every fix in order and says whether to report it, and why, by the thresholds, whatever
// Mode says: a yes/no for this fix cannot express curve mode, which decides fixes later. Use Push, which
// honours Mode; Next stays so that callers written for it keep today's behaviour.
func (f *Filter) Next(fix Fix) (bool, Reason) {
	c := f.cfg
	now := fix.Time
	if c.Clock != nil {
		now = c.Clock()
	}
	if on(c.MaxHDOP) && fix.HasHDOP() && fix.HDOP > c.MaxHDOP {
		return false, ReasonBadHDOP
	}
	if f.havePrev && fix.Time.Before(f.prev.Time) {
		f.restart()
	}
	speed := fix.Speed
	if !fix.HasSpeed() {
		speed = 0
		if f.havePrev {
			if dt := fix.Time.Sub(f.prev.Time).Seconds(); dt > 0 {
				speed = Distance(f.prev.Lat, f.prev.Lon, fix.Lat, fix.Lon) / dt
			}
		}
	}
	f.prev, f.havePrev = fix, true
	if !f.have {
		f.stopped = on(c.StopSpeed) && speed < c.StopSpeed
		if f.stopped {
			f.stopPos = fix
		}
		return f.report(fix, now, ReasonFirst)
	}
	// Stopped/moving state with hysteresis: slow for StopAfter to stop; clearly faster, or away from
	// the stop point, to move again. GPS speed at a standstill wanders, so one threshold would flap.
	if f.stopped {
		if on(c.StartSpeed) && speed > c.StartSpeed ||
			on(c.StartDistance) && Distance(f.stopPos.Lat, f.stopPos.Lon, fix.Lat, fix.Lon) > c.StartDistance {
			f.stopped, f.slowFrom = false, time.Time{}
			return f.report(fix, now, ReasonMoving)
		}
		if on(float64(c.StoppedPeriod)) && now.Sub(f.lastAt) >= c.StoppedPeriod {
			return f.report(fix, now, ReasonStoppedPeriod)
		}
		return false, ReasonNone
	}
	if on(c.StopSpeed) && speed < c.StopSpeed {
		if f.slowFrom.IsZero() {
			f.slowFrom = now
		} else if now.Sub(f.slowFrom) >= c.StopAfter {
			f.stopped, f.stopPos = true, fix
			return f.report(fix, now, ReasonStopped)
		}
	} else {
		f.slowFrom = time.Time{}
	}
	since := now.Sub(f.lastAt)
	if on(float64(c.Period)) && since >= c.Period {
		return f.report(fix, now, ReasonPeriod)
	}
	if since < c.MinInterval {
		return false, ReasonNone
	}
	if on(c.MinDistance) && Distance(f.last.Lat, f.last.Lon, fix.Lat, fix.Lon) >= c.MinDistance {
		return f.report(fix, now, ReasonDistance)
	}
	if on(c.MinHeading) && fix.HasCourse() && f.last.HasCourse() && speed >= c.HeadingMinSpeed &&
		angleDiff(fix.Course, f.last.Course) >= c.MinHeading {
		return f.report(fix, now, ReasonHeading)
	}
	lastSpeed := f.last.Speed
	if !f.last.HasSpeed() {
		lastSpeed = 0
	}
	if on(c.MinSpeedChange) && math.Abs(speed-lastSpeed) >= c.MinSpeedChange {
		return f.report(fix, now, ReasonSpeed)
	}
	return false, ReasonNone
}

func (f *Filter) report(fix Fix, now time.Time, why Reason) (bool, Reason) {
	f.last, f.lastAt, f.have = fix, now, true
	return true, why
}

// restart forgets everything measured from earlier fixes, keeping the configuration and the buffers. A
// Reader delivers a fix timed before the previous one when the receiver's own time steps back (gpsd
// reports those too); periods and stops timed on the later clock would otherwise hold every fix until
// the receiver's time caught up again, for as long as it stepped back. The fix that stepped back is then
// sent as the first one. Curve mode flushes what it held before.
func (f *Filter) restart() {
	c := f.curve
	c.buf, c.ready, c.stack = c.buf[:0], c.ready[:0], c.stack[:0]
	c.anchor, c.held, c.haveHeld, c.waitFrom = cpoint{}, cpoint{}, false, time.Time{}
	*f = Filter{cfg: f.cfg, curve: c}
}

// angleDiff is the absolute difference of two courses in degrees, in [0, 180].
func angleDiff(a, b float64) float64 {
	d := math.Mod(math.Abs(a-b), 360)
	if d > 180 {
		d = 360 - d
	}
	return d
}
