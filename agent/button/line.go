package button

import (
	"fmt"
	"time"

	"github.com/waybill-iot/waybill/agent/gpio"
)

// GPIOConfig names the button's line on the Linux GPIO character device.
type GPIOConfig struct {
	// Chip is the GPIO chip, as a name ("gpiochip0") or a path ("/dev/gpiochip0"). Required.
	Chip string
	// Line is the line's offset on the chip. Required (0 is a valid offset).
	Line int
	// ActiveHigh: the button drives the line high when pressed (with an external pull-down). Zero: the
	// usual wiring, the button pulls the line to ground and the line is active-low.
	ActiveHigh bool
	// NoPull disables the internal pull resistor (pull-up when active-low, pull-down when active-high).
	// Zero: the internal pull is enabled, so an unconnected line reads released.
	NoPull bool
	// Consumer is the label the kernel shows for the line (gpioinfo). Zero: "waybill-button".
	Consumer string
	// Clock stamps the edges; it must be the Button's Clock. Nil: time.Now.
	Clock func() time.Time
}

// GPIOLine is a button on a GPIO line, watched for both edges (agent/gpio's input line).
type GPIOLine = gpio.Input

// OpenLine requests the line as an input with edge detection on both edges. Off Linux it fails.
func OpenLine(cfg GPIOConfig) (*GPIOLine, error) {
	if cfg.Consumer == "" {
		cfg.Consumer = "waybill-button"
	}
	bias := gpio.BiasAuto
	if cfg.NoPull {
		bias = gpio.BiasNone
	}
	l, err := gpio.OpenInput(gpio.InputConfig{Chip: cfg.Chip, Line: cfg.Line, ActiveHigh: cfg.ActiveHigh, Bias: bias,
		Consumer: cfg.Consumer, Clock: cfg.Clock})
	if err != nil {
		return nil, fmt.Errorf("button: %w", err)
	}
	return l, nil
}
