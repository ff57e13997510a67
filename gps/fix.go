package gps

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// Mode is the receiver's fix dimension. Only Mode2D and Mode3D ever appear in a Fix: an epoch without a fix
// yields no Fix at all.
type Mode uint8

// Fix modes, numbered like NMEA GSA and gpsd's TPV "mode".
const (
	ModeNoFix Mode = 1
	Mode2D    Mode = 2
	Mode3D    Mode = 3
)

// Fix is one epoch of a receiver with a position: everything the receiver said about that instant, merged
// from the epoch's sentences.
//
// Optional values the receiver did not give are NaN (float fields) or 0 (Sats: a fix never uses zero
// satellites); use the Has* methods rather than comparing. Time, Lat, Lon and Mode are always set.
type Fix struct {
	Time   time.Time // UTC, from the receiver (after the week-rollover correction, see Config.RolloverFloor)
	Lat    float64   // degrees, WGS84, north positive
	Lon    float64   // degrees, WGS84, east positive
	Alt    float64   // metres above mean sea level; NaN if absent
	Speed  float64   // metres per second over ground; NaN if absent
	Course float64   // degrees true, [0, 360); NaN if absent
	Mode   Mode      // Mode2D or Mode3D
	Sats   int       // satellites used in the solution; 0 if absent
	HDOP   float64   // NaN if absent
	PDOP   float64   // NaN if absent
	DGPS   bool      // differential corrections applied (GGA quality 2, RMC/GNS mode D)
}

// HasAlt reports whether the receiver gave an altitude.
func (f Fix) HasAlt() bool { return !math.IsNaN(f.Alt) }

// HasSpeed reports whether the receiver gave a speed over ground.
func (f Fix) HasSpeed() bool { return !math.IsNaN(f.Speed) }

// HasCourse reports whether the receiver gave a course over ground.
func (f Fix) HasCourse() bool { return !math.IsNaN(f.Course) }

// HasHDOP reports whether the receiver gave a horizontal dilution of precision.
func (f Fix) HasHDOP() bool { return !math.IsNaN(f.HDOP) }

// HasPDOP reports whether the receiver gave a position dilution of precision.
func (f Fix) HasPDOP() bool { return !math.IsNaN(f.PDOP) }

// emptyFix returns a Fix with every optional value absent.
func emptyFix() Fix {
	nan := math.NaN()
	return Fix{Alt: nan, Speed: nan, Course: nan, HDOP: nan, PDOP: nan}
}

// MarshalJSON writes the fix in the format of design.md ("waybill gps decode"): time in RFC 3339 UTC with
// sub-second digits when the receiver gave them, absent values omitted. DGPS and PDOP are added as "dgps"
// (only when true) and "pdop".
func (f Fix) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 192)
	b = append(b, `{"time":`...)
	b = strconv.AppendQuote(b, f.Time.UTC().Format(time.RFC3339Nano))
	b = appendFloat(b, "lat", f.Lat, 9)
	b = appendFloat(b, "lon", f.Lon, 9)
	b = appendFloat(b, "alt_m", f.Alt, 3)
	b = appendFloat(b, "speed_mps", f.Speed, 3)
	b = appendFloat(b, "course_deg", f.Course, 2)
	b = append(b, `,"mode":`...)
	b = strconv.AppendInt(b, int64(f.Mode), 10)
	if f.Sats > 0 {
		b = append(b, `,"sats":`...)
		b = strconv.AppendInt(b, int64(f.Sats), 10)
	}
	b = appendFloat(b, "hdop", f.HDOP, 2)
	b = appendFloat(b, "pdop", f.PDOP, 2)
	if f.DGPS {
		b = append(b, `,"dgps":true`...)
	}
	return append(b, '}'), nil
}

// appendFloat adds ,"name":v rounded to prec decimals (trailing zeros dropped), or nothing for NaN/Inf.
func appendFloat(b []byte, name string, v float64, prec int) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	p := math.Pow(10, float64(prec))
	return strconv.AppendFloat(b, math.Round(v*p)/p, 'f', -1, 64)
}

// jsonFix is the decoding side of MarshalJSON.
type jsonFix struct {
	Time   time.Time `json:"time"`
	Lat    float64   `json:"lat"`
	Lon    float64   `json:"lon"`
	Alt    *float64  `json:"alt_m"`
	Speed  *float64  `json:"speed_mps"`
	Course *float64  `json:"course_deg"`
	Mode   Mode      `json:"mode"`
	Sats   int       `json:"sats"`
	HDOP   *float64  `json:"hdop"`
	PDOP   *float64  `json:"pdop"`
	DGPS   bool      `json:"dgps"`
}

// UnmarshalJSON reads what MarshalJSON writes; missing optional values become absent (NaN).
func (f *Fix) UnmarshalJSON(b []byte) error {
	var j jsonFix
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	opt := nanIfNil
	*f = Fix{Time: j.Time.UTC(), Lat: j.Lat, Lon: j.Lon, Alt: opt(j.Alt), Speed: opt(j.Speed),
		Course: opt(j.Course), Mode: j.Mode, Sats: j.Sats, HDOP: opt(j.HDOP), PDOP: opt(j.PDOP), DGPS: j.DGPS}
	return nil
}

// nanIfNil is a JSON optional value: absent (nil) is NaN.
func nanIfNil(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}
