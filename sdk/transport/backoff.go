package transport

import (
	"math/rand/v2"
	"time"
)

// backoff returns how long to wait before round attempt over all brokers (autopaho's ReconnectBackoff).
// attempt 0 precedes the first round after New or after a drop; later rounds follow failed ones.
func (c *Conn) backoff(attempt int) time.Duration {
	lo, hi := c.cfg.BackoffMin, c.cfg.BackoffMax
	if attempt == 0 {
		if p := max(c.penalty.Load(), c.refusals.Load()); p > 0 {
			// The handler failed and we dropped the link to get the message again, or the broker refused a
			// required subscription: back off by failures.
			return jitter(expo(lo, hi, int(p)))
		}
		if !c.everConnected.Load() {
			return 0 // first connection: no reason to wait
		}
		// After a drop: a random wait over the reconnect window, so a fleet does not reconnect in lock-step.
		w := c.cfg.ReconnectWindow
		if w <= 0 {
			w = lo
		}
		return time.Duration(rand.Int64N(int64(w) + 1))
	}
	return jitter(expo(lo, hi, attempt))
}

// expo is lo·2^(n-1), capped at hi.
func expo(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// jitter returns a random duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}
