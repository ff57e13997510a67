package button

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/warthog618/go-gpiocdev"
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

// edgeBuffer is how many edges may wait for the Button; more are dropped (and counted) rather than block
// the kernel event reader. A bouncing contact gives a few dozen edges per press at most.
const edgeBuffer = 256

// GPIOLine is a button on a GPIO line, watched for both edges.
type GPIOLine struct {
	line    *gpiocdev.Line
	edges   chan Edge
	clock   func() time.Time
	dropped atomic.Uint64
}

// OpenLine requests the line as an input with edge detection on both edges.
func OpenLine(cfg GPIOConfig) (*GPIOLine, error) {
	if cfg.Chip == "" || cfg.Line < 0 {
		return nil, errors.New("button: GPIOConfig needs a Chip and a Line offset >= 0")
	}
	if cfg.Consumer == "" {
		cfg.Consumer = "waybill-button"
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	l := &GPIOLine{edges: make(chan Edge, edgeBuffer), clock: cfg.Clock}
	opts := []gpiocdev.LineReqOption{gpiocdev.AsInput, gpiocdev.WithConsumer(cfg.Consumer), gpiocdev.WithBothEdges,
		gpiocdev.WithEventHandler(l.handle)}
	switch {
	case !cfg.ActiveHigh:
		opts = append(opts, gpiocdev.AsActiveLow)
		if !cfg.NoPull {
			opts = append(opts, gpiocdev.WithPullUp)
		}
	case !cfg.NoPull:
		opts = append(opts, gpiocdev.WithPullDown)
	}
	line, err := gpiocdev.RequestLine(cfg.Chip, cfg.Line, opts...)
	if err != nil {
		return nil, fmt.Errorf("button: request %s line %d: %w", cfg.Chip, cfg.Line, err)
	}
	l.line = line
	return l, nil
}

// handle runs on gpiocdev's event goroutine. Active-low is applied by the kernel: a rising edge is a
// press whatever the wiring.
func (l *GPIOLine) handle(evt gpiocdev.LineEvent) {
	e := Edge{Time: l.clock(), Pressed: evt.Type == gpiocdev.LineEventRisingEdge}
	select {
	case l.edges <- e:
	default:
		l.dropped.Add(1)
	}
}

// Pressed reads the line's level now.
func (l *GPIOLine) Pressed() (bool, error) {
	v, err := l.line.Value()
	if err != nil {
		return false, fmt.Errorf("button: read line: %w", err)
	}
	return v == 1, nil
}

// Edges delivers the line's edges; it is closed by Close.
func (l *GPIOLine) Edges() <-chan Edge { return l.edges }

// Dropped counts edges lost because the Button did not keep up.
func (l *GPIOLine) Dropped() uint64 { return l.dropped.Load() }

// Close releases the line. gpiocdev's Close waits for its event goroutine, so no edge is sent after the
// channel is closed.
func (l *GPIOLine) Close() error {
	err := l.line.Close()
	close(l.edges)
	return err
}

// LEDConfig names the LED's line.
type LEDConfig struct {
	Chip string // as GPIOConfig.Chip; required
	Line int    // the line's offset; required
	// ActiveLow: the LED lights when the line is low (wired from the supply to the pin). Zero: lights when high.
	ActiveLow bool
	// Consumer is the kernel's label for the line. Zero: "waybill-led".
	Consumer string
}

// GPIOLED is an LED on a GPIO output line.
type GPIOLED struct{ line *gpiocdev.Line }

// OpenLED requests the line as an output, off.
func OpenLED(cfg LEDConfig) (*GPIOLED, error) {
	if cfg.Chip == "" || cfg.Line < 0 {
		return nil, errors.New("button: LEDConfig needs a Chip and a Line offset >= 0")
	}
	if cfg.Consumer == "" {
		cfg.Consumer = "waybill-led"
	}
	opts := []gpiocdev.LineReqOption{gpiocdev.AsOutput(0), gpiocdev.WithConsumer(cfg.Consumer)}
	if cfg.ActiveLow {
		opts = append(opts, gpiocdev.AsActiveLow)
	}
	line, err := gpiocdev.RequestLine(cfg.Chip, cfg.Line, opts...)
	if err != nil {
		return nil, fmt.Errorf("button: request LED %s line %d: %w", cfg.Chip, cfg.Line, err)
	}
	return &GPIOLED{line: line}, nil
}

// Set turns the LED on or off.
func (l *GPIOLED) Set(on bool) error {
	v := 0
	if on {
		v = 1
	}
	return l.line.SetValue(v)
}

// Close turns the LED off and releases the line.
func (l *GPIOLED) Close() error {
	err := l.line.SetValue(0)
	if cerr := l.line.Close(); err == nil {
		err = cerr
	}
	return err
}
