package button

import (
	"time"

	"github.com/waybill-iot/waybill/agent/gpio"
)

// Edge is one change of the button's level as the line reported it, bounces included; Active is pressed.
type Edge = gpio.Edge

// Press is what the driver did with the button.
type Press int

const (
	ShortPress Press = iota + 1 // released before LongPress: delivered
	LongPress                   // held for LongPress: a problem
)

func (p Press) String() string {
	switch p {
	case ShortPress:
		return "short"
	case LongPress:
		return "long"
	}
	return "none"
}

// presser turns raw edges into presses. A level counts once it has been stable for debounce: bounces
// shorter than that, and glitches from a noisy cable, are ignored. A press held for long fires LongPress at
// that moment (the driver sees the LED answer without letting go), and its release then does nothing;
// a release before long is a ShortPress. It is pure: time comes only from its arguments.
type presser struct {
	debounce, long time.Duration

	raw    bool      // the level of the last edge
	rawAt  time.Time // when that edge happened
	stable bool      // the debounced level
	downAt time.Time // when the current press began (the edge that started it)
	spent  bool      // the current press has fired already, or began before we started
}

// start sets the level the line has when watching begins. A button already held (or stuck, or shorted)
// fires nothing until it has been released.
func (p *presser) start(now time.Time, pressed bool) {
	p.raw, p.rawAt, p.stable, p.downAt, p.spent = pressed, now, pressed, now, pressed
}

// edge records a raw edge. Edges must come in time order.
func (p *presser) edge(e Edge) {
	p.raw, p.rawAt = e.Active, e.Time
}

// advance returns the press that became certain by now (if any), and when advance should next be called
// (zero: not until the next edge).
func (p *presser) advance(now time.Time) (Press, time.Time) {
	var got Press
	if p.raw != p.stable && now.Sub(p.rawAt) >= p.debounce {
		p.stable = p.raw
		if p.stable {
			p.downAt, p.spent = p.rawAt, false
		} else if !p.spent {
			p.spent = true
			got = ShortPress
			if p.rawAt.Sub(p.downAt) >= p.long { // advance was not called in time to see it held
				got = LongPress
			}
		}
	}
	if got == 0 && p.raw && p.stable && !p.spent && now.Sub(p.downAt) >= p.long {
		p.spent = true
		got = LongPress
	}
	switch {
	case p.raw != p.stable:
		return got, p.rawAt.Add(p.debounce)
	case p.raw && p.stable && !p.spent:
		return got, p.downAt.Add(p.long)
	}
	return got, time.Time{}
}
