package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Proxy.
type Config struct {
	// Target is the host:port every accepted connection is forwarded to. Required.
	Target string
	// Seed seeds where the failing connection attempts start (SetFailFraction), so a test run is
	// repeatable. Zero: seed 0 (still deterministic).
	Seed uint64
	// Logger receives connection events. Zero (nil): discard.
	Logger *slog.Logger
}

// Stats are counters since Start.
type Stats struct {
	Accepted  uint64 // connections accepted from clients
	Failed    uint64 // of those, closed at once by SetFailFraction
	Dropped   uint64 // closed by DropAll
	Forwarded uint64 // bytes delivered, both directions
}

// Proxy is a TCP proxy on 127.0.0.1 whose faults can be switched while connections run.
type Proxy struct {
	cfg Config
	ln  net.Listener
	wg  sync.WaitGroup

	// settings read by the pipes; changed at any time by the Set methods.
	latency   atomic.Int64 // one-way delay, ns
	bandwidth atomic.Int64 // bytes/s per direction, 0: unlimited
	failFrac  atomic.Uint64
	blackHole atomic.Bool
	holeLift  chan struct{} // closed and replaced when the black hole is lifted (guarded by mu)

	accepted, failed, dropped, forwarded atomic.Uint64

	// mu guards the fields below.
	mu      sync.Mutex
	rng     *rand.Rand
	failAcc uint64 // error diffusion of SetFailFraction, in 1/2^32: a connection fails when it passes 1
	conns   map[*pair]struct{}
	closed  bool
	done    chan struct{} // closed by Close
}

// pair is one proxied connection: client side and target side.
type pair struct {
	client, target net.Conn
	once           sync.Once
}

// close closes both sides. With rst, the sockets are reset (SO_LINGER 0) instead of closed with a FIN.
func (p *pair) close(rst bool) {
	p.once.Do(func() {
		for _, c := range []net.Conn{p.client, p.target} {
			if c == nil {
				continue
			}
			if tc, ok := c.(*net.TCPConn); ok && rst {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
	})
}

// Start listens on 127.0.0.1:0 and forwards connections to cfg.Target, passing everything through until a
// fault is set. Close it with Close.
func Start(cfg Config) (*Proxy, error) {
	if cfg.Target == "" {
		return nil, errors.New("faultproxy: Config.Target is empty")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	p := &Proxy{
		cfg:      cfg,
		ln:       ln,
		rng:      rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15)),
		conns:    make(map[*pair]struct{}),
		holeLift: make(chan struct{}),
		done:     make(chan struct{}),
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.accept()
	}()
	return p, nil
}

// Addr is the proxy's listening address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetLatency delays every chunk of data by d in each direction (so a round trip takes 2·d more). Data keeps
// flowing while delayed: a chunk read now leaves at now+d regardless of the chunks before it, so latency does
// not limit throughput. 0: no delay.
func (p *Proxy) SetLatency(oneWay time.Duration) { p.latency.Store(int64(oneWay)) }

// SetBandwidth limits each direction of each connection to bytesPerSecond. 0: unlimited.
func (p *Proxy) SetBandwidth(bytesPerSecond int64) { p.bandwidth.Store(max(bytesPerSecond, 0)) }

// SetFailFraction makes that fraction (0 to 1) of new connections fail: accepted, then reset at once. 0: none.
// The failures are spread evenly from a seeded starting point: of n attempts, floor(n x f) or more fail.
func (p *Proxy) SetFailFraction(f float64) {
	f = min(max(f, 0), 1)
	p.failFrac.Store(uint64(f * (1 << 32)))
}

// SetBlackHole stops (true) or resumes (false) forwarding on every connection, old and new, without closing
// anything: no FIN, no RST, like a link whose packets vanish. Data read meanwhile is held, not lost, and
// flows again when the black hole is lifted (as TCP retransmission would deliver it), unless an endpoint gave
// up first. New connections are still accepted.
func (p *Proxy) SetBlackHole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	was := p.blackHole.Swap(on)
	if was && !on {
		close(p.holeLift)
		p.holeLift = make(chan struct{})
	}
}

// Pass clears every fault: no latency, no bandwidth limit, no failures, no black hole.
func (p *Proxy) Pass() {
	p.SetLatency(0)
	p.SetBandwidth(0)
	p.SetFailFraction(0)
	p.SetBlackHole(false)
}

// DropAll resets every open connection now, both sides (RST, as when a cellular link is lost mid-transfer),
// and returns how many it dropped. New connections are accepted as before.
func (p *Proxy) DropAll() int {
	p.mu.Lock()
	pairs := make([]*pair, 0, len(p.conns))
	for c := range p.conns {
		pairs = append(pairs, c)
	}
	p.mu.Unlock()
	for _, c := range pairs {
		c.close(true)
	}
	p.dropped.Add(uint64(len(pairs)))
	p.cfg.Logger.Info("faultproxy: dropped connections", "n", len(pairs))
	return len(pairs)
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	return Stats{Accepted: p.accepted.Load(), Failed: p.failed.Load(), Dropped: p.dropped.Load(),
		Forwarded: p.forwarded.Load()}
}

