// Package gpio reads input lines of the Linux GPIO character device for the agent: the driver's button
// (agent/button) and the ignition sense. OpenInput requests a line with edge detection on both edges and
// delivers every level change, bounces included, stamped with a clock; debouncing is the reader's (a
// button press and an ignition change want different times). Tests inject a Fake instead.
//
// The gpiocdev code (github.com/warthog618/go-gpiocdev: uAPI v2 from Linux 5.10, v1 before) runs against a
// real GPIO chip in cmd/waybill/vm TestButton. Off Linux, OpenInput returns an error.
package gpio

import "time"

// Edge is one change of a line's level as the line reported it.
type Edge struct {
	Time   time.Time // when it happened
	Active bool      // the level after the edge: true = active (pressed, ignition on)
}

// Line is an input line as its readers use it. *Input implements it; tests inject a *Fake.
type Line interface {
	// Active reads the level now.
	Active() (bool, error)
	// Edges delivers every level change in time order; it is closed when the line is closed.
	Edges() <-chan Edge
}

// Bias is the line's internal pull resistor.
type Bias string

const (
	// BiasAuto pulls toward the inactive level: up when active-low, down when active-high, so an
	// unconnected line (a cut wire) reads inactive.
	BiasAuto Bias = ""
	PullUp   Bias = "pull-up"
	PullDown Bias = "pull-down"
	// BiasNone requests no pull resistor: the board or an external circuit drives the line, or the GPIO
	// block has none (the PL061).
	BiasNone Bias = "none"
)

// InputConfig names an input line. Zero values are documented per field.
type InputConfig struct {
	// Chip is the GPIO chip, as a name ("gpiochip0") or a path ("/dev/gpiochip0"). Required.
	Chip string
	// Line is the line's offset on the chip (gpioinfo lists them). Required; 0 is a valid offset.
	Line int
	// ActiveHigh: the line is high when active. Zero: active-low (a button to ground, an opto-coupler
	// pulling the line down); the kernel inverts it, so Active and Edge.Active are the logical level.
	ActiveHigh bool
	// Bias zero: BiasAuto.
	Bias Bias
	// Consumer is the label the kernel shows for the line (gpioinfo). Zero: "waybill".
	Consumer string
	// Clock stamps the edges; it must be the reader's clock. Nil: time.Now.
	Clock func() time.Time
}

// EdgeBuffer is how many edges may wait for the reader; more are dropped (and counted) rather than block
// the kernel event reader. A bouncing contact gives a few dozen edges per change at most, and a later edge
// carries the level, so the reader recovers.
const EdgeBuffer = 256
