package gps_test

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps"
)

// emitted is a logged fix and the time of the push that released it.
type emitted struct {
	gps.Logged
	at time.Time
}

// runFilter pushes every fix through a new filter, then flushes it.
func runFilter(cfg gps.FilterConfig, fixes []gps.Fix) []emitted {
	f := gps.NewFilter(cfg)
	var out []emitted
	var dst []gps.Logged
	for _, fix := range fixes {
		dst = f.Push(fix, dst[:0])
		for _, l := range dst {
			out = append(out, emitted{l, fix.Time})
		}
	}
	for _, l := range f.Flush(nil) {
		out = append(out, emitted{l, fixes[len(fixes)-1].Time})
	}
	return out
}

func loggedFixes(es []emitted) []gps.Fix {
	out := make([]gps.Fix, len(es))
	for i, e := range es {
		out[i] = e.Fix
	}
	return out
}

// trackErrors redraws the track from the logged fixes as a consumer would (straight lines, positions and
// speeds interpolated in time, the nearest logged fix before the first or after the last) and returns,
// for each 1 Hz fix, its distance from that track in metres and its speed's difference in m/s (NaN if a
// speed is missing).
func trackErrors(fixes, logged []gps.Fix) (pos, spd []float64) {
	pos, spd = make([]float64, len(fixes)), make([]float64, len(fixes))
	j := 0
	for i, f := range fixes {
		for j < len(logged)-1 && !logged[j+1].Time.After(f.Time) {
			j++
		}
		a, b := logged[j], logged[j]
		if j < len(logged)-1 && f.Time.After(a.Time) {
			b = logged[j+1]
		}
		frac := 0.0
		if dt := b.Time.Sub(a.Time); dt > 0 {
			frac = math.Max(0, float64(f.Time.Sub(a.Time))/float64(dt))
		}
		lat, lon := a.Lat+frac*(b.Lat-a.Lat), a.Lon+frac*(b.Lon-a.Lon)
		pos[i] = gps.Distance(f.Lat, f.Lon, lat, lon)
		spd[i] = math.Abs(f.Speed - (a.Speed + frac*(b.Speed-a.Speed)))
	}
	return pos, spd
}

// checkInvariant fails t if a fix is further from the logged track than the bounds, or if the logged
// fixes are not input fixes in order, starting with the first and ending with the last.
func checkInvariant(t *testing.T, name string, fixes []gps.Fix, es []emitted, posErr, spdErr float64) {
	t.Helper()
	logged := loggedFixes(es)
	if len(logged) == 0 || !logged[0].Time.Equal(fixes[0].Time) || !logged[len(logged)-1].Time.Equal(fixes[len(fixes)-1].Time) {
		t.Fatalf("%s: the first and last fixes must be logged (%d logged)", name, len(logged))
	}
	k := 0
	for i, l := range logged {
		for k < len(fixes) && !fixes[k].Time.Equal(l.Time) {
			k++
		}
		if k == len(fixes) || fixes[k].Lat != l.Lat || fixes[k].Lon != l.Lon {
			t.Fatalf("%s: logged fix %d (%s) is not the next input fix", name, i, l.Time)
		}
	}
	pos, spd := trackErrors(fixes, logged)
	for i := range fixes {
		// 1 cm: the filter measures in a local plane, trackErrors on the sphere.
		if pos[i] > posErr+0.01 || spd[i] > spdErr+1e-9 {
			t.Fatalf("%s: fix %d (%s) is %.3f m and %.3f m/s from the logged track; bounds %.1f m, %.2f m/s",
				name, i, fixes[i].Time, pos[i], spd[i], posErr, spdErr)
		}
	}
}

// The RDP invariant on every generated drive and error bound: every dropped fix is within the bounds of
// the track redrawn from the logged ones.
func TestCurveInvariant(t *testing.T) {
	for _, kind := range []string{routeCity, routeHighway, routeStopAndGo} {
		for seed := uint64(1); seed <= 3; seed++ {
			fixes, _ := genRoute(kind, seed)
			for _, b := range []float64{2, 5, 10} {
				cfg := gps.FilterConfig{Mode: gps.FilterCurve, PositionError: b, SpeedError: b / 3.6}
				es := runFilter(cfg, fixes)
				checkInvariant(t, kind, fixes, es, b, b/3.6)
				if len(es) >= len(fixes)/2 {
					t.Errorf("%s seed %d, %g m: %d of %d fixes logged", kind, seed, b, len(es), len(fixes))
				}
			}
		}
	}
}

