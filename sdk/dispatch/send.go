package dispatch

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/waybill-iot/waybill/sdk/transport"
)

// Send is one order revision to publish, with its outcome. The Outbox's re-sender uses it, and so does any
// other outbox engine (the office's PostgreSQL one), so that all send alike.
type Send struct {
	Entry   *Entry
	Topic   string
	Payload []byte
	Err     error // set by PublishAll: nil once the broker acknowledged it
}

// PublishAll publishes sends at QoS 1 with at most maxInFlight waiting for their PUBACK at once, each
// bounded by timeout, and sets each one's Err. It returns when all are done.
func PublishAll(ctx context.Context, pub Publisher, sends []*Send, maxInFlight int, timeout time.Duration) {
	work := make(chan *Send)
	var wg sync.WaitGroup
	for range min(max(maxInFlight, 1), len(sends)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				pctx, cancel := context.WithTimeout(ctx, timeout)
				s.Err = pub.Publish(pctx, s.Topic, s.Payload, transport.PublishOptions{QoS: 1})
				cancel()
			}
		}()
	}
	for _, s := range sends {
		work <- s
	}
	close(work)
	wg.Wait()
}

// Backoff is the wait after an order's n-th acknowledged send: lo doubling to hi, random in [d/2, d], so
// that orders sent together are not sent again together.
func Backoff(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}
