package office

import (
	"container/list"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The public pages' rate limit when Config leaves it zero: a tracking page costs 5 requests to open (the
// page, its three files, its status) and 4 a minute while open (its 15 s poll), so a few people behind
// one address fit; a client that hammers gets one request a second, a couple of primary-key reads.
var DefaultTrackingRate = Rate{N: 60, Per: time.Minute}

const (
	DefaultTrackingBurst   = 30
	DefaultTrackingClients = 10000 // 1.7 MB (173 bytes a client)
)

// Rate is a number of requests per period, written "60/min" (per s, min or h, or a duration: "5/10s").
type Rate struct {
	N   int
	Per time.Duration
}

// ParseRate reads a Rate like "60/min", "2/s", "1000/h" or "5/10s".
func ParseRate(s string) (Rate, error) {
	n, per, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want requests/period, like \"60/min\"", s)
	}
	var r Rate
	var err error
	if r.N, err = strconv.Atoi(strings.TrimSpace(n)); err != nil || r.N <= 0 {
		return Rate{}, fmt.Errorf("rate %q: want a positive whole number of requests before the /", s)
	}
	switch per = strings.TrimSpace(per); per {
	case "s", "sec", "second":
		r.Per = time.Second
	case "min", "minute":
		r.Per = time.Minute
	case "h", "hour":
		r.Per = time.Hour
	default:
		if r.Per, err = time.ParseDuration(per); err != nil || r.Per <= 0 {
			return Rate{}, fmt.Errorf("rate %q: the period is s, min, h or a duration like 10s", s)
		}
	}
	return r, nil
}

// UnmarshalText reads ParseRate's form (a TOML or JSON string).
func (r *Rate) UnmarshalText(b []byte) error {
	x, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = x
	return nil
}

func (r Rate) String() string {
	switch r.Per {
	case time.Second:
		return fmt.Sprintf("%d/s", r.N)
	case time.Minute:
		return fmt.Sprintf("%d/min", r.N)
	case time.Hour:
		return fmt.Sprintf("%d/h", r.N)
	}
	return fmt.Sprintf("%d/%v", r.N, r.Per)
}

// ParseTrustedProxies reads Config.TrustedProxies from addresses ("10.0.0.7") and prefixes ("10.0.0.0/8").
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("trusted proxy %q: want an address or a prefix like 10.0.0.0/8", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// limiter is a token bucket per client for the public pages, remembering at most max clients (the least
// recently seen is forgotten first: it comes back with a full bucket).
type limiter struct {
	perSec float64
	burst  float64
	max    int
	clock  func() time.Time

	// mu guards the fields below.
	mu      sync.Mutex
	clients map[netip.Addr]*list.Element // of *bucket
	lru     *list.List                   // front: the most recently seen
	limited uint64                       // requests refused
	evicted uint64                       // clients forgotten for room
}

type bucket struct {
	client  netip.Addr
	tokens  float64
	at      time.Time
	refused bool // refused since the bucket was last full (one log line until the client calms down)
}

func newLimiter(r Rate, burst, max int, clock func() time.Time) *limiter {
	return &limiter{perSec: float64(r.N) / r.Per.Seconds(), burst: float64(burst), max: max, clock: clock,
		clients: map[netip.Addr]*list.Element{}, lru: list.New()}
}

// allow takes a token of client's bucket. Without one it returns the wait until there is one, and first
// is true for the first refusal since the bucket was full.
func (l *limiter) allow(client netip.Addr) (ok bool, wait time.Duration, first bool) {
	now := l.clock()
	l.mu.Lock()
	defer l.mu.Unlock()
	var b *bucket
	if el, seen := l.clients[client]; seen {
		l.lru.MoveToFront(el)
		b = el.Value.(*bucket)
		if d := now.Sub(b.at).Seconds(); d > 0 {
			b.tokens = min(l.burst, b.tokens+d*l.perSec)
		}
		if b.tokens == l.burst {
			b.refused = false
		}
	} else {
		if len(l.clients) >= l.max {
			old := l.lru.Back()
			l.lru.Remove(old)
			delete(l.clients, old.Value.(*bucket).client)
			l.evicted++
		}
		b = &bucket{client: client, tokens: l.burst}
		l.clients[client] = l.lru.PushFront(b)
	}
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0, false
	}
	l.limited++
	first, b.refused = !b.refused, true
	ms := math.Round((1 - b.tokens) / l.perSec * 1000) // to the millisecond: no float dust in Retry-After
	return false, time.Duration(ms) * time.Millisecond, first
}