// straight is a noiseless drive north at constant speed v for n seconds, then parked for park seconds.
func straight(n int, v float64, park int) []gps.Fix {
	var out []gps.Fix
	lat := 52.0
	for i := range n + park {
		s := v
		if i >= n {
			s = 0
		} else if i > 0 {
			lat += v / 111195.0
		}
		out = append(out, gps.Fix{Time: routeStart.Add(time.Duration(i) * time.Second), Lat: lat, Lon: 5,
			Alt: math.NaN(), Speed: s, Course: 0, Mode: gps.Mode3D, HDOP: math.NaN(), PDOP: math.NaN()})
	}
	return out
}

func reasons(es []emitted) []gps.Reason {
	var out []gps.Reason
	for _, e := range es {
		out = append(out, e.Reason)
	}
	return out
}

// A stop and the start after it are logged with their reasons, the place where the truck came to rest
// and where it left are on the track, and a long stop costs a handful of fixes, not one a minute.
func TestCurveStopStart(t *testing.T) {
	fixes, _ := genRoute(routeCity, 7)
	es := runFilter(gps.FilterConfig{Mode: gps.FilterCurve}, fixes)
	rs := reasons(es)
	// The drive starts parked, so transitions alternate: moving, stopped, moving, ...
	var trans []gps.Reason
	for _, r := range rs {
		if r == gps.ReasonStopped || r == gps.ReasonMoving {
			trans = append(trans, r)
		}
	}
	for i, r := range trans {
		if want := [2]gps.Reason{gps.ReasonMoving, gps.ReasonStopped}[i%2]; r != want {
			t.Fatalf("transition %d is %q, want %q: %v", i, r, want, trans)
		}
	}
	if len(trans) < 6 {
		t.Errorf("%d stops and starts logged: %v", len(trans), trans)
	}
	checkInvariant(t, "city 7", fixes, es, 5, 5/3.6)

	// The parked stretch of a noiseless drive: stopped, one fix at the end of the stop (the last one
	// absorbed), nothing in between, however long.
	fixes = append(straight(120, 10, 600), straight(60, 10, 0)...)
	for i := 720; i < len(fixes); i++ { // drive on from where it parked
		fixes[i].Time = routeStart.Add(time.Duration(i) * time.Second)
		fixes[i].Lat += fixes[719].Lat - 52
	}
	es = runFilter(gps.FilterConfig{Mode: gps.FilterCurve}, fixes)
	checkInvariant(t, "park", fixes, es, 5, 5/3.6)
	// Between the stop and the start: the last fix absorbed, logged when the truck left, and nothing else.
	rs = reasons(es)
	stop, start := slices.Index(rs, gps.ReasonStopped), slices.Index(rs, gps.ReasonMoving)
	if stop < 0 || start < stop || start-stop > 2 {
		t.Errorf("logged around the 600 s stop: %v", rs)
	}
	if !slices.Contains(reasons(es), gps.ReasonMoving) {
		t.Error("no start logged")
	}
}

// While moving, a fix is logged at least every Timeout, even on a straight road at constant speed where
// nothing else would be.
func TestCurveTimeout(t *testing.T) {
	fixes := straight(1000, 20, 0)
	es := runFilter(gps.FilterConfig{Mode: gps.FilterCurve, MaxDelay: -1, Buffer: 1000}, fixes)
	if got := maxGap(es); got != 100*time.Second {
		t.Errorf("largest gap between logged fixes %v, want the 100 s timeout", got)
	}
	if !slices.Contains(reasons(es), gps.ReasonTimeout) {
		t.Errorf("no timeout reason: %v", reasons(es))
	}
}

