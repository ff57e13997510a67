package gps_test

import (
	"bytes"
	"io"
	"math"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/gps/gpssim"
)

// The simulator's NMEA decodes to exactly its ground truth: a fix for every epoch with sky view, none in
// the tunnel or a lost fix, at the simulated time and position.
func TestSimulatorDecodesToTruth(t *testing.T) {
	sim := gpssim.New(gpssim.Config{Rate: 1, Route: gpssim.RouteConfig{Seed: 11, LostFixRate: 0.05}})
	start := time.Date(2026, 6, 1, 7, 0, 0, 0, time.UTC)
	n := int(sim.Route().Loop() / time.Second)
	var in bytes.Buffer
	truth := map[time.Time]gpssim.State{}
	lost := 0
	for i := range n {
		in.Write(sim.Epoch(start, i))
		tm, st, fix := sim.EpochTruth(start, i)
		if fix {
			truth[tm] = st
		} else {
			lost++
		}
	}
	r := gps.NewReader(&in, gps.Config{})
	got := 0
	for {
		f, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		st, ok := truth[f.Time]
		if !ok {
			t.Fatalf("fix at %s: the simulator had no fix then", f.Time)
		}
		if math.Abs(f.Lat-st.Pos.Lat) > 1e-6 || math.Abs(f.Lon-st.Pos.Lon) > 1e-6 || math.Abs(f.Speed-st.Speed) > 0.01 ||
			f.Mode != gps.Mode3D || f.Sats != 12 {
			t.Fatalf("fix %+v, truth %+v", f, st)
		}
		got++
	}
	if got != len(truth) || lost == 0 {
		t.Errorf("decoded %d fixes, simulator had %d (and %d without)", got, len(truth), lost)
	}
}
