package sdk

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// FixFields says which optional fields of a Fix the receiver gave. Time, Lat and Lon are always present.
type FixFields uint8

const (
	FixAlt       FixFields = 1 << iota // Alt is set
	FixSpeed                           // Speed is set
	FixCourse                          // Course is set
	FixSats                            // Sats is set
	FixHDOP                            // HDOP is set
	fixAllFields = FixAlt | FixSpeed | FixCourse | FixSats | FixHDOP
)

// Fix is one GPS position as the SDK carries it. It is the SDK's own type (sdk does not import gps, which
// pulls in serial code); the agent converts. Optional fields are valid only when their bit is set in Has: an
// absent field is not the same as zero (a truck standing still has speed 0).
type Fix struct {
	Time   time.Time // UTC, from the receiver (GPS time)
	Lat    float64   // degrees WGS84, -90..90
	Lon    float64   // degrees WGS84, -180..180
	Alt    float64   // metres above mean sea level (FixAlt)
	Speed  float64   // metres per second over ground (FixSpeed)
	Course float64   // degrees from true north, 0..360 (FixCourse)
	Mode   uint8     // 2 = 2D, 3 = 3D, 0 = unknown
	Sats   int       // satellites used (FixSats)
	HDOP   float64   // horizontal dilution of precision (FixHDOP)
	Has    FixFields // which optional fields are present
}

// Validate checks ranges: a fix outside them cannot be encoded.
func (f *Fix) Validate() error {
	switch {
	case f.Time.IsZero() || f.Time.Year() < 1980 || f.Time.Year() > 2200:
		return fmt.Errorf("sdk: fix time %v out of range", f.Time)
	case !(f.Lat >= -90 && f.Lat <= 90) || !(f.Lon >= -180 && f.Lon <= 180):
		return fmt.Errorf("sdk: fix position %v,%v out of range", f.Lat, f.Lon)
	case f.Mode != 0 && f.Mode != 2 && f.Mode != 3:
		return fmt.Errorf("sdk: fix mode %d: want 2, 3 or 0 (unknown)", f.Mode)
	case f.Has&^fixAllFields != 0:
		return fmt.Errorf("sdk: fix has unknown field bits %#x", uint8(f.Has))
	case f.Has&FixAlt != 0 && !(f.Alt >= -10000 && f.Alt <= 100000):
		return fmt.Errorf("sdk: fix altitude %v m out of range", f.Alt)
	case f.Has&FixSpeed != 0 && !(f.Speed >= 0 && f.Speed <= 600):
		return fmt.Errorf("sdk: fix speed %v m/s out of range", f.Speed)
	case f.Has&FixCourse != 0 && !(f.Course >= 0 && f.Course <= 360):
		return fmt.Errorf("sdk: fix course %v out of range 0..360", f.Course)
	case f.Has&FixSats != 0 && (f.Sats < 0 || f.Sats > 255):
		return fmt.Errorf("sdk: fix satellites %d out of range", f.Sats)
	case f.Has&FixHDOP != 0 && !(f.HDOP >= 0 && f.HDOP <= 99.99):
		return fmt.Errorf("sdk: fix HDOP %v out of range 0..99.99", f.HDOP)
	}
	return nil
}

// fixJSON is design.md's JSON form of a fix (the same as `waybill gps decode`): absent fields are omitted.
type fixJSON struct {
	Time   string   `json:"time"`
	Lat    float64  `json:"lat"`
	Lon    float64  `json:"lon"`
	Alt    *float64 `json:"alt_m,omitempty"`
	Speed  *float64 `json:"speed_mps,omitempty"`
	Course *float64 `json:"course_deg,omitempty"`
	Mode   uint8    `json:"mode,omitempty"`
	Sats   *int     `json:"sats,omitempty"`
	HDOP   *float64 `json:"hdop,omitempty"`
}

// MarshalJSON writes design.md's fix JSON: {"time":RFC3339 UTC,"lat":..,"lon":..,"alt_m":..,...}.
func (f Fix) MarshalJSON() ([]byte, error) {
	j := fixJSON{Time: f.Time.UTC().Format(time.RFC3339Nano), Lat: f.Lat, Lon: f.Lon, Mode: f.Mode}
	if f.Has&FixAlt != 0 {
		j.Alt = &f.Alt
	}
	if f.Has&FixSpeed != 0 {
		j.Speed = &f.Speed
	}
	if f.Has&FixCourse != 0 {
		j.Course = &f.Course
	}
	if f.Has&FixSats != 0 {
		j.Sats = &f.Sats
	}
	if f.Has&FixHDOP != 0 {
		j.HDOP = &f.HDOP
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the form MarshalJSON writes.
func (f *Fix) UnmarshalJSON(b []byte) error {
	var j fixJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339Nano, j.Time)
	if err != nil {
		return fmt.Errorf("sdk: fix time: %w", err)
	}
	*f = Fix{Time: t.UTC(), Lat: j.Lat, Lon: j.Lon, Mode: j.Mode}
	if j.Alt != nil {
		f.Alt, f.Has = *j.Alt, f.Has|FixAlt
	}
	if j.Speed != nil {
		f.Speed, f.Has = *j.Speed, f.Has|FixSpeed
	}
	if j.Course != nil {
		f.Course, f.Has = *j.Course, f.Has|FixCourse
	}
	if j.Sats != nil {
		f.Sats, f.Has = *j.Sats, f.Has|FixSats
	}
	if j.HDOP != nil {
		f.HDOP, f.Has = *j.HDOP, f.Has|FixHDOP
	}
	return nil
}

// Fixed-point units shared by the telemetry codec and the single fix in events. Chosen so that quantisation
// stays far below what a consumer GNSS receiver resolves (see telemetry.go for the position resolution).
const (
	degScale    = 1e6 // telemetry positions: 1e-6 degree (0.11 m)
	eventScale  = 1e7 // event positions: 1e-7 degree (1.1 cm), one fix so bytes do not matter
	altScale    = 10  // decimetres
	speedScale  = 100 // centimetres per second
	courseScale = 10  // tenths of a degree
	hdopScale   = 100 // hundredths
)

func q(v, scale float64) int64 { return int64(math.Round(v * scale)) }
