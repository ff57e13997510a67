package gps_test

import (
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps"
)

// jitter adds a receiver's correlated position noise (multipath wanders over tens of seconds): an AR(1)
// walk with sigma metres of standard deviation and a 20 s correlation time, per axis.
type jitter struct {
	rng      *rand.Rand
	sigma    float64
	east, no float64
}

func (j *jitter) apply(f gps.Fix) gps.Fix {
	const a = 0.95 // exp(-1 s / 20 s)
	s := j.sigma * math.Sqrt(1-a*a)
	j.east = a*j.east + s*j.rng.NormFloat64()
	j.no = a*j.no + s*j.rng.NormFloat64()
	f.Lat += j.no / 111320
	f.Lon += j.east / (111320 * math.Cos(f.Lat*math.Pi/180))
	return f
}

// TestOdometerDrive: over generated delivery loops (corners, stops, a tunnel, lost fixes) the odometer
// matches the route's length within 1 %, with and without receiver noise.
func TestOdometerDrive(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4, 5} {
		fixes, truth := sdktest.SimDrive(t, seed, 2, 0)
		for _, sigma := range []float64{0, 1.5} {
			j := &jitter{rng: rand.New(rand.NewPCG(seed, 7)), sigma: sigma}
			o := gps.NewOdometer(gps.OdometerConfig{}, 0)
			for _, f := range fixes {
				if sigma > 0 {
					f = j.apply(f)
					f.HDOP = 1.2
					if f.Speed < 0.5 { // a standing receiver's Doppler speed is noise too
						f.Speed = 0.3 * j.rng.Float64()
					}
				}
				o.Next(f)
			}
			errPct := 100 * (o.Metres() - truth) / truth
			t.Logf("seed %d, noise %.1f m: %d fixes, route %.1f m, odometer %.1f m (%+.2f %%) %+v", seed, sigma, len(fixes),
				truth, o.Metres(), errPct, o.Stats())
			if math.Abs(errPct) > 1 {
				t.Errorf("seed %d, noise %.1f m: odometer %.1f m for a route of %.1f m (%+.2f %%), want within 1 %%",
					seed, sigma, o.Metres(), truth, errPct)
			}
		}
	}
}

// TestOdometerStandingHour: a truck standing for an hour with a receiver wandering by metres (HDOP 0.8-2.4
// changing over 20 minutes, 1.5 x HDOP metres of noise per axis correlated over 20 s, Doppler speed up to
// 0.4 m/s) adds less than 10 m; the naive sum of fix-to-fix distances adds kilometres.
func TestOdometerStandingHour(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewPCG(seed, 1))
		j := &jitter{rng: rng}
		phase := 2 * math.Pi * rng.Float64()
		o := gps.NewOdometer(gps.OdometerConfig{}, 1000)
		start := time.Date(2026, 6, 1, 7, 0, 0, 0, time.UTC)
		var naive float64
		var prev gps.Fix
		for i := range 3600 {
			hdop := 1.6 + 0.8*math.Sin(phase+2*math.Pi*float64(i)/1200)
			j.sigma = 1.5 * hdop
			f := j.apply(gps.Fix{Time: start.Add(time.Duration(i) * time.Second), Lat: 52.37, Lon: 4.89, Alt: 3,
				Speed: 0.4 * rng.Float64(), Course: 360 * rng.Float64(), Mode: gps.Mode3D, Sats: 9,
				HDOP: hdop, PDOP: math.NaN()})
			if i > 0 {
				naive += gps.Distance(prev.Lat, prev.Lon, f.Lat, f.Lon)
			}
			prev = f
			o.Next(f)
		}
		added := o.Metres() - 1000
		t.Logf("seed %d: an hour standing adds %.1f m (naive sum %.0f m) %+v", seed, added, naive, o.Stats())
		if added >= 10 {
			t.Errorf("seed %d: an hour standing added %.1f m, want < 10 m", seed, added)
		}
	}
}

// TestOdometerJumps: a single wild fix (multipath, a receiver glitch) adds nothing; a position the receiver
// insists on is believed after five fixes, without adding the jump.
func TestOdometerJumps(t *testing.T) {
	start := time.Date(2026, 6, 1, 7, 0, 0, 0, time.UTC)
	fix := func(i int, north float64) gps.Fix {
		return gps.Fix{Time: start.Add(time.Duration(i) * time.Second), Lat: 52 + north/111320, Lon: 4, Speed: 10,
			Alt: math.NaN(), Course: 0, Mode: gps.Mode3D, HDOP: 1, PDOP: math.NaN()}
	}
	o := gps.NewOdometer(gps.OdometerConfig{}, 0)
	for i := range 10 {
		o.Next(fix(i, 10*float64(i)))
	}
	o.Next(fix(10, 5000)) // 4.9 km in a second
	for i := 11; i < 20; i++ {
		o.Next(fix(i, 10*float64(i)))
	}
	if m := o.Metres(); math.Abs(m-190) > 0.5 {
		t.Fatalf("odometer %.1f m after a 190 m drive with one wild fix, want 190", m)
	}
	// The truck was carried 50 km (a ferry without fixes, a receiver swapped): believed after 5 fixes.
	for i := 20; i < 30; i++ {
		o.Next(fix(i, 50000+10*float64(i)))
	}
	s := o.Stats()
	if m := o.Metres(); s.Rebased != 1 || m < 190 || m > 260 {
		t.Fatalf("odometer %.1f m, stats %+v: want the far position believed once, without the 50 km", m, s)
	}
}
