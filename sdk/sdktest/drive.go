package sdktest

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/gps/gpssim"
)

// SimDrive decodes loops of the GPS simulator's route (seed, stops of stopFor; zero: the simulator's
// default) at 1 Hz, as the agent's serial source would, and returns the fixes and the route's true length
// over the same time (the truth integrated every 50 ms).
func SimDrive(t testing.TB, seed uint64, loops int, stopFor time.Duration) ([]gps.Fix, float64) {
	t.Helper()
	sim := gpssim.New(gpssim.Config{Rate: 1, Route: gpssim.RouteConfig{Seed: seed, StopFor: stopFor}})
	start := time.Date(2026, 6, 1, 7, 0, 0, 0, time.UTC)
	n := loops * int(sim.Route().Loop()/time.Second)
	var in bytes.Buffer
	for i := 0; i <= n; i++ {
		in.Write(sim.Epoch(start, i))
	}
	r := gps.NewReader(&in, gps.Config{})
	var fixes []gps.Fix
	for {
		f, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		fixes = append(fixes, f)
	}
	var truth float64
	prev := sim.Route().At(0).Pos
	for d := 50 * time.Millisecond; d <= time.Duration(n)*time.Second; d += 50 * time.Millisecond {
		p := sim.Route().At(d).Pos
		truth += gps.Distance(prev.Lat, prev.Lon, p.Lat, p.Lon)
		prev = p
	}
	return fixes, truth
}
