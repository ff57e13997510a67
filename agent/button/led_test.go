package button

import (
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/truck"
)

func TestLED(t *testing.T) {
	base := ledInput{blink: 500 * time.Millisecond, errBlink: 100 * time.Millisecond}
	with := func(f func(*ledInput)) ledInput { in := base; f(&in); return in }
	pending := with(func(in *ledInput) { in.pending = true })
	acked := with(func(in *ledInput) { in.pending = true; in.ackUntil = ms(3000) })
	failed := with(func(in *ledInput) { in.ackUntil = ms(3000); in.errUntil = ms(2050) })
	cases := []struct {
		name string
		in   ledInput
		at   int
		on   bool
		next int // -1: no change by itself
	}{
		{"nothing pending: off", base, 0, false, -1},
		{"order waiting: on in the first half period", pending, 0, true, 500},
		{"order waiting: off in the second", pending, 700, false, 1000},
		{"order waiting: on again", pending, 1000, true, 1500},
		{"recorded: steady on", acked, 700, true, 3000},
		{"recorded, hold over: back to blinking", acked, 3700, false, 4000},
		{"not recorded: fast blink on", failed, 1000, true, 1100},
		{"not recorded: fast blink off", failed, 1150, false, 1200},
		{"fast blink ends on time", failed, 2010, true, 2050},
		{"after the error, the hold shows", failed, 2100, true, 3000},
		{"after everything: off", failed, 3100, false, -1},
	}
	for _, c := range cases {
		on, next := ledAt(ms(c.at), c.in)
		wantNext := time.Time{}
		if c.next >= 0 {
			wantNext = ms(c.next)
		}
		if on != c.on || !next.Equal(wantNext) {
			t.Errorf("%s: at %d ms on=%v next=%v, want on=%v next=%v", c.name, c.at, on, next, c.on, wantNext)
		}
	}
}

func TestNearest(t *testing.T) {
	entry := func(id string, lat float64, received int, st truck.State) truck.Entry {
		return truck.Entry{Order: sdk.Order{ID: id, Lat: lat, Lon: 13.4}, State: st, Received: ms(received)}
	}
	book := []truck.Entry{
		entry("o-far", 52.53, 0, truck.StateActive),
		entry("o-near", 52.521, 100, truck.StateActive),
		entry("o-nearer-but-done", 52.5201, 50, truck.StateDelivered),
		entry("o-gone", 52.5202, 60, truck.StateCancelled),
		entry("o-twin-b", 52.525, 200, truck.StateActive),
		entry("o-twin-a", 52.525, 200, truck.StateActive),
	}
	fix := sdk.Fix{Lat: 52.52, Lon: 13.4}
	cases := []struct {
		name    string
		entries []truck.Entry
		fix     sdk.Fix
		hasFix  bool
		want    string
	}{
		{"nearest active with a fix", book, fix, true, "o-near"},
		{"oldest active without a fix", book, sdk.Fix{}, false, "o-far"},
		{"same distance and time: smaller id", book[4:], fix, true, "o-twin-a"},
		{"fix elsewhere", book, sdk.Fix{Lat: 52.53, Lon: 13.4}, true, "o-far"},
		{"nothing active", book[2:4], fix, true, ""},
		{"empty book", nil, fix, true, ""},
	}
	for _, c := range cases {
		e, ok := Nearest(c.entries, c.fix, c.hasFix)
		if got := e.Order.ID; ok != (c.want != "") || got != c.want {
			t.Errorf("%s: got %q %v, want %q", c.name, got, ok, c.want)
		}
	}
}