func maxGap(es []emitted) time.Duration {
	var g time.Duration
	for i := 1; i < len(es); i++ {
		g = max(g, es[i].Fix.Time.Sub(es[i-1].Fix.Time))
	}
	return g
}

// No fix is released later than MaxDelay after it arrived, and while driving the newest logged position
// is never older than MaxDelay: the freshness of thresholds mode's 60 s Period.
func TestCurveMaxDelay(t *testing.T) {
	for _, kind := range []string{routeCity, routeHighway, routeStopAndGo} {
		fixes, _ := genRoute(kind, 2)
		for _, d := range []time.Duration{20 * time.Second, 60 * time.Second} {
			f := gps.NewFilter(gps.FilterConfig{Mode: gps.FilterCurve, MaxDelay: d})
			var dst []gps.Logged
			newest := fixes[0].Time
			for _, fix := range fixes {
				dst = f.Push(fix, dst[:0])
				for _, l := range dst {
					if late := fix.Time.Sub(l.Fix.Time); late > d {
						t.Fatalf("%s: fix of %s released %v late, max delay %v", kind, l.Fix.Time, late, d)
					}
					newest = l.Fix.Time
				}
				if age := fix.Time.Sub(newest); !f.Stopped() && age > d {
					t.Fatalf("%s at %s: newest logged fix is %v old, max delay %v", kind, fix.Time, age, d)
				}
			}
		}
	}
}

// The buffer never holds more than Buffer fixes (plus the one held at a stop), and Push allocates
// nothing once dst has room: memory is fixed when the filter is made.
func TestCurveBoundedMemory(t *testing.T) {
	fixes := straight(2000, 15, 0)
	cfg := gps.FilterConfig{Mode: gps.FilterCurve, Buffer: 16, MaxDelay: -1, Timeout: -1}
	f := gps.NewFilter(cfg)
	var dst []gps.Logged
	full := 0
	for _, fix := range fixes {
		dst = f.Push(fix, dst[:0])
		if p := f.Pending(); p > 16 {
			t.Fatalf("%d fixes pending, buffer 16", p)
		}
		for _, l := range dst {
			if l.Reason == gps.ReasonFull {
				full++
			}
		}
	}
	if full == 0 {
		t.Error("the buffer never filled")
	}
	checkInvariant(t, "buffer 16", fixes, runFilter(cfg, fixes), 5, 5/3.6)

	city, _ := genRoute(routeCity, 3)
	f = gps.NewFilter(gps.FilterConfig{Mode: gps.FilterCurve})
	dst = make([]gps.Logged, 0, 256)
	i := 0
	if a := testing.AllocsPerRun(len(city)-1, func() {
		dst = f.Push(city[i], dst[:0])
		i++
	}); a != 0 {
		t.Errorf("Push allocates %.2f times per fix", a)
	}
}

// Thresholds mode through Push gives what Next gives, and the zero Mode is DefaultFilterMode.
func TestPushThresholdsIsNext(t *testing.T) {
	fixes, _ := genRoute(routeCity, 4)
	a, b := gps.NewFilter(gps.FilterConfig{Mode: gps.FilterThresholds}), gps.NewFilter(gps.FilterConfig{Mode: gps.FilterThresholds})
	for _, fix := range fixes {
		ok, why := a.Next(fix)
		got := b.Push(fix, nil)
		if ok != (len(got) == 1) || len(got) > 1 || ok && got[0].Reason != why {
			t.Fatalf("at %s: Next %v %q, Push %v", fix.Time, ok, why, got)
		}
	}
	if b.Flush(nil) != nil || b.Pending() != 0 {
		t.Error("thresholds mode holds fixes")
	}
	want := len(runFilter(gps.FilterConfig{Mode: gps.DefaultFilterMode}, fixes))
	if got := len(runFilter(gps.FilterConfig{}, fixes)); got != want {
		t.Errorf("zero Mode logged %d fixes, DefaultFilterMode %d", got, want)
	}
}

