//go:build !linux

package button

import (
	"errors"
	"time"
)

// errNoGPIO: the GPIO character device exists only on Linux.
var errNoGPIO = errors.New("button: GPIO lines need Linux (the GPIO character device)")

// GPIOConfig names the button's line; see the Linux build for the fields' meaning.
type GPIOConfig struct {
	Chip       string
	Line       int
	ActiveHigh bool
	NoPull     bool
	Consumer   string
	Clock      func() time.Time
}

// GPIOLine is unavailable off Linux.
type GPIOLine struct{}

// OpenLine fails off Linux.
func OpenLine(GPIOConfig) (*GPIOLine, error) { return nil, errNoGPIO }

func (*GPIOLine) Pressed() (bool, error) { return false, errNoGPIO }
func (*GPIOLine) Edges() <-chan Edge     { return nil }
func (*GPIOLine) Dropped() uint64        { return 0 }
func (*GPIOLine) Close() error           { return errNoGPIO }

// LEDConfig names the LED's line; see the Linux build.
type LEDConfig struct {
	Chip      string
	Line      int
	ActiveLow bool
	Consumer  string
}

// GPIOLED is unavailable off Linux.
type GPIOLED struct{}

// OpenLED fails off Linux.
func OpenLED(LEDConfig) (*GPIOLED, error) { return nil, errNoGPIO }

func (*GPIOLED) Set(bool) error { return errNoGPIO }
func (*GPIOLED) Close() error   { return errNoGPIO }
