package gpssim

import (
	"math"
	"testing"
	"time"
)

func TestRouteIsALoopWithStopsAndATunnel(t *testing.T) {
	r := NewRoute(RouteConfig{Start: LatLon{48.1, 11.5}, Seed: 3})
	var stops, tunnel, moving int
	for d := time.Duration(0); d < r.Loop(); d += time.Second {
		s := r.At(d)
		switch {
		case s.Stop:
			stops++
		case s.Tunnel:
			tunnel++
		case s.Speed > 0:
			moving++
		}
		if s.Speed > 11.01 {
			t.Fatalf("speed %v above cruise", s.Speed)
		}
	}
	if stops == 0 || tunnel == 0 || moving == 0 {
		t.Errorf("stops %d s, tunnel %d s, moving %d s: want all three", stops, tunnel, moving)
	}
	a, b := r.At(0).Pos, r.At(r.Loop()-time.Millisecond).Pos
	if math.Abs(a.Lat-b.Lat) > 1e-5 || math.Abs(a.Lon-b.Lon) > 1e-5 {
		t.Errorf("loop does not close: %v vs %v", a, b)
	}
	if r2 := NewRoute(RouteConfig{Start: LatLon{48.1, 11.5}, Seed: 4}); r2.Loop() == r.Loop() {
		t.Errorf("seeds 3 and 4 give the same loop length %v", r.Loop())
	}
}