// stats returns the clients remembered, the requests refused and the clients forgotten for room.
func (l *limiter) stats() (clients int, limited, evicted uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients), l.limited, l.evicted
}

// checkLimit validates the rate limit's settings and fills in their defaults.
func (c *Config) checkLimit() error {
	switch {
	case c.TrackingRate == Rate{}:
		c.TrackingRate = DefaultTrackingRate
	case c.TrackingRate.N <= 0 || c.TrackingRate.Per <= 0:
		return fmt.Errorf("office: Config.TrackingRate %v: want a positive rate like 60/min", c.TrackingRate)
	}
	if c.TrackingBurst < 0 || c.TrackingClients < 0 {
		return errors.New("office: Config.TrackingBurst and TrackingClients cannot be negative")
	}
	if c.TrackingBurst == 0 {
		c.TrackingBurst = DefaultTrackingBurst
	}
	if c.TrackingClients == 0 {
		c.TrackingClients = DefaultTrackingClients
	}
	return nil
}

// remoteClient is whom a request counts against: the connection's address or, when that is a trusted
// proxy, the nearest address in X-Forwarded-For that is not one (proxies append the address they saw, so
// whatever a client wrote itself is further left and never believed). IPv6 counts by /64, one
// subscriber's prefix.
func (s *Service) remoteClient(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{} // not TCP (a test's recorder): one shared bucket
	}
	addr := ap.Addr().Unmap()
	if !s.trusted(addr) {
		if len(r.Header.Values("X-Forwarded-For")) > 0 && s.proxyWarned.CompareAndSwap(false, true) {
			s.log.Warn("public pages: requests carry X-Forwarded-For from an address not in http.trusted_proxies: "+
				"if it is your proxy, list it there, or every customer behind it shares one rate limit", "from", addr)
		}
		return prefix(addr)
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h, err := parseHop(hops[i])
		if err != nil {
			break // not what a proxy writes: keep the last proxy's address
		}
		addr = h
		if !s.trusted(h) {
			break
		}
	}
	return prefix(addr)
}

func (s *Service) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop reads one X-Forwarded-For entry: an address, or an address and port as some proxies write.
func parseHop(h string) (netip.Addr, error) {
	h = strings.TrimSpace(h)
	if a, err := netip.ParseAddr(h); err == nil {
		return a.WithZone("").Unmap(), nil
	}
	ap, err := netip.ParseAddrPort(h)
	return ap.Addr().WithZone("").Unmap(), err
}

func prefix(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.WithZone("").Prefix(64)
		return p.Addr()
	}
	return a
}

// limited charges a public request to its client's bucket; over the limit it answers 429 with
// Retry-After. Requests the API would accept (the console's cookie, the token, a dispatch certificate) are
// the office's own and not counted.
func (s *Service) limited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ok, _, _ := s.apiAuth(r); ok {
			h(w, r)
			return
		}
		c := s.remoteClient(r)
		ok, wait, first := s.limit.allow(c)
		if ok {
			h(w, r)
			return
		}
		if first {
			s.log.Warn("public pages: client over the rate limit", "client", c, "path", r.URL.Path,
				"rate", s.cfg.TrackingRate, "burst", s.cfg.TrackingBurst)
		}
		secs := max(1, int(math.Ceil(wait.Seconds())))
		s.securityHeaders(w)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		http.Error(w, fmt.Sprintf("too many requests: try again in %d s", secs), http.StatusTooManyRequests)
	}
}
