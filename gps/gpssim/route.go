package gpssim

import (
	"math"
	"math/rand/v2"
	"time"
)

// LatLon is a point in degrees.
type LatLon struct{ Lat, Lon float64 }

// DefaultStart is the depot used when RouteConfig.Start is zero.
var DefaultStart = LatLon{52.3702, 4.8952}

// RouteConfig shapes a synthetic delivery loop. Every zero field takes the default in brackets.
type RouteConfig struct {
	Start       LatLon        // depot where the loop starts and ends [DefaultStart]
	Seed        uint64        // different seeds give different streets, stops and outages [0 is a seed too]
	Legs        int           // streets in the loop before heading back [10]
	MinLeg      float64       // shortest street in metres [150]
	MaxLeg      float64       // longest street in metres [600]
	Cruise      float64       // speed on a street in m/s [11, about 40 km/h]
	StopEvery   int           // a delivery stop at the end of every n-th street [3]
	StopFor     time.Duration // length of a stop [45 s]
	TunnelLen   float64       // metres of one street without sky view, once per loop; negative: none [250]
	LostFixRate float64       // fraction of epochs with a lost fix outside the tunnel; negative: none [0.01]
}

func (c RouteConfig) withDefaults() RouteConfig {
	if c.Start == (LatLon{}) {
		c.Start = DefaultStart
	}
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Legs <= 0 {
		c.Legs = 10
	}
	def(&c.MinLeg, 150)
	def(&c.MaxLeg, 600)
	def(&c.Cruise, 11)
	if c.StopEvery <= 0 {
		c.StopEvery = 3
	}
	if c.StopFor <= 0 {
		c.StopFor = 45 * time.Second
	}
	def(&c.TunnelLen, 250)
	def(&c.LostFixRate, 0.01)
	return c
}

// segment is one street, or a stop (length 0, dwell > 0).
type segment struct {
	from, to   [2]float64 // metres east, north of the start
	length     float64
	course     float64 // degrees true
	dwell      time.Duration
	start      time.Duration // time into the loop when the segment begins
	dur        time.Duration
	tunnelFrom float64 // metres into the street where the tunnel starts; tunnelTo > tunnelFrom if any
	tunnelTo   float64
}

// Route is a closed loop of streets on a grid, driven at cruise speed with slow corners, delivery stops
// and one tunnel. It is deterministic for a given RouteConfig.
type Route struct {
	cfg  RouteConfig
	segs []segment
	loop time.Duration
}

// State is where the truck is at one instant.
type State struct {
	Pos    LatLon
	Speed  float64 // m/s
	Course float64 // degrees true
	Tunnel bool    // no sky view: the receiver has no fix
	Stop   bool    // standing at a delivery
}

// NewRoute builds the loop.
func NewRoute(cfg RouteConfig) *Route {
	cfg = cfg.withDefaults()
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15))
	r := &Route{cfg: cfg}
	var pos [2]float64
	dir := rng.IntN(4) // 0 north, 1 east, 2 south, 3 west
	var pts [][2]float64
	pts = append(pts, pos)
	for range cfg.Legs {
		l := cfg.MinLeg + rng.Float64()*(cfg.MaxLeg-cfg.MinLeg)
		pos = step(pos, dir, l)
		pts = append(pts, pos)
		if rng.IntN(2) == 0 {
			dir = (dir + 1) % 4
		} else {
			dir = (dir + 3) % 4
		}
	}
	// Back to the depot along the grid: first east-west, then north-south.
	if pos[0] != 0 {
		pos = [2]float64{0, pos[1]}
		pts = append(pts, pos)
	}
	if pos[1] != 0 {
		pts = append(pts, [2]float64{0, 0})
	}
	longest := 0
	for i := 1; i < len(pts); i++ {
		d := dist(pts[i-1], pts[i])
		if d > dist(pts[longest], pts[longest+1]) {
			longest = i - 1
		}
	}
	var t time.Duration
	for i := 1; i < len(pts); i++ {
		s := segment{from: pts[i-1], to: pts[i], length: dist(pts[i-1], pts[i])}
		if s.length < 1 {
			continue
		}
		s.course = math.Mod(math.Atan2(s.to[0]-s.from[0], s.to[1]-s.from[1])*180/math.Pi+360, 360)
		if i-1 == longest && cfg.TunnelLen > 0 {
			l := math.Min(cfg.TunnelLen, s.length/2)
			s.tunnelFrom = (s.length - l) / 2
			s.tunnelTo = s.tunnelFrom + l
		}
		s.start = t
		s.dur = r.driveTime(s.length)
		t += s.dur
		r.segs = append(r.segs, s)
		if i%cfg.StopEvery == 0 || i == len(pts)-1 {
			r.segs = append(r.segs, segment{from: s.to, to: s.to, course: s.course, dwell: cfg.StopFor, start: t, dur: cfg.StopFor})
			t += cfg.StopFor
		}
	}
	r.loop = t
	return r
}

