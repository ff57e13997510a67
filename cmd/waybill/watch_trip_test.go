package main

import (
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
)

// Movement events read as trips, not as "order  rev 0 via auto".
func TestWatchDescribesTrips(t *testing.T) {
	at := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, c := range []struct {
		ev   sdk.Event
		want string
	}{
		{sdk.Event{Kind: sdk.EventTripStart, Time: at, Odometer: 123456700}, "truck-1          TRIP_START, odometer 123456.7 km (2031-03-04T05:06:07Z)"},
		{sdk.Event{Kind: sdk.EventStop, Time: at, Duration: 35 * time.Second, Odometer: 1000}, "STOP 35s, odometer 1.0 km"},
		{sdk.Event{Kind: sdk.EventTripEnd, Time: at, Distance: 6195, Duration: 739 * time.Second, Idle: 105 * time.Second},
			"TRIP_END 6.2 km in 12m19s (idle 1m45s)"},
	} {
		got := describeEvent(&dispatch.Event{Truck: "truck-1", Event: c.ev})
		if !strings.Contains(got, c.want) || strings.Contains(got, "order") {
			t.Errorf("%s: %q, want %q", c.ev.Kind, got, c.want)
		}
	}
}
