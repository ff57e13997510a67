package gpsfix

import (
	"math"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/sdk"
)

func TestFrom(t *testing.T) {
	at := time.Date(2026, 6, 1, 7, 0, 0, 0, time.FixedZone("CEST", 7200))
	full := From(gps.Fix{Time: at, Lat: 52.1, Lon: 4.9, Alt: 3, Speed: 11, Course: 360, Mode: gps.Mode3D, Sats: 9, HDOP: 0.8})
	if full.Has != sdk.FixAlt|sdk.FixSpeed|sdk.FixCourse|sdk.FixSats|sdk.FixHDOP || full.Course != 0 ||
		full.Time.Location() != time.UTC || !full.Time.Equal(at) {
		t.Errorf("full fix: %+v", full)
	}
	nan := math.NaN()
	bare := From(gps.Fix{Time: at, Lat: 52.1, Lon: 4.9, Alt: nan, Speed: nan, Course: nan, HDOP: nan, Mode: gps.Mode2D})
	if bare.Has != 0 || bare.Mode != 2 {
		t.Errorf("fix without optional values: %+v", bare)
	}
	if err := bare.Validate(); err != nil {
		t.Error(err)
	}
}
