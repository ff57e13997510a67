package driver

import (
	"context"
	"errors"
	"sync"
	"time"
)

var errKeyReused = errors.New("driver: idempotency key reused for a different request")

// idemEntry is one Idempotency-Key: the request it was first used for and, once done is closed, the answer.
type idemEntry struct {
	key  string
	fp   string // the request's fingerprint: order, action, reason, via
	at   time.Time
	done chan struct{}

	// Set before done is closed; read after.
	status int
	body   []byte
	kept   bool // false: the answer was a server error, and the key may be tried again
}

// idemCache remembers the answers to requests made with an Idempotency-Key, at most max keys for ttl, in
// memory: a restart of the agent forgets them (delivered and failed stay idempotent through the order book).
type idemCache struct {
	max int
	ttl time.Duration

	// mu guards m and order.
	mu    sync.Mutex
	m     map[string]*idemEntry
	order []*idemEntry // oldest first
}

func newIdemCache(max int, ttl time.Duration) *idemCache {
	return &idemCache{max: max, ttl: ttl, m: map[string]*idemEntry{}}
}

// do runs fn once per key and fingerprint and returns its answer to every request with that key: a request
// that arrives while the first is running waits for it. A key used for another fingerprint is errKeyReused.
// Server errors (5xx) are not kept, so a retry with the same key runs again.
func (c *idemCache) do(ctx context.Context, key, fp string, clock func() time.Time, fn func() (int, []byte)) (int, []byte, error) {
	for {
		c.mu.Lock()
		c.prune(clock())
		e, found := c.m[key]
		if !found {
			e = &idemEntry{key: key, fp: fp, at: clock(), done: make(chan struct{})}
			c.m[key] = e
			c.order = append(c.order, e)
			c.mu.Unlock()
			status, body := fn()
			c.mu.Lock()
			e.status, e.body, e.kept = status, body, status < 500
			if !e.kept && c.m[key] == e {
				delete(c.m, key)
			}
			close(e.done)
			c.mu.Unlock()
			return status, body, nil
		}
		c.mu.Unlock()
		if e.fp != fp {
			return 0, nil, errKeyReused
		}
		select {
		case <-e.done:
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		}
		if e.kept {
			return e.status, e.body, nil
		}
	}
}

// prune forgets expired keys and the oldest beyond max. The caller holds mu.
func (c *idemCache) prune(now time.Time) {
	n := 0
	for _, e := range c.order {
		if c.m[e.key] != e { // already replaced or dropped
			n++
			continue
		}
		if now.Sub(e.at) < c.ttl && len(c.m) < c.max {
			break
		}
		delete(c.m, e.key)
		n++
	}
	c.order = c.order[n:]
}