// Close stops accepting, closes every connection and waits for the proxy's goroutines, or for ctx.
func (p *Proxy) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
		_ = p.ln.Close()
		for c := range p.conns {
			c.close(false)
		}
	}
	p.mu.Unlock()
	waited := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("faultproxy: close: %w", ctx.Err())
	}
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			p.cfg.Logger.Error("faultproxy: accept", "err", err)
			return
		}
		p.accepted.Add(1)
		p.mu.Lock()
		// Error diffusion from a random phase: of any n attempts in a row, at least floor(n x fraction) fail
		// (a coin per attempt let 7 attempts at 30 % all pass, 8 % of runs), still at seeded places.
		f := p.failFrac.Load()
		if f > 0 && p.failAcc == 0 {
			p.failAcc = p.rng.Uint64()&(1<<32-1) | 1
		}
		p.failAcc += f
		fail := f > 0 && p.failAcc >= 1<<32
		if fail {
			p.failAcc -= 1 << 32
		}
		p.mu.Unlock()
		if fail {
			p.failed.Add(1)
			(&pair{client: c}).close(true)
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

// serve connects to the target and runs the two directions until either side ends.
func (p *Proxy) serve(client net.Conn) {
	d := net.Dialer{Timeout: 5 * time.Second}
	target, err := d.Dial("tcp", p.cfg.Target)
	if err != nil {
		p.cfg.Logger.Warn("faultproxy: dial target", "err", err)
		(&pair{client: client}).close(true)
		return
	}
	pr := &pair{client: client, target: target}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		pr.close(false)
		return
	}
	p.conns[pr] = struct{}{}
	p.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(pr, client, target) }()
	go func() { defer wg.Done(); p.pipe(pr, target, client) }()
	wg.Wait()
	pr.close(false)
	p.mu.Lock()
	delete(p.conns, pr)
	p.mu.Unlock()
}

// chunk is data read at one moment, due for delivery at another.
type chunk struct {
	data []byte
	due  time.Time
	eof  bool // the source closed: half-close the destination when this is delivered
}

// pipe copies src to dst through a queue of timestamped chunks: a reader stamps each chunk with its delivery
// time, a writer delivers it then. Latency therefore delays data without serialising it. A FIN from src is
// passed on as a half-close once the data before it is delivered; anything else that ends the pipe (a reset,
// a failed write, DropAll) closes the whole pair.
func (p *Proxy) pipe(pr *pair, src, dst net.Conn) {
	queue := make(chan chunk, 4096)
	stop := make(chan struct{})
	var sawEOF atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // reader
		defer wg.Done()
		defer close(queue)
		for {
			buf := make([]byte, 16<<10)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case queue <- chunk{data: buf[:n], due: time.Now().Add(time.Duration(p.latency.Load()))}:
				case <-stop:
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					select {
					case queue <- chunk{eof: true, due: time.Now().Add(time.Duration(p.latency.Load()))}:
						sawEOF.Store(true)
					case <-stop:
					}
				}
				return
			}
		}
	}()
	drained := p.deliver(queue, dst)
	close(stop)
	if !drained || !sawEOF.Load() {
		pr.close(false) // also unblocks the reader
	}
	wg.Wait()
}

// deliver writes queued chunks to dst at their due time, within the bandwidth limit and not during a black
// hole. It reports whether it delivered everything until the queue was closed.
func (p *Proxy) deliver(queue <-chan chunk, dst net.Conn) bool {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	wait := func(until time.Time) bool {
		d := time.Until(until)
		if d <= 0 {
			return true
		}
		timer.Reset(d)
		select {
		case <-timer.C:
			return true
		case <-p.done:
			return false
		}
	}
	var nextFree time.Time // bandwidth: when the link can carry the next byte
	for c := range queue {
		for p.blackHole.Load() {
			p.mu.Lock()
			lift := p.holeLift
			on := p.blackHole.Load()
			p.mu.Unlock()
			if !on {
				break
			}
			select {
			case <-lift:
			case <-p.done:
				return false
			}
		}
		if !wait(c.due) {
			return false
		}
		if c.eof {
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
				continue
			}
			return false
		}
		data := c.data
		for len(data) > 0 {
			piece := data
			if bw := p.bandwidth.Load(); bw > 0 {
				// Send in pieces of at most 10 ms worth, each when the link is free.
				if lim := max(int(bw/100), 1); len(piece) > lim {
					piece = piece[:lim]
				}
				now := time.Now()
				if nextFree.Before(now) {
					nextFree = now
				}
				if !wait(nextFree) {
					return false
				}
				nextFree = nextFree.Add(time.Duration(float64(len(piece)) / float64(bw) * float64(time.Second)))
			}
			if _, err := dst.Write(piece); err != nil {
				return false
			}
			p.forwarded.Add(uint64(len(piece)))
			data = data[len(piece):]
		}
	}
	return true
}
