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
