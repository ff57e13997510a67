//go:build !linux

package button

import "errors"

// errNoGPIO: the GPIO character device exists only on Linux.
var errNoGPIO = errors.New("button: GPIO lines need Linux (the GPIO character device)")

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
