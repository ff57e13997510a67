package gps

import (
	"math"
	"time"
)

// Curve logging (FilterCurve).
//
// Fixes after the last logged one (the anchor) wait in a buffer. A buffer is simplified with
// Ramer-Douglas-Peucker whose distance is time-synchronised: a fix is compared with the point of the
// straight line between two logged fixes at the fix's own time, and its speed with the speed linearly
// interpolated between theirs, each divided by its bound (PositionError, SpeedError), so one pass keeps
// what either needs. That is the error a consumer sees when it redraws the track and replays the speed
// from the logged fixes alone, and what the tests and the benchmark measure.
//
// Simplification runs when a trigger fires:
//   - the newest fix departs from what the anchor predicts (its speed and course, straight on) by more
//     than PositionError, or its speed by more than SpeedError: the vertices found before the newest fix
//     are logged and it stays undecided with those after the last vertex (a partial commit);
//   - the buffer is full: a partial commit, and if the whole buffer fits one line, its newest fix is logged;
//   - the truck stops or starts, Timeout passed since the anchor while moving (StoppedPeriod while
//     stopped), or the first fix after the last release waited MaxDelay: the vertices and the newest
//     fix are logged (a full commit), so dispatch gets the newest position.
//
// Vertices found by partial commits are not released at once: they wait (bounded, Buffer of them) for
// the next full commit and go out with it. The fixes of a drive thus leave in one burst per MaxDelay,
// one signed message instead of one per bend, and none waits longer than MaxDelay.
//
// Every logged segment is a segment of some RDP result, so every dropped fix is within the bounds of the
// segment that replaces it.
//
// While stopped, a fix within half the bounds of the anchor (position and speed) is not buffered: only
// the last such fix is held, and logged when a fix that is not absorbed arrives (or at StoppedPeriod).
// Every absorbed fix and the held one are then within half a bound of the anchor, so within a whole
// bound of the line between them: a long stop costs one slot, not a buffer full of jitter.

// maxCurveBuffer bounds FilterConfig.Buffer: an hour at 1 Hz, about 400 KiB.
const maxCurveBuffer = 4096

// metresPerDegree is one degree of latitude on Distance's sphere.
const metresPerDegree = 6371008.8 * math.Pi / 180

// cpoint is one fix of curve mode, placed in a local plane centred on the anchor. Over the few
// kilometres a buffer spans, this equirectangular projection is off by millimetres.
type cpoint struct {
	fix  Fix
	x, y float64   // metres east and north of the anchor
	t    float64   // seconds after the anchor
	v    float64   // speed, m/s; NaN if unknown
	at   time.Time // when it arrived ("now": its GPS time or the injected clock)
}

// curve is curve mode's state. Its slices are allocated once, by init, and never grow.
type curve struct {
	anchor   cpoint     // the last logged fix
	cosLat   float64    // cos of the anchor's latitude, for the projection
	buf      []cpoint   // undecided fixes after the anchor, oldest first; len < cap between pushes
	keep     []bool     // RDP marks over anchor (0) and buf (1..len)
	stack    [][2]int32 // RDP's pending segments
	held     cpoint     // last fix absorbed while stopped
	haveHeld bool
	// ready holds vertices decided but not yet released. They leave with the next full commit, so a
	// drive's fixes go out in one burst per MaxDelay, not one per bend: each burst becomes one signed
	// message instead of several.
	ready []Logged
	// waitFrom is when the first fix after the last release arrived (zero: none yet). MaxDelay counts
	// from it, so every fix is released or dropped within MaxDelay, and while the truck moves the newest
	// released fix is never older than MaxDelay.
	waitFrom time.Time
}

func (c *curve) init(n int) {
	c.buf = make([]cpoint, 0, n)
	c.keep = make([]bool, n+1)
	c.stack = make([][2]int32, 0, n+2)
	c.ready = make([]Logged, 0, n)
}