func step(p [2]float64, dir int, l float64) [2]float64 {
	switch dir {
	case 0:
		p[1] += l
	case 1:
		p[0] += l
	case 2:
		p[1] -= l
	default:
		p[0] -= l
	}
	return p
}

func dist(a, b [2]float64) float64 { return math.Hypot(b[0]-a[0], b[1]-a[1]) }

// Corners are taken at cornerSpeed, reached with accel over rampLen.
const (
	cornerSpeed = 3.0
	rampLen     = 40.0
)

// speedAt is the speed profile along a street: slow at both ends, cruise in the middle.
func (r *Route) speedAt(x, length float64) float64 {
	edge := math.Min(x, length-x)
	if edge >= rampLen {
		return r.cfg.Cruise
	}
	return cornerSpeed + (r.cfg.Cruise-cornerSpeed)*math.Max(0, edge)/rampLen
}

// driveTime integrates the speed profile in 1 m steps.
func (r *Route) driveTime(length float64) time.Duration {
	var s float64
	for x := 0.5; x < length; x++ {
		s += 1 / r.speedAt(x, length)
	}
	return time.Duration(s * float64(time.Second))
}

// Loop is the time one round of the loop takes.
func (r *Route) Loop() time.Duration { return r.loop }

// At returns the truck's state at time d after the start; the loop repeats forever.
func (r *Route) At(d time.Duration) State {
	d %= r.loop
	if d < 0 {
		d += r.loop
	}
	i := 0
	for i < len(r.segs)-1 && r.segs[i].start+r.segs[i].dur <= d {
		i++
	}
	s := r.segs[i]
	if s.dwell > 0 {
		return State{Pos: r.toLatLon(s.to), Course: s.course, Stop: true}
	}
	// Walk the profile to find the distance covered after (d - start).
	want := (d - s.start).Seconds()
	var x, el float64
	for x < s.length {
		dt := 1 / r.speedAt(x+0.5, s.length)
		if el+dt > want {
			x += (want - el) / dt
			break
		}
		el += dt
		x++
	}
	x = math.Min(x, s.length)
	f := x / s.length
	p := [2]float64{s.from[0] + f*(s.to[0]-s.from[0]), s.from[1] + f*(s.to[1]-s.from[1])}
	return State{Pos: r.toLatLon(p), Speed: r.speedAt(x, s.length), Course: s.course,
		Tunnel: x >= s.tunnelFrom && x < s.tunnelTo}
}

// toLatLon converts metres east/north of the start to degrees (equirectangular: exact enough for a few km).
func (r *Route) toLatLon(p [2]float64) LatLon {
	const m = 111320.0
	return LatLon{Lat: r.cfg.Start.Lat + p[1]/m, Lon: r.cfg.Start.Lon + p[0]/(m*math.Cos(r.cfg.Start.Lat*math.Pi/180))}
}
