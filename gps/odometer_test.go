package gps

import (
	"math"
	"path/filepath"
	"testing"
	"time"
)

// naiveSum is what an odometer without the noise gate adds up: every fix-to-fix distance.
func naiveSum(fixes []Fix) float64 {
	var s float64
	for i := 1; i < len(fixes); i++ {
		s += Distance(fixes[i-1].Lat, fixes[i-1].Lon, fixes[i].Lat, fixes[i].Lon)
	}
	return s
}

// TestOdometerCaptures runs the odometer over every real capture in testdata/nmea and measures what the
// jitter of the standing receivers (never faster than 1 m/s by their own speed) would have added without
// the noise gate, and what it adds with it.
func TestOdometerCaptures(t *testing.T) {
	var naive, gated float64
	var standing time.Duration
	var n int
	for _, name := range captureNames(t) {
		fixes, _ := decodeFile(t, filepath.Join("testdata", "nmea", name+".log"), Config{})
		if len(fixes) < 2 {
			continue
		}
		o := NewOdometer(OdometerConfig{}, 0)
		maxV := 0.0
		for _, f := range fixes {
			o.Next(f)
			if f.HasSpeed() {
				maxV = math.Max(maxV, f.Speed)
			}
		}
		span := fixes[len(fixes)-1].Time.Sub(fixes[0].Time)
		t.Logf("%-20s %4d fixes over %9s, max speed %4.1f m/s: naive sum %7.1f m, odometer %7.1f m", name, len(fixes),
			span, maxV, naiveSum(fixes), o.Metres())
		if maxV < 1 && span > 0 {
			n++
			standing += span
			naive += naiveSum(fixes)
			gated += o.Metres()
		}
	}
	t.Logf("%d standing captures, %s in all: the naive sum adds %.1f m (%.0f m per hour), the odometer %.1f m", n,
		standing.Round(time.Second), naive, naive/standing.Hours(), gated)
	if gated > naive/4 {
		t.Errorf("the odometer adds %.1f m over the standing captures, the naive sum %.1f m: the gate keeps too little out", gated, naive)
	}
}

// When the receiver's time steps back, the odometer goes on counting from the fix after the step instead
// of ignoring every fix until the receiver's time catches up; only the step itself is not counted.
func TestOdometerTimeStepsBack(t *testing.T) {
	start := time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)
	o := NewOdometer(OdometerConfig{}, 0)
	lat := 48.0
	for i := range 200 {
		at := start.Add(time.Duration(i) * time.Second)
		if i >= 100 {
			at = at.Add(-time.Hour)
		}
		o.Next(Fix{Time: at, Lat: lat, Lon: 11, Speed: 10, Mode: Mode3D, HDOP: 1, Sats: 9, Alt: math.NaN(),
			Course: 0, PDOP: math.NaN()})
		lat += 10 / 111195.0
	}
	// 199 steps of 10 m; the one across the time step is not counted.
	if got := o.Metres(); math.Abs(got-1980) > 2 || o.Stats().TimeSteps != 1 {
		t.Errorf("odometer %.1f m, %d time steps; want 1980 m (198 steps of 10 m) and 1", got, o.Stats().TimeSteps)
	}
}
