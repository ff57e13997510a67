package agent

import (
	"context"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/truck"
	"github.com/waybill-iot/waybill/store"
)

// TestTripEventsDrive: a delivery loop with 35 s stops, then the truck parked: one trip_start, a stop event
// of about 35 s for each stop on the way, and a trip_end whose distance is the route's length (within 1 %)
// and whose idle time is the sum of the stops. The events are stored in the normal lane and decode.
func TestTripEventsDrive(t *testing.T) {
	fixes, truth := sdktest.SimDrive(t, 2, 1, 35*time.Second)
	last := fixes[len(fixes)-1]
	for i := 1; i <= 120; i++ { // parked at the depot for two minutes
		f := last
		f.Time = last.Time.Add(time.Duration(i) * time.Second)
		f.Speed = 0
		fixes = append(fixes, f)
	}
	dir := t.TempDir()
	st := openTestStore(t, dir)
	defer st.Close()
	m, err := openMileage(context.Background(), st, testOdoConfig(), time.Now(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	events := feed(t, m, st, fixes, true)
	var kinds []sdk.EventKind
	var stops time.Duration
	var end *sdk.Event
	for i, e := range events {
		kinds = append(kinds, e.Kind)
		switch e.Kind {
		case sdk.EventStop:
			stops += e.Duration
			if e.Duration < 33*time.Second || e.Duration > 37*time.Second {
				t.Errorf("stop %d lasted %s, the route stops for 35 s", i, e.Duration)
			}
		case sdk.EventTripEnd:
			end = &events[i]
		}
	}
	t.Logf("events %v", kinds)
	if len(kinds) < 4 || kinds[0] != sdk.EventTripStart || kinds[len(kinds)-1] != sdk.EventTripEnd || end == nil {
		t.Fatalf("events %v: want trip_start, stops, trip_end", kinds)
	}
	if d := float64(end.Distance); math.Abs(d-truth)/truth > 0.01 {
		t.Errorf("trip_end distance %.0f m, route %.0f m: more than 1 %% off", d, truth)
	}
	if end.Idle != stops {
		t.Errorf("trip_end idle %s, stops add up to %s", end.Idle, stops)
	}
	if end.Duration < time.Duration(len(fixes)-121)*time.Second-time.Minute || end.Duration > time.Duration(len(fixes))*time.Second {
		t.Errorf("trip_end duration %s for %d fixes", end.Duration, len(fixes))
	}
	t.Logf("trip: %d m in %s, idle %s (route %.0f m)", end.Distance, end.Duration, end.Idle, truth)

	// Stored in the normal lane, decodable as events with their identity.
	recs, err := st.Peek(context.Background(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	var stored int
	for _, r := range recs {
		if r.Kind != truck.KindEvent {
			continue
		}
		if r.Lane != store.Normal {
			t.Errorf("movement event in lane %s", r.Lane)
		}
		e, err := truck.DecodeEvent(r.Data, r.Epoch, r.Seq)
		if err != nil || !e.Kind.IsTrip() {
			t.Fatalf("stored event: %v %+v", err, e)
		}
		stored++
	}
	if stored != len(events) {
		t.Errorf("%d movement events stored, %d made", stored, len(events))
	}
}

// TestTripStandingNoTrip: a truck standing with a wandering receiver starts no trip.
func TestTripStandingNoTrip(t *testing.T) {
	d := newTripDetector(testOdoConfig())
	o := gps.NewOdometer(gps.OdometerConfig{}, 0)
	start := time.Date(2026, 6, 1, 7, 0, 0, 0, time.UTC)
	for i := range 3600 {
		f := gps.Fix{Time: start.Add(time.Duration(i) * time.Second), Lat: 52.37 + 2e-5*math.Sin(float64(i)/30),
			Lon: 4.89 + 3e-5*math.Cos(float64(i)/45), Speed: 0.3 * math.Abs(math.Sin(float64(i))), Course: math.NaN(),
			Alt: math.NaN(), HDOP: 1.2, PDOP: math.NaN(), Mode: gps.Mode3D, Sats: 8}
		o.Next(f)
		if evs := d.next(f, o.Metres()); len(evs) > 0 {
			t.Fatalf("fix %d: %v from a standing truck", i, evs[0].Kind)
		}
	}
}

// TestTripEventsTimeStepsBack: the receiver's time steps back an hour in the middle of the drive (gps
// delivers such fixes, as gpsd does). The trip goes on: the same stops of about 35 s, one trip_end whose
// idle time is their sum and whose duration is the drive's, not an hour off.
func TestTripEventsTimeStepsBack(t *testing.T) {
	fixes, truth := sdktest.SimDrive(t, 2, 1, 35*time.Second)
	last := fixes[len(fixes)-1]
	for i := 1; i <= 700; i++ { // parked at the depot past trip_end_after
		f := last
		f.Time = last.Time.Add(time.Duration(i) * time.Second)
		f.Speed = 0
		fixes = append(fixes, f)
	}
	drive := fixes[len(fixes)-1].Time.Sub(fixes[0].Time)
	for i := len(fixes) / 3; i < len(fixes); i++ {
		fixes[i].Time = fixes[i].Time.Add(-time.Hour)
	}
	st := openTestStore(t, t.TempDir())
	defer st.Close()
	m, err := openMileage(context.Background(), st, testOdoConfig(), time.Now(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var stops time.Duration
	var nStops int
	var end *sdk.Event
	var kinds []sdk.EventKind
	for i, e := range feed(t, m, st, fixes, true) {
		kinds = append(kinds, e.Kind)
		switch e.Kind {
		case sdk.EventStop:
			nStops++
			stops += e.Duration
			if e.Duration < 33*time.Second || e.Duration > 37*time.Second {
				t.Errorf("stop %d lasted %s, the route stops for 35 s", i, e.Duration)
			}
		case sdk.EventTripEnd:
			if end != nil {
				t.Errorf("a second trip_end: %v", kinds)
			}
			e := e
			end = &e
		}
	}
	if end == nil || nStops == 0 || kinds[0] != sdk.EventTripStart {
		t.Fatalf("events %v: want trip_start, stops, trip_end", kinds)
	}
	if end.Idle != stops {
		t.Errorf("trip_end idle %s, stops add up to %s", end.Idle, stops)
	}
	if d := end.Duration; d > drive || d < drive-20*time.Minute {
		t.Errorf("trip_end duration %s for a drive of %s (the time stepped back an hour in it)", d, drive)
	}
	if d := float64(end.Distance); math.Abs(d-truth)/truth > 0.01 {
		t.Errorf("trip_end distance %.0f m, route %.0f m: more than 1 %% off", d, truth)
	}
}
