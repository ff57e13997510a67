package agent

import (
	"fmt"
	"time"

	"github.com/waybill-iot/waybill/agent/gpio"
)

// IgnitionConfig is the ignition-sense input: a GPIO line that is active while the vehicle's ignition is
// on (terminal 15, through the board's digital input or an opto-coupler). With it, trips follow the
// ignition (see tripDetector); without it, movement.
type IgnitionConfig struct {
	// Chip is the GPIO chip, e.g. gpiochip0. Zero: the board's.
	Chip string `toml:"chip"`
	// Line is the line's offset on Chip (gpioinfo lists them). Nil: the board's (most boards have none);
	// -1: no ignition input.
	Line *int `toml:"line"`
	// ActiveHigh: the line is high while the ignition is on (a voltage divider, a gateway's digital input).
	// Zero: active-low, an opto-coupler pulling the line to ground while the ignition is on.
	ActiveHigh bool `toml:"active_high"`
	// Bias is the line's internal pull resistor: "pull-up", "pull-down" or "none" (the circuit drives the
	// line). Zero: toward off (pull-up when active-low, pull-down when active-high), so a cut wire reads off.
	Bias string `toml:"bias"`
	// Debounce: a level counts once it has held this long (the line dips and bounces while the engine
	// cranks; wire terminal 15, which stays on while cranking, not accessory power, which drops for
	// seconds); the change is dated when the level began to hold. Zero: 1 s. Range 100ms..30s.
	Debounce time.Duration `toml:"debounce"`
}

// defaults fills the zero fields after the board's facts: no line means no input.
func (c *IgnitionConfig) defaults() {
	if c.Line == nil {
		none := -1
		c.Line = &none
	}
	if c.Bias == "" {
		c.Bias = string(gpio.PullUp)
		if c.ActiveHigh {
			c.Bias = string(gpio.PullDown)
		}
	}
	if c.Debounce == 0 {
		c.Debounce = time.Second
	}
}

// validate checks the section after defaults (the debounce's range is in limits); each problem names the
// key and what to write. Whether the chip and line exist is known only when the agent opens them.
func (c IgnitionConfig) validate() []string {
	var p []string
	switch {
	case *c.Line < -1:
		p = append(p, fmt.Sprintf("ignition.line %d: want the line's offset on the chip (gpioinfo lists them), or -1 for no ignition input", *c.Line))
	case *c.Line >= 0 && c.Chip == "":
		p = append(p, fmt.Sprintf("ignition.line %d needs ignition.chip, e.g. gpiochip0", *c.Line))
	}
	switch gpio.Bias(c.Bias) {
	case gpio.PullUp, gpio.PullDown, gpio.BiasNone:
	default:
		p = append(p, fmt.Sprintf("ignition.bias %q: want pull-up, pull-down or none (remove it to pull toward off)", c.Bias))
	}
	return p
}
