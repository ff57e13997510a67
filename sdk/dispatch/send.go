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

// SendLoop runs an outbox's send rounds while its publisher is connected: a round at once, another at once
// while rounds come back full, otherwise at the earliest due time, after Poll, or when woken. The bbolt
// Outbox and the office's PostgreSQL engine run their rounds with it.
type SendLoop struct {
	// Round sends what is due: how many it sent and when the next falls due (zero: none waiting).
	Round func(ctx context.Context, pub Publisher) (sent int, next time.Time, err error)
	// Wake returns the channel that is closed to start a round early (the current one each time).
	Wake       func() <-chan struct{}
	Poll       time.Duration // the longest wait between rounds
	RetryDelay time.Duration // the wait after a failed round
	MaxBatch   int           // a round that sent this many leaves more due: the next follows at once
	Clock      func() time.Time
	OnError    func(error) // a failed round (it is retried after RetryDelay)
}

// Run loops until ctx ends (nil) or the publisher's connection ends for good (its error).
func (l SendLoop) Run(ctx context.Context, pub Publisher) error {
	for {
		if err := pub.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wake := l.Wake()
		sent, next, err := l.Round(ctx, pub)
		if ctx.Err() != nil {
			return nil
		}
		wait := l.Poll
		switch {
		case err != nil:
			l.OnError(err)
			wait = l.RetryDelay
		case sent >= l.MaxBatch:
			continue // more are due
		case !next.IsZero():
			wait = min(wait, max(next.Sub(l.Clock()), 0))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}