func (c *curve) pending() int {
	n := len(c.buf) + len(c.ready)
	if c.haveHeld {
		n++
	}
	return n
}

// pt is point i of the polyline being simplified: the anchor, then the buffer.
func (c *curve) pt(i int) *cpoint {
	if i == 0 {
		return &c.anchor
	}
	return &c.buf[i-1]
}

// project places p in the anchor's plane.
func (c *curve) project(p *cpoint) {
	dlon := p.fix.Lon - c.anchor.fix.Lon
	if dlon > 180 {
		dlon -= 360
	} else if dlon < -180 {
		dlon += 360
	}
	p.x = dlon * metresPerDegree * c.cosLat
	p.y = (p.fix.Lat - c.anchor.fix.Lat) * metresPerDegree
	p.t = p.fix.Time.Sub(c.anchor.fix.Time).Seconds()
}

// setAnchor makes p the last logged fix and re-projects the buffer around it, so the plane follows the
// truck however long a drive is.
func (c *curve) setAnchor(p cpoint) {
	c.anchor = p
	c.anchor.x, c.anchor.y, c.anchor.t = 0, 0, 0
	c.cosLat = math.Cos(p.fix.Lat * math.Pi / 180)
	for i := range c.buf {
		c.project(&c.buf[i])
	}
}

// excess is how far point i is from the segment a-b, as a multiple of the bounds (above 1: too far).
// e and s are the bounds, +Inf when a bound is disabled.
func (c *curve) excess(a, i, b int, e, s float64) float64 {
	pa, pi, pb := c.pt(a), c.pt(i), c.pt(b)
	frac := (pi.t - pa.t) / (pb.t - pa.t) // times strictly increase, so 0 < frac < 1
	ex, ey := pa.x+frac*(pb.x-pa.x), pa.y+frac*(pb.y-pa.y)
	r := math.Hypot(pi.x-ex, pi.y-ey) / e
	if !math.IsNaN(pa.v) && !math.IsNaN(pi.v) && !math.IsNaN(pb.v) {
		r = max(r, math.Abs(pi.v-(pa.v+frac*(pb.v-pa.v)))/s)
	}
	return r
}

// simplify runs Ramer-Douglas-Peucker over the anchor and the buffer and sets keep. It works with an
// explicit stack (no recursion, no allocation): the stack never holds more segments than points.
func (c *curve) simplify(e, s float64) {
	n := len(c.buf)
	clear(c.keep[:n+1])
	c.keep[0], c.keep[n] = true, true
	st := append(c.stack[:0], [2]int32{0, int32(n)})
	for len(st) > 0 {
		seg := st[len(st)-1]
		st = st[:len(st)-1]
		a, b := int(seg[0]), int(seg[1])
		worst, at := 1.0, -1
		for i := a + 1; i < b; i++ {
			if d := c.excess(a, i, b, e, s); d > worst {
				worst, at = d, i
			}
		}
		if at < 0 {
			continue
		}
		c.keep[at] = true
		st = append(st, [2]int32{int32(a), int32(at)}, [2]int32{int32(at), int32(b)})
	}
	c.stack = st[:0]
}

// departs reports whether p is off what the anchor predicts: straight on at its speed and course, at
// its speed.
func (c *curve) departs(p *cpoint, e, s float64) bool {
	a := &c.anchor.fix
	var px, py float64
	if a.HasSpeed() && a.HasCourse() {
		r := a.Course * math.Pi / 180
		px, py = a.Speed*math.Sin(r)*p.t, a.Speed*math.Cos(r)*p.t
	}
	if math.Hypot(p.x-px, p.y-py) > e {
		return true
	}
	return !math.IsNaN(p.v) && !math.IsNaN(c.anchor.v) && math.Abs(p.v-c.anchor.v) > s
}

// absorbs reports whether p is within half the bounds of the anchor (see the comment at the top).
func (c *curve) absorbs(p *cpoint, e, s float64) bool {
	if math.Hypot(p.x, p.y) > e/2 {
		return false
	}
	return math.IsNaN(p.v) || math.IsNaN(c.anchor.v) || math.Abs(p.v-c.anchor.v) <= s/2
}

