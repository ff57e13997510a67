package button

import "time"

// ledInput is what the LED shows.
type ledInput struct {
	pending  bool      // at least one active order is waiting for the driver
	ackUntil time.Time // a press was recorded: steady on until then
	errUntil time.Time // a press could not be recorded: fast blink until then
	blink    time.Duration
	errBlink time.Duration
}

// ledAt returns whether the LED is on at now, and when that may next change (zero: not by itself). In
// order of precedence: fast blink after a press that was not recorded, steady on after a press that was,
// slow blink while an order waits, off. Blinks are aligned to the clock, so the pattern does not depend on
// when ledAt is called.
func ledAt(now time.Time, in ledInput) (bool, time.Time) {
	blink := func(half time.Duration, until time.Time) (bool, time.Time) {
		n := now.UnixNano() / int64(half)
		next := time.Unix(0, (n+1)*int64(half))
		if !until.IsZero() && until.Before(next) {
			next = until
		}
		return n%2 == 0, next
	}
	switch {
	case now.Before(in.errUntil):
		return blink(in.errBlink, in.errUntil)
	case now.Before(in.ackUntil):
		return true, in.ackUntil
	case in.pending:
		return blink(in.blink, time.Time{})
	}
	return false, time.Time{}
}
