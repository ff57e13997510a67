// Package gpsfix converts a receiver's fix (gps.Fix) to the SDK's (sdk.Fix). It is its own package because
// gps must not depend on the SDK nor the SDK's integrator packages on gps; the agent, the fleet simulator
// and the track benchmark all need the one conversion.
package gpsfix

import (
	"math"

	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/sdk"
)

// From converts f: a NaN (absent) value becomes an unset Has bit, the course is kept within [0, 360).
func From(f gps.Fix) sdk.Fix {
	s := sdk.Fix{Time: f.Time.UTC(), Lat: f.Lat, Lon: f.Lon, Mode: uint8(f.Mode)}
	if !math.IsNaN(f.Alt) {
		s.Alt, s.Has = f.Alt, s.Has|sdk.FixAlt
	}
	if !math.IsNaN(f.Speed) {
		s.Speed, s.Has = f.Speed, s.Has|sdk.FixSpeed
	}
	if !math.IsNaN(f.Course) {
		s.Course, s.Has = math.Mod(f.Course, 360), s.Has|sdk.FixCourse
	}
	if f.Sats > 0 {
		s.Sats, s.Has = f.Sats, s.Has|sdk.FixSats
	}
	if !math.IsNaN(f.HDOP) {
		s.HDOP, s.Has = f.HDOP, s.Has|sdk.FixHDOP
	}
	return s
}