// bound turns a configured error bound into the divisor of excess: disabled (negative) is +Inf.
func bound(v float64) float64 {
	if v < 0 {
		return math.Inf(1)
	}
	return v
}

func (f *Filter) bounds() (e, s float64) { return bound(f.cfg.PositionError), bound(f.cfg.SpeedError) }

// validFix rejects what no track can hold: positions out of range or not numbers.
func validFix(fix Fix) bool {
	return fix.Lat >= -90 && fix.Lat <= 90 && fix.Lon >= -180 && fix.Lon <= 180
}

func (f *Filter) pushCurve(fix Fix, dst []Logged) []Logged {
	cfg := &f.cfg
	c := &f.curve
	if !validFix(fix) || on(cfg.MaxHDOP) && fix.HasHDOP() && fix.HDOP > cfg.MaxHDOP {
		return dst
	}
	// Time must go forward: interpolating in time needs it. A repeat is dropped; when the receiver's time
	// steps back, what is held is sent and the filter starts over from this fix.
	if f.havePrev && !fix.Time.After(f.prev.Time) {
		if fix.Time.Equal(f.prev.Time) {
			return dst
		}
		dst = f.flushCurve(dst)
		f.restart()
	}
	now := fix.Time
	if cfg.Clock != nil {
		now = cfg.Clock()
	}
	speed := fix.Speed
	if !(speed >= 0 && speed < 1000) { // absent, or nonsense from a broken receiver
		speed = math.NaN()
	}
	p := cpoint{fix: fix, v: speed, at: now}
	if math.IsNaN(speed) {
		speed = 0
		if f.havePrev {
			if dt := fix.Time.Sub(f.prev.Time).Seconds(); dt > 0 {
				speed = Distance(f.prev.Lat, f.prev.Lon, fix.Lat, fix.Lon) / dt
			}
		}
	}
	f.prev, f.havePrev = fix, true
	if !f.have {
		f.have = true
		f.stopped = on(cfg.StopSpeed) && speed < cfg.StopSpeed
		f.stopPos = fix
		c.setAnchor(p)
		return append(dst, Logged{fix, ReasonFirst})
	}
	trans := f.motion(fix, speed, now)
	c.project(&p)
	e, s := f.bounds()
	if f.stopped && trans == ReasonNone && len(c.buf) == 0 && c.absorbs(&p, e, s) {
		c.held, c.haveHeld = p, true
		if on(float64(cfg.StoppedPeriod)) && now.Sub(c.anchor.at) >= cfg.StoppedPeriod {
			dst = f.logAnchor(dst, p, ReasonStoppedPeriod)
		}
		return dst
	}
	if c.haveHeld {
		dst = f.logAnchor(dst, c.held, ReasonCurve)
		c.project(&p)
	}
	c.buf = append(c.buf, p) // there is room: every push ends with len(buf) < cap(buf)
	c.waiting(now)
	switch {
	case trans != ReasonNone:
		dst = f.commitAll(dst, trans)
	case f.stopped && on(float64(cfg.StoppedPeriod)) && now.Sub(c.anchor.at) >= cfg.StoppedPeriod:
		dst = f.commitAll(dst, ReasonStoppedPeriod)
	case !f.stopped && on(float64(cfg.Timeout)) && now.Sub(c.anchor.at) >= cfg.Timeout:
		dst = f.commitAll(dst, ReasonTimeout)
	case on(float64(cfg.MaxDelay)) && now.Sub(c.waitFrom) >= cfg.MaxDelay:
		dst = f.commitAll(dst, ReasonDelay)
	case len(c.buf) == cap(c.buf):
		if dst = f.commitVertices(dst); len(c.buf) == cap(c.buf) {
			dst = f.commitAll(dst, ReasonFull)
		}
	case c.departs(&p, e, s):
		dst = f.commitVertices(dst)
	}
	return dst
}

