package agent

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// maxHeaderBytes bounds a request's header on the local listener. A request carries a cookie or a Bearer
// token and little else; net/http's default (1 MiB) would let each connection hold a megabyte.
const maxHeaderBytes = 16 << 10

// maxHeaderTimeout bounds reading a request's header (and a new connection that sends nothing), unless
// HTTPConfig.ReadTimeout is shorter.
const maxHeaderTimeout = 10 * time.Second

// newLocalServer builds the local listener's server and the wrapper that caps its connections.
func newLocalServer(c HTTPConfig, h http.Handler) (*http.Server, *connLimiter) {
	lim := &connLimiter{max: c.MaxConns, conns: map[*limitedConn]struct{}{}}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(maxHeaderTimeout, c.ReadTimeout),
		ReadTimeout:       c.ReadTimeout,
		WriteTimeout:      c.WriteTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         lim.connState,
	}
	return srv, lim
}

// connLimiter caps the open connections of a listener (Listen wraps it). At the cap, a new connection takes
// the place of the oldest one that is idle between requests or has sent nothing yet (closing those loses no
// request: a client retries on a new connection); when every connection is busy with a request, the new
// one is closed at once, before anything is read or written. Closing costs nothing, while answering 503
// would need the request read and a write that can block, which is what a flood wants from us; busy
// connections end within the read and write timeouts, so the refusal lasts that long at most.
type connLimiter struct {
	max int

	mu      sync.Mutex
	conns   map[*limitedConn]struct{}
	peak    int
	evicted int
	refused int
}

type limitedConn struct {
	net.Conn
	lim   *connLimiter
	once  sync.Once
	state http.ConnState // guarded by lim.mu
	since time.Time      // when state was entered; guarded by lim.mu
}

func (c *limitedConn) Close() error {
	c.once.Do(func() {
		c.lim.mu.Lock()
		delete(c.lim.conns, c)
		c.lim.mu.Unlock()
	})
	return c.Conn.Close()
}

// Listen wraps ln.
func (l *connLimiter) Listen(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, lim: l}
}

type limitListener struct {
	net.Listener
	lim *connLimiter
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc, victim := l.lim.admit(c)
		if victim != nil {
			victim.Conn.Close()
		}
		if lc != nil {
			return lc, nil
		}
		c.Close()
	}
}

// admit counts c in, making room if it can: the caller closes victim, and closes c when lc is nil.
func (l *connLimiter) admit(c net.Conn) (lc, victim *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && len(l.conns) >= l.max {
		for o := range l.conns {
			if (o.state == http.StateNew || o.state == http.StateIdle) && (victim == nil || o.since.Before(victim.since)) {
				victim = o
			}
		}
		if victim == nil {
			l.refused++
			return nil, nil
		}
		delete(l.conns, victim)
		victim.once.Do(func() {}) // counted out here
		l.evicted++
	}
	lc = &limitedConn{Conn: c, lim: l, state: http.StateNew, since: time.Now()}
	l.conns[lc] = struct{}{}
	l.peak = max(l.peak, len(l.conns))
	return lc, victim
}

func (l *connLimiter) connState(c net.Conn, st http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	if st == http.StateClosed || st == http.StateHijacked {
		lc.once.Do(func() {
			l.mu.Lock()
			delete(l.conns, lc)
			l.mu.Unlock()
		})
		return
	}
	l.mu.Lock()
	lc.state, lc.since = st, time.Now()
	l.mu.Unlock()
}

// limiterStats is what the limiter counted.
type limiterStats struct{ Open, Peak, Evicted, Refused int }

func (l *connLimiter) stats() limiterStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return limiterStats{len(l.conns), l.peak, l.evicted, l.refused}
}
