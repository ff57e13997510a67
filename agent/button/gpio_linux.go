package button

import (
	"errors"
	"fmt"

	"github.com/warthog618/go-gpiocdev"
)

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
