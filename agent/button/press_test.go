package button

import (
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)

func ms(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

type edgeAt struct {
	ms      int
	pressed bool
}

type fired struct {
	press Press
	ms    int
}

// simulate runs a presser the way Button.Run does: advance after every edge and at every deadline it
// returns, until the end.
func simulate(startPressed bool, edges []edgeAt, end int) []fired {
	p := presser{debounce: 30 * time.Millisecond, long: 2 * time.Second}
	p.start(t0, startPressed)
	var out []fired
	now := t0
	step := func(at time.Time) time.Time {
		press, next := p.advance(at)
		if press != 0 {
			out = append(out, fired{press, int(at.Sub(t0) / time.Millisecond)})
		}
		return next
	}
	next := step(now)
	i := 0
	for {
		// The next thing to happen: an edge, or the presser's deadline.
		var at time.Time
		isEdge := false
		if i < len(edges) {
			at, isEdge = ms(edges[i].ms), true
		}
		if !next.IsZero() && (!isEdge || next.Before(at)) {
			at, isEdge = next, false
		}
		if at.IsZero() || at.After(ms(end)) {
			return out
		}
		if isEdge {
			p.edge(Edge{Time: at, Active: edges[i].pressed})
			i++
		}
		next = step(at)
	}
}

func TestPresser(t *testing.T) {
	P, R := true, false
	cases := []struct {
		name  string
		start bool
		edges []edgeAt
		want  []fired
	}{
		{"clean short press", R, []edgeAt{{0, P}, {200, R}}, []fired{{ShortPress, 230}}},
		{"bouncing contact", R, []edgeAt{{0, P}, {2, R}, {3, P}, {5, R}, {6, P}, {300, R}, {302, P}, {305, R}},
			[]fired{{ShortPress, 335}}},
		{"glitch shorter than debounce", R, []edgeAt{{0, P}, {10, R}}, nil},
		{"glitch train", R, []edgeAt{{0, P}, {20, R}, {40, P}, {60, R}, {80, P}, {100, R}}, nil},
		{"long press fires while held", R, []edgeAt{{0, P}, {3000, R}}, []fired{{LongPress, 2000}}},
		{"held forever fires once", R, []edgeAt{{0, P}}, []fired{{LongPress, 2000}}},
		{"released just before long", R, []edgeAt{{0, P}, {1990, R}}, []fired{{ShortPress, 2020}}},
		{"bounce during a long hold", R, []edgeAt{{0, P}, {1000, R}, {1005, P}, {2500, R}}, []fired{{LongPress, 2000}}},
		{"release glitch just before long", R, []edgeAt{{0, P}, {1995, R}, {2010, P}, {2600, R}}, []fired{{LongPress, 2010}}},
		{"two short presses", R, []edgeAt{{0, P}, {100, R}, {400, P}, {500, R}}, []fired{{ShortPress, 130}, {ShortPress, 530}}},
		{"short then long", R, []edgeAt{{0, P}, {100, R}, {400, P}, {3000, R}}, []fired{{ShortPress, 130}, {LongPress, 2400}}},
		{"held at start: nothing until released", P, []edgeAt{{500, R}}, nil},
		{"held at start, then a press", P, []edgeAt{{500, R}, {1000, P}, {1100, R}}, []fired{{ShortPress, 1130}}},
		{"repeated level (lost edge)", R, []edgeAt{{0, P}, {50, P}, {150, R}, {160, R}}, []fired{{ShortPress, 190}}},
		{"release without press", R, []edgeAt{{100, R}}, nil},
	}
	for _, c := range cases {
		got := simulate(c.start, c.edges, 10000)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

// TestPresserLateAdvance: when advance runs late (a busy loop), the press is still classified by how long
// the button was held, not by when advance saw it.
func TestPresserLateAdvance(t *testing.T) {
	for _, c := range []struct {
		release int
		want    Press
	}{{500, ShortPress}, {2500, LongPress}} {
		p := presser{debounce: 30 * time.Millisecond, long: 2 * time.Second}
		p.start(t0, false)
		p.edge(Edge{Time: ms(0), Active: true})
		p.edge(Edge{Time: ms(c.release), Active: false})
		// The press edge was overwritten before advance ran: nothing to see.
		if got, _ := p.advance(ms(5000)); got != 0 {
			t.Fatalf("press and release seen only after both: got %v", got)
		}
		p = presser{debounce: 30 * time.Millisecond, long: 2 * time.Second}
		p.start(t0, false)
		p.edge(Edge{Time: ms(0), Active: true})
		if got, _ := p.advance(ms(40)); got != 0 {
			t.Fatalf("press: %v", got)
		}
		p.edge(Edge{Time: ms(c.release), Active: false})
		if got, next := p.advance(ms(9000)); got != c.want || !next.IsZero() {
			t.Fatalf("release at %d ms seen at 9 s: %v (next %v), want %v", c.release, got, next, c.want)
		}
	}
}