// FuzzCurve drives the filter with arbitrary tracks (jumps, U-turns, standstills, speeds that disagree
// with the positions, odd bounds and buffers): no panic, and the invariant holds.
func FuzzCurve(f *testing.F) {
	f.Add([]byte{5, 20, 4, 3, 1, 0, 10, 1, 1, 0, 10, 1, 1, 0, 10, 1, 2, 250, 10, 1, 1, 3, 0, 0})
	f.Add([]byte{1, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 255, 255, 255, 255})
	f.Add([]byte("000000J000\xfa0")) // crosses the antimeridian westwards
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 4 {
			return
		}
		posErr := float64(data[0]%20) + 0.5
		spdErr := float64(data[1]%20)/4 + 0.1
		cfg := gps.FilterConfig{Mode: gps.FilterCurve, PositionError: posErr, SpeedError: spdErr,
			Buffer: int(data[2]%40) + 2, MaxDelay: time.Duration(data[3]%90) * time.Second,
			Timeout: time.Duration(data[3]%130) * time.Second}
		var fixes []gps.Fix
		lat, lon := 52.0, 179.999 // near the antimeridian, to cross it
		tm := routeStart
		for b := data[4:]; len(b) >= 4 && len(fixes) < 2000; b = b[4:] {
			tm = tm.Add(time.Duration(b[0]%3+1) * time.Second)
			lat += float64(int8(b[1])) / 111195
			lon += float64(int8(b[2])) / 68000
			if lon > 180 {
				lon -= 360
			} else if lon < -180 {
				lon += 360
			}
			fixes = append(fixes, gps.Fix{Time: tm, Lat: lat, Lon: lon, Speed: float64(b[3]) / 8,
				Course: float64(b[3]) * 1.4, Alt: math.NaN(), Mode: gps.Mode3D, HDOP: math.NaN(), PDOP: math.NaN()})
		}
		if len(fixes) == 0 {
			return
		}
		es := runFilter(cfg, fixes)
		// Near the antimeridian the consumer must unwrap longitudes as the filter does.
		unwrap := func(fs []gps.Fix) []gps.Fix {
			out := slices.Clone(fs)
			for i := range out {
				if out[i].Lon < 0 {
					out[i].Lon += 360
				}
			}
			return out
		}
		for i := range es {
			if es[i].Fix.Lon < 0 {
				es[i].Fix.Lon += 360
			}
		}
		checkInvariant(t, "fuzz", unwrap(fixes), es, posErr, spdErr)
	})
}

// A receiver whose time steps back (it corrected itself, or was reset) is followed, not ignored until its
// time catches up: both modes send the fix after the step at once, as a first fix, and keep reporting
// by their usual timings; curve mode first sends what it held from before the step.
func TestFilterTimeStepsBack(t *testing.T) {
	before := straight(150, 15, 0)
	after := straight(300, 15, 0)
	for i := range after {
		after[i].Time = after[i].Time.Add(-time.Hour) // an hour before the drive above
		after[i].Lat += 150 * 15 / 111195.0
	}
	for _, mode := range []gps.FilterMode{gps.FilterCurve, gps.FilterThresholds} {
		es := runFilter(gps.FilterConfig{Mode: mode}, append(slices.Clone(before), after...))
		var n int
		var first *emitted
		for i, e := range es {
			if e.Fix.Time.Before(before[0].Time) { // after the step: an hour before the first drive
				n++
				if first == nil {
					first = &es[i]
				}
			}
		}
		if first == nil || !first.Fix.Time.Equal(after[0].Time) || first.Reason != gps.ReasonFirst {
			t.Errorf("%s: the fix after the step back was not sent at once as a first fix: %v", mode, first)
		}
		// 300 s of driving: at least one fix per 100 s timeout (curve) or 60 s period (thresholds).
		if n < 4 {
			t.Errorf("%s: %d fixes sent in the 300 s after the time stepped back, want at least 4", mode, n)
		}
		if mode == gps.FilterCurve {
			checkInvariant(t, "after the step", after, es[len(es)-n:], 5, 5/3.6)
			for _, e := range es[:len(es)-n] {
				if e.Fix.Time.Before(before[0].Time) {
					t.Errorf("%s: a fix from after the step was sent before the fixes held from before it", mode)
				}
			}
		}
	}
}