// waiting notes that a fix arriving at at now waits for the next release.
func (c *curve) waiting(at time.Time) {
	if c.waitFrom.IsZero() {
		c.waitFrom = at
	}
}

// vertex queues a decided vertex for the next release; if the queue is full, it releases the queue.
func (c *curve) vertex(dst []Logged, p *cpoint) []Logged {
	if len(c.ready) == cap(c.ready) {
		dst = c.release(dst)
	}
	c.waiting(p.at)
	c.ready = append(c.ready, Logged{p.fix, ReasonCurve})
	return dst
}

func (c *curve) release(dst []Logged) []Logged {
	dst = append(dst, c.ready...)
	c.ready = c.ready[:0]
	return dst
}

// logAnchor makes p the anchor and logs it: a plain vertex (ReasonCurve) waits for the next release,
// any other reason releases everything ready and p.
func (f *Filter) logAnchor(dst []Logged, p cpoint, why Reason) []Logged {
	c := &f.curve
	c.haveHeld = false
	c.setAnchor(p)
	if why == ReasonCurve {
		return c.vertex(dst, &p)
	}
	c.waitFrom = time.Time{} // the buffer is empty: commitAll emptied it, or nothing was buffered
	return append(c.release(dst), Logged{p.fix, why})
}

// commitVertices logs the vertices RDP finds before the newest fix; the fixes after the last of them
// stay undecided, measured from it.
func (f *Filter) commitVertices(dst []Logged) []Logged {
	c := &f.curve
	c.simplify(f.bounds())
	last := 0
	for i := 1; i < len(c.buf); i++ {
		if c.keep[i] {
			dst = c.vertex(dst, &c.buf[i-1])
			last = i
		}
	}
	if last == 0 {
		return dst
	}
	anchor := c.buf[last-1]
	c.buf = c.buf[:copy(c.buf, c.buf[last:])]
	c.setAnchor(anchor)
	return dst
}

// commitAll logs the vertices RDP finds and the newest fix, for why, and empties the buffer.
func (f *Filter) commitAll(dst []Logged, why Reason) []Logged {
	c := &f.curve
	n := len(c.buf)
	if n == 0 {
		return dst
	}
	c.simplify(f.bounds())
	for i := 1; i < n; i++ {
		if c.keep[i] {
			dst = c.vertex(dst, &c.buf[i-1])
		}
	}
	newest := c.buf[n-1]
	c.buf = c.buf[:0]
	return f.logAnchor(dst, newest, why)
}

func (f *Filter) flushCurve(dst []Logged) []Logged {
	c := &f.curve
	if len(c.buf) > 0 {
		return f.commitAll(dst, ReasonEnd)
	}
	if c.haveHeld {
		return f.logAnchor(dst, c.held, ReasonEnd)
	}
	return c.release(dst)
}

// motion updates the stopped/moving state as Next does (slow for StopAfter to stop; clearly faster, or
// away from the stop point, to move again) and returns ReasonStopped or ReasonMoving on a transition.
func (f *Filter) motion(fix Fix, speed float64, now time.Time) Reason {
	c := &f.cfg
	if f.stopped {
		if on(c.StartSpeed) && speed > c.StartSpeed ||
			on(c.StartDistance) && Distance(f.stopPos.Lat, f.stopPos.Lon, fix.Lat, fix.Lon) > c.StartDistance {
			f.stopped, f.slowFrom = false, time.Time{}
			return ReasonMoving
		}
		return ReasonNone
	}
	if on(c.StopSpeed) && speed < c.StopSpeed {
		if f.slowFrom.IsZero() {
			f.slowFrom = now
		} else if now.Sub(f.slowFrom) >= c.StopAfter {
			f.stopped, f.stopPos, f.slowFrom = true, fix, time.Time{}
			return ReasonStopped
		}
	} else {
		f.slowFrom = time.Time{}
	}
	return ReasonNone
}
