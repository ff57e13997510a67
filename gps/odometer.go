package gps

import "math"

// OdometerConfig holds the odometer's noise thresholds. A zero field takes the default in brackets; the
// numbers are justified in Odometer's doc and measured by TestOdometerCaptures.
type OdometerConfig struct {
	// StillSpeed: a fix slower than this (the receiver's Doppler speed, or the speed between fixes when it
	// gives none) may be a standing truck's jitter [1.0 m/s, 3.6 km/h].
	StillSpeed float64
	// RadiusPerHDOP, in metres: the noise radius is HDOP x RadiusPerHDOP [10]. Two fixes of a standing
	// receiver differ by about 2 x HDOP metres per axis (1.5 x HDOP each, correlated over tens of seconds;
	// the real captures in testdata/nmea wander over boxes of 4-15 m at HDOP 1-3.6); 10 x HDOP keeps a
	// standing hour under 10 m (TestOdometerStandingHour).
	RadiusPerHDOP float64
	// MinRadius is the smallest noise radius, whatever the HDOP [10 m].
	MinRadius float64
	// NoHDOP is the HDOP assumed when the receiver gives none [2].
	NoHDOP float64
	// MaxHDOP: fixes with a worse HDOP are not counted at all [5, as the reporting filter].
	MaxHDOP float64
	// MinSats: fixes from fewer satellites are not counted [5]. Four satellites leave no redundancy, so one
	// bad pseudorange moves the position unnoticed: a receiver converging after a cold start wanders by
	// a hundred metres that way (blumax-gps009 in testdata/nmea). Fixes without a count are counted.
	MinSats int
	// MaxSpeed: a fix further from the last counted one than this speed allows is a jump, not driving, and
	// is ignored [70 m/s, 252 km/h].
	MaxSpeed float64
	// Believe: after this many ignored jumps in a row the new position is taken as the truth, without adding
	// the jump (the receiver was wrong before, or the truck was carried) [5].
	Believe int
}

func (c OdometerConfig) withDefaults() OdometerConfig {
	num := func(v *float64, d float64) {
		if *v <= 0 {
			*v = d
		}
	}
	num(&c.StillSpeed, 1.0)
	num(&c.RadiusPerHDOP, 10)
	num(&c.MinRadius, 10)
	num(&c.NoHDOP, 2)
	num(&c.MaxHDOP, 5)
	num(&c.MaxSpeed, 70)
	if c.MinSats <= 0 {
		c.MinSats = 5
	}
	if c.Believe <= 0 {
		c.Believe = 5
	}
	return c
}

// OdometerStats counts what the odometer did with the fixes it was given.
type OdometerStats struct {
	Counted   uint64  // fixes whose step was added
	Held      uint64  // fixes of a standing truck inside the noise radius: nothing added
	BadHDOP   uint64  // fixes above MaxHDOP or below MinSats: ignored
	Jumps     uint64  // fixes too far for MaxSpeed: ignored
	Rebased   uint64  // times the position was believed after Believe jumps (nothing added)
	TimeSteps uint64  // fixes timed before the previous one: counting started again from them
	HeldSteps float64 // metres of fix-to-fix movement the noise gate kept out (what a naive sum would add)
}

// Odometer adds up the distance a truck drives from every fix of the receiver (1 Hz), not only the reported
// ones: the reporting filter drops most fixes and would cut every corner.
//
// A standing truck's fixes wander by metres (multipath, satellites rising and setting), and a naive sum of
// fix-to-fix distances turns that into kilometres a day. So the odometer keeps an anchor, the last fix it
// counted, and adds the distance from the anchor only when the truck is moving: when the fix's speed is at
// least StillSpeed, or when it is slower but the position has left the noise radius around the anchor
// (max(MinRadius, HDOP x RadiusPerHDOP), with the worse HDOP of the two fixes). A truck creeping in a traffic jam
// therefore still counts: its movement is added in steps once it exceeds the radius, never lost, only
// delayed. Fixes with an HDOP over MaxHDOP are ignored, and so are jumps the truck could not have driven
// (faster than MaxSpeed from the anchor); after Believe jumps in a row the new position becomes the anchor
// without adding anything. Gaps (a tunnel, a lost fix) add the straight line across them.
//
// Odometer is pure: no goroutines, no I/O, time from the fixes. Not safe for concurrent use.
type Odometer struct {
	cfg    OdometerConfig
	anchor Fix // last counted fix
	prev   Fix // last fix seen (for a speed when the receiver gives none)
	have   bool
	jumps  int
	total  float64
	stats  OdometerStats
}

// NewOdometer returns an odometer starting at start metres.
func NewOdometer(cfg OdometerConfig, start float64) *Odometer {
	return &Odometer{cfg: cfg.withDefaults(), total: start}
}

// Metres is the odometer's reading.
func (o *Odometer) Metres() float64 { return o.total }

// Set changes the reading (the vehicle's own odometer was read off), keeping the anchor.
func (o *Odometer) Set(m float64) { o.total = m }

// Stats returns the counters.
func (o *Odometer) Stats() OdometerStats { return o.stats }

// radius is the noise radius around a fix: how far a standing truck's fixes may wander.
func (o *Odometer) radius(f Fix) float64 {
	h := f.HDOP
	if !f.HasHDOP() {
		h = o.cfg.NoHDOP
	}
	return math.Max(o.cfg.MinRadius, h*o.cfg.RadiusPerHDOP)
}

// Next takes every fix in time order and returns the metres it added (0 for a standing truck).
func (o *Odometer) Next(f Fix) float64 {
	c := o.cfg
	if f.HasHDOP() && f.HDOP > c.MaxHDOP || f.Sats > 0 && f.Sats < c.MinSats {
		o.stats.BadHDOP++
		return 0
	}
	if !o.have {
		o.anchor, o.prev, o.have = f, f, true
		return 0
	}
	if f.Time.Equal(o.prev.Time) {
		return 0 // a repeat
	}
	if f.Time.Before(o.prev.Time) {
		// The receiver's time stepped back (a Reader delivers that, as gpsd does): speeds and the standing
		// test cannot span the step, so counting starts again from here. At most one step is not counted.
		o.stats.TimeSteps++
		o.anchor, o.prev, o.jumps = f, f, 0
		return 0
	}
	step := Distance(o.prev.Lat, o.prev.Lon, f.Lat, f.Lon)
	speed := f.Speed
	if !f.HasSpeed() {
		speed = step / f.Time.Sub(o.prev.Time).Seconds()
	}
	d := Distance(o.anchor.Lat, o.anchor.Lon, f.Lat, f.Lon)
	dt := f.Time.Sub(o.anchor.Time).Seconds()
	if d > c.MaxSpeed*dt {
		o.stats.Jumps++
		o.jumps++
		if o.jumps >= c.Believe {
			o.stats.Rebased++
			o.anchor, o.prev, o.jumps = f, f, 0
		}
		return 0
	}
	o.jumps = 0
	o.prev = f
	if speed < c.StillSpeed && d < math.Max(o.radius(f), o.radius(o.anchor)) {
		o.stats.Held++
		o.stats.HeldSteps += step
		return 0
	}
	o.anchor = f
	o.total += d
	o.stats.Counted++
	return d
}
