package gps

import (
	"math"
	"testing"
	"time"
)

// step is one fix of a table test, seconds after t0, metres north/east of a point, speed m/s, course.
type step struct {
	sec         float64
	north, east float64
	speed, crs  float64
	hdop        float64
	want        bool
	why         Reason
}

var t0 = time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)

func mkFix(s step) Fix {
	f := emptyFix()
	f.Time = t0.Add(time.Duration(s.sec * float64(time.Second)))
	const m = 6371008.8 * math.Pi / 180 // metres per degree on Distance's sphere
	f.Lat = 52 + s.north/m
	f.Lon = 5 + s.east/(m*math.Cos(52*math.Pi/180))
	f.Speed, f.Course, f.Mode = s.speed, s.crs, Mode3D
	if s.hdop > 0 {
		f.HDOP = s.hdop
	}
	return f
}

func TestFilter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   FilterConfig
		steps []step
	}{
		{"first, then distance", FilterConfig{}, []step{
			{0, 0, 0, 10, 0, 0, true, ReasonFirst},
			{10, 100, 0, 10, 0, 0, false, ReasonNone},
			{20, 201, 0, 10, 0, 0, true, ReasonDistance},
			{22, 220, 0, 10, 0, 0, false, ReasonNone},
		}},
		{"heading at a corner, not while crawling", FilterConfig{}, []step{
			{0, 0, 0, 8, 0, 0, true, ReasonFirst},
			{6, 48, 0, 8, 5, 0, false, ReasonNone},
			{12, 96, 0, 8, 20, 0, true, ReasonHeading},
		}},
		{"no heading report while crawling", FilterConfig{}, []step{
			{0, 0, 0, 2, 0, 0, true, ReasonFirst},
			{10, 15, 5, 2, 90, 0, false, ReasonNone}, // 90 degrees, but at 2 m/s the course is noise
		}},
		{"speed change", FilterConfig{}, []step{
			{0, 0, 0, 5, 0, 0, true, ReasonFirst},
			{6, 30, 0, 7, 0, 0, false, ReasonNone},
			{12, 90, 0, 8, 0, 0, true, ReasonSpeed},
		}},
		{"min interval holds back bursts", FilterConfig{}, []step{
			{0, 0, 0, 30, 0, 0, true, ReasonFirst},
			{1, 0, 250, 30, 90, 0, false, ReasonNone},
			{5, 0, 400, 30, 90, 0, true, ReasonDistance},
		}},
		{"period while moving", FilterConfig{}, []step{
			{0, 0, 0, 3, 0, 0, true, ReasonFirst},
			{59, 150, 0, 3, 0, 0, false, ReasonNone},
			{60, 153, 0, 3, 0, 0, true, ReasonPeriod},
		}},
		{"stop with hysteresis, long period, start", FilterConfig{}, []step{
			{0, 0, 0, 10, 0, 0, true, ReasonFirst},
			{10, 50, 0, 0.5, 0, 0, true, ReasonSpeed},
			{39, 50, 0, 0.3, 0, 0, false, ReasonNone},
			{40, 50, 0, 0.2, 0, 0, true, ReasonStopped},
			{100, 52, 0, 2.0, 0, 0, false, ReasonNone}, // 2 m/s wander at a standstill: still stopped
			{200, 50, 0, 0, 0, 0, false, ReasonNone},
			{940, 50, 0, 0, 0, 0, true, ReasonStoppedPeriod},
			{950, 60, 0, 4, 0, 0, true, ReasonMoving},
		}},
		{"bad HDOP dropped", FilterConfig{}, []step{
			{0, 0, 0, 10, 0, 6, false, ReasonBadHDOP},
			{1, 0, 0, 10, 0, 1.2, true, ReasonFirst},
		}},
		{"criteria disabled with negative values", FilterConfig{MinDistance: -1, MaxHDOP: -1, Period: -1}, []step{
			{0, 0, 0, 10, 0, 9, true, ReasonFirst},
			{100, 1000, 0, 10, 0, 9, false, ReasonNone},
		}},
		{"Teltonika thresholds", FilterConfig{Period: 300 * time.Second, MinDistance: 100, MinHeading: 10,
			MinInterval: -1, StoppedPeriod: time.Hour}, []step{
			{0, 0, 0, 10, 0, 0, true, ReasonFirst},
			{10, 101, 0, 10, 0, 0, true, ReasonDistance},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFilter(tc.cfg)
			for i, s := range tc.steps {
				got, why := f.Next(mkFix(s))
				if got != s.want || why != s.why {
					t.Errorf("step %d (t=%vs): got %v %q, want %v %q", i, s.sec, got, why, s.want, s.why)
				}
			}
		})
	}
}

// With a clock injected, time comes from it, not from the fixes.
func TestFilterClock(t *testing.T) {
	now := t0
	f := NewFilter(FilterConfig{Clock: func() time.Time { return now }})
	if ok, _ := f.Next(mkFix(step{speed: 5})); !ok {
		t.Fatal("first fix not reported")
	}
	now = now.Add(61 * time.Second)
	if ok, why := f.Next(mkFix(step{north: 1, speed: 5})); !ok || why != ReasonPeriod {
		t.Errorf("got %v %q, want period from the injected clock", ok, why)
	}
}
