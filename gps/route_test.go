package gps_test

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/waybill-iot/waybill/gps"
)

// Generated drives for the curve logging tests and the track table: a path of straights, arcs and
// stops, a speed profile a truck can drive (speed limits, lateral acceleration in bends, acceleration
// and braking), sampled at 1 Hz, plus receiver noise. Deterministic for a seed.

// Route kinds.
const (
	routeCity      = "city"
	routeHighway   = "highway"
	routeStopAndGo = "stop-and-go"
)

// piece is one part of a path: a straight (angle 0), an arc (angle degrees, left positive, radius
// metres), or a stop (dwell > 0).
type piece struct {
	length, angle, radius, vmax float64
	dwell                       float64 // seconds standing still at the end of the previous piece
}

// pathBuilder samples a path every ds metres with its speed limit.
type pathBuilder struct {
	x, y, hdg []float64 // metres east, north; heading in radians from north, clockwise
	vlim      []float64 // m/s
	dwell     []float64 // seconds stopped at the sample
}

const ds = 0.5 // metres between path samples

func (b *pathBuilder) add(p piece) {
	n := len(b.x)
	if p.dwell > 0 {
		b.vlim[n-1] = 0
		b.dwell[n-1] += p.dwell
		return
	}
	x, y, h := b.x[n-1], b.y[n-1], b.hdg[n-1]
	length, v := p.length, p.vmax
	var turn float64 // radians of heading per sample
	if p.angle != 0 {
		length = math.Abs(p.angle) * math.Pi / 180 * p.radius
		turn = -p.angle * math.Pi / 180 / (length / ds) // left is anticlockwise: heading decreases
		v = min(v, math.Sqrt(lateralAccel*p.radius))
	}
	for range int(length / ds) {
		h += turn
		x += ds * math.Sin(h)
		y += ds * math.Cos(h)
		b.x, b.y, b.hdg = append(b.x, x), append(b.y, y), append(b.hdg, h)
		b.vlim, b.dwell = append(b.vlim, v), append(b.dwell, 0)
	}
}

const (
	lateralAccel = 2.0 // m/s^2 a loaded truck takes in a bend
	accel        = 0.8 // m/s^2
	brake        = 1.5 // m/s^2
)

// state is the truth at one second of a drive.
type state struct {
	x, y, hdg, v float64
}

// drive turns the pieces into 1 Hz truth: forward and backward passes bound the speed by acceleration
// and braking, time is integrated along the path, and stops hold the truck for their dwell.
func drive(pieces []piece, startDwell float64) []state {
	b := &pathBuilder{x: []float64{0}, y: []float64{0}, hdg: []float64{0}, vlim: []float64{0}, dwell: []float64{startDwell}}
	for _, p := range pieces {
		b.add(p)
	}
	n := len(b.x)
	b.vlim[n-1] = 0
	b.dwell[n-1] += 60 // every drive ends parked, so every mode sees the stop
	v := make([]float64, n)
	for i := 1; i < n; i++ {
		v[i] = min(b.vlim[i], math.Sqrt(v[i-1]*v[i-1]+2*accel*ds))
	}
	for i := n - 2; i >= 0; i-- {
		v[i] = min(v[i], math.Sqrt(v[i+1]*v[i+1]+2*brake*ds))
	}
	arrive, leave := make([]float64, n), make([]float64, n)
	leave[0] = b.dwell[0]
	for i := 1; i < n; i++ {
		arrive[i] = leave[i-1] + ds/math.Max((v[i-1]+v[i])/2, 0.05)
		leave[i] = arrive[i] + b.dwell[i]
	}
	var out []state
	i := 0
	for t := 0.0; t <= leave[n-1]; t++ {
		for i < n-1 && arrive[i+1] <= t {
			i++
		}
		if t < leave[i] || i == n-1 {
			out = append(out, state{b.x[i], b.y[i], b.hdg[i], 0})
			continue
		}
		f := (t - leave[i]) / (arrive[i+1] - leave[i])
		out = append(out, state{b.x[i] + f*(b.x[i+1]-b.x[i]), b.y[i] + f*(b.y[i+1]-b.y[i]),
			b.hdg[i+1], v[i] + f*(v[i+1]-v[i])})
	}
	return out
}

