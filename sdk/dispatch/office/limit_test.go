package office

import (
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{"60/min": {60, time.Minute}, "2/s": {2, time.Second}, " 1000 / h ": {1000, time.Hour},
		"5/10s": {5, 10 * time.Second}, "30/minute": {30, time.Minute}} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "60", "60/", "/min", "0/min", "-1/s", "1.5/s", "60/day", "60/0s", "60/-1m"} {
		if got, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) = %v, want an error", in, got)
		}
	}
	if s := (Rate{60, time.Minute}).String(); s != "60/min" {
		t.Errorf("String %q", s)
	}
}

// The bucket: burst requests at once, then one per 1/rate, the wait until the next token, and the first
// refusal flagged (for one log line) until the client calms down (its bucket refills).
func TestLimiterBucket(t *testing.T) {
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	l := newLimiter(Rate{6, time.Minute}, 3, 10, func() time.Time { return now })
	a := netip.MustParseAddr("192.0.2.1")
	for i := range 3 {
		if ok, _, _ := l.allow(a); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait, first := l.allow(a)
	if ok || wait != 10*time.Second || !first {
		t.Fatalf("over the burst: ok %v, wait %v, first %v; want refused, 10s, first", ok, wait, first)
	}
	if _, _, first := l.allow(a); first {
		t.Fatal("the second refusal in a row is flagged first")
	}
	if ok, _, _ := l.allow(netip.MustParseAddr("192.0.2.2")); !ok {
		t.Fatal("another client shares the bucket")
	}
	now = now.Add(9 * time.Second)
	if ok, wait, _ := l.allow(a); ok || wait != time.Second {
		t.Fatalf("after 9 s: ok %v wait %v, want 1s", ok, wait)
	}
	now = now.Add(time.Second)
	if ok, _, _ := l.allow(a); !ok {
		t.Fatal("after 10 s the token is not there")
	}
	if ok, _, first := l.allow(a); ok || first {
		t.Fatalf("hammering on after a token came back: ok %v first %v, want refused, not flagged again", ok, first)
	}
	now = now.Add(30 * time.Second) // full again: a new run
	for range 3 {
		l.allow(a)
	}
	if ok, _, first := l.allow(a); ok || !first {
		t.Fatalf("over the burst after calming down: ok %v first %v, want refused and flagged", ok, first)
	}
	if _, limited, _ := l.stats(); limited != 5 {
		t.Fatalf("limited %d, want 5", limited)
	}
}

// The limiter remembers at most max clients: the least recently seen goes first and comes back with a
// full bucket.
func TestLimiterForgetsOldest(t *testing.T) {
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	l := newLimiter(Rate{1, time.Hour}, 1, 3, func() time.Time { return now })
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }
	for i := 1; i <= 3; i++ {
		l.allow(ip(i)) // each spends its one token
	}
	l.allow(ip(1)) // refused, and now the most recent: 2 is the oldest
	l.allow(ip(4))
	if n, _, evicted := l.stats(); n != 3 || evicted != 1 {
		t.Fatalf("clients %d evicted %d, want 3 and 1", n, evicted)
	}
	if ok, _, _ := l.allow(ip(1)); ok {
		t.Fatal("client 1 was forgotten although client 2 was seen before it")
	}
	if ok, _, _ := l.allow(ip(2)); !ok {
		t.Fatal("client 2, forgotten, did not come back with a full bucket")
	}
	for i := range 100000 {
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n, _, _ := l.stats(); n != 3 {
		t.Fatalf("after 100,000 clients it remembers %d, want 3", n)
	}
}

// Whom a request counts against: the connection's address; behind a trusted proxy the nearest untrusted
// address in X-Forwarded-For (never what the client wrote further left); IPv6 by /64.
func TestRemoteClient(t *testing.T) {
	s := &Service{cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("fd00::/8")}}}
	s.log = slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		remote string
		xff    []string
		want   string
	}{
		{"192.0.2.7:5000", nil, "192.0.2.7"},
		{"192.0.2.7:5000", []string{"198.51.100.1"}, "192.0.2.7"}, // not a trusted proxy: its header is not believed
		{"10.1.2.3:5000", nil, "10.1.2.3"},
		{"10.1.2.3:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"10.1.2.3:5000", []string{"203.0.113.9, 198.51.100.1"}, "198.51.100.1"}, // the client wrote 203.0.113.9
		{"10.1.2.3:5000", []string{"203.0.113.9", "198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"10.1.2.3:5000", []string{"10.5.5.5, 10.9.9.9"}, "10.5.5.5"}, // all proxies: the farthest
		{"10.1.2.3:5000", []string{"nonsense, 10.9.9.9"}, "10.9.9.9"},
		{"10.1.2.3:5000", []string{"198.51.100.1:4711"}, "198.51.100.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", nil, "2001:db8:1:2::"},
		{"[fd00::1]:443", []string{"2001:db8:1:2:ffff::1"}, "2001:db8:1:2::"},
		{"[::ffff:192.0.2.7]:5000", nil, "192.0.2.7"},
	} {
		r := httptest.NewRequest("GET", "/t/x", nil)
		r.RemoteAddr = c.remote
		for _, h := range c.xff {
			r.Header.Add("X-Forwarded-For", h)
		}
		if got := s.remoteClient(r); got.String() != c.want {
			t.Errorf("from %s with %q: %s, want %s", c.remote, c.xff, got, c.want)
		}
	}
}

func TestParseTrustedProxies(t *testing.T) {
	got, err := ParseTrustedProxies([]string{"10.0.0.7", "10.1.2.3/8", "fd00::/8", "::ffff:192.0.2.1", "2001:db8::1"})
	want := "[10.0.0.7/32 10.0.0.0/8 fd00::/8 192.0.2.1/32 2001:db8::1/128]"
	if err != nil || fmt.Sprint(got) != want {
		t.Fatalf("%v %v, want %s", got, err, want)
	}
	for _, bad := range []string{"proxy.example", "10.0.0.0/33", "", "fe80::1%eth0"} {
		if _, err := ParseTrustedProxies([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
