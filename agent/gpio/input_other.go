//go:build !linux

package gpio

import "errors"

// errNoGPIO: the GPIO character device exists only on Linux.
var errNoGPIO = errors.New("gpio: GPIO lines need Linux (the GPIO character device)")

// Input is unavailable off Linux.
type Input struct{}

// OpenInput fails off Linux.
func OpenInput(InputConfig) (*Input, error) { return nil, errNoGPIO }

func (*Input) Active() (bool, error) { return false, errNoGPIO }
func (*Input) Edges() <-chan Edge    { return nil }
func (*Input) Dropped() uint64       { return 0 }
func (*Input) Close() error          { return errNoGPIO }