// routePieces composes a drive of the given kind.
func routePieces(kind string, r *rand.Rand) []piece {
	u := func(lo, hi float64) float64 { return lo + r.Float64()*(hi-lo) }
	side := func() float64 {
		if r.IntN(2) == 0 {
			return -1
		}
		return 1
	}
	var ps []piece
	switch kind {
	case routeCity: // about 8 km of 30 and 50 km/h streets, turns, lights, a roundabout, a delivery
		for km := 0.0; km < 8000; {
			vmax := 50 / 3.6
			if r.IntN(3) == 0 {
				vmax = 30 / 3.6
			}
			l := u(80, 400)
			ps = append(ps, piece{length: l, vmax: vmax})
			km += l
			switch x := r.IntN(10); {
			case x < 4: // a junction, often with a red light
				if r.IntN(2) == 0 {
					ps = append(ps, piece{dwell: u(5, 45)})
				}
				ps = append(ps, piece{angle: 90 * side(), radius: u(8, 15), vmax: vmax})
			case x < 7: // a bend
				ps = append(ps, piece{angle: u(10, 40) * side(), radius: u(40, 150), vmax: vmax})
			case x < 8: // a roundabout, second exit
				ps = append(ps, piece{angle: 40, radius: 12, vmax: vmax}, piece{angle: -260, radius: 15, vmax: vmax},
					piece{angle: 40, radius: 12, vmax: vmax})
			case x < 9 && km > 4000 && km < 4500: // the delivery
				ps = append(ps, piece{dwell: 300})
			}
		}
	case routeHighway: // on-ramp, about 30 km at 85-90 km/h with gentle bends, off-ramp loop, a light
		ps = append(ps, piece{length: 300, vmax: 50 / 3.6}, piece{angle: 90, radius: 150, vmax: 60 / 3.6})
		for km := 0.0; km < 30000; {
			l := u(1000, 5000)
			ps = append(ps, piece{length: l, vmax: u(85, 90) / 3.6}, piece{angle: u(5, 30) * side(), radius: u(800, 3000), vmax: 90 / 3.6})
			km += l
		}
		ps = append(ps, piece{length: 400, vmax: 60 / 3.6}, piece{angle: 270, radius: 50, vmax: 50 / 3.6},
			piece{length: 200, vmax: 50 / 3.6}, piece{dwell: 30}, piece{angle: -90, radius: 12, vmax: 30 / 3.6},
			piece{length: 500, vmax: 50 / 3.6})
	case routeStopAndGo: // about 4 km of a congested arterial: crawl, stop, crawl, lane-wide bends
		for km := 0.0; km < 4000; {
			l := u(20, 150)
			ps = append(ps, piece{length: l, vmax: u(3, 12)})
			km += l
			if r.IntN(2) == 0 {
				ps = append(ps, piece{dwell: u(2, 40)})
			}
			if r.IntN(4) == 0 {
				ps = append(ps, piece{angle: u(3, 20) * side(), radius: u(60, 300), vmax: 12})
			}
		}
	}
	return ps
}

// noise is a receiver's error: a first-order Gauss-Markov bias per axis (the slow wander of a GNSS
// position, sigma metres, correlation time tau seconds) plus a little white noise after the receiver's
// own smoothing; Doppler speed noise; course noise that grows as the truck slows.
type noise struct {
	r          *rand.Rand
	sigma, tau float64
	bx, by, ba float64
}

func (n *noise) step() {
	a := math.Exp(-1 / n.tau)
	k := n.sigma * math.Sqrt(1-a*a)
	n.bx = a*n.bx + k*n.r.NormFloat64()
	n.by = a*n.by + k*n.r.NormFloat64()
	n.ba = a*n.ba + 2*k*n.r.NormFloat64() // altitude wanders about twice as much
}

var routeStart = time.Date(2026, 5, 4, 8, 0, 0, 0, time.UTC)

// genRoute is a 1 Hz drive of kind with receiver noise; the same seed gives the same drive. It also
// returns the true distance driven, in metres.
func genRoute(kind string, seed uint64) ([]gps.Fix, float64) {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	truth := drive(routePieces(kind, r), 20)
	sigma := 2.0 // metres: city streets bring multipath
	if kind == routeHighway {
		sigma = 1.5
	}
	nz := &noise{r: r, sigma: sigma, tau: 60}
	nz.bx, nz.by = sigma*r.NormFloat64(), sigma*r.NormFloat64()
	lat0, lon0 := 52.0, 5.0
	cos0 := math.Cos(lat0 * math.Pi / 180)
	const m = 6371008.8 * math.Pi / 180
	sats, hdop := 11, 0.9
	fixes := make([]gps.Fix, 0, len(truth))
	var length float64
	for i, s := range truth {
		if i > 0 {
			length += math.Hypot(s.x-truth[i-1].x, s.y-truth[i-1].y)
		}
		nz.step()
		x := s.x + nz.bx + 0.1*r.NormFloat64()
		y := s.y + nz.by + 0.1*r.NormFloat64()
		speed := math.Max(0, s.v+0.1*r.NormFloat64())
		crs := s.hdg*180/math.Pi + (0.15/math.Max(s.v, 0.15))*180/math.Pi*r.NormFloat64()
		crs = math.Mod(math.Mod(crs, 360)+360, 360)
		if r.IntN(50) == 0 {
			sats = min(14, max(7, sats+r.IntN(3)-1))
		}
		if r.IntN(3) == 0 {
			hdop = min(1.6, max(0.6, hdop+0.01*float64(r.IntN(3)-1)))
		}
		fixes = append(fixes, gps.Fix{Time: routeStart.Add(time.Duration(i) * time.Second),
			Lat: lat0 + y/m, Lon: lon0 + x/(m*cos0), Alt: 12 + nz.ba, Speed: speed, Course: crs,
			Mode: gps.Mode3D, Sats: sats, HDOP: math.Round(hdop*100) / 100, PDOP: math.NaN()})
	}
	return fixes, length
}
