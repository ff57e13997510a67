package gpssim

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// Config drives a simulated receiver. Zero fields take the default in brackets.
type Config struct {
	Route RouteConfig
	// Start is the GPS time of the first epoch [the current time when Run starts, or Now()].
	Start time.Time
	// Now is the clock: it stamps the first epoch when Start is zero and paces Run [time.Now].
	Now func() time.Time
	// Rate is epochs per second [1].
	Rate float64
	// Speedup makes simulated time run faster than the wall clock [1].
	Speedup float64
}

// Sim generates the NMEA output of a multi-constellation receiver (GPS + GLONASS, u-blox style) in a
// truck driving a Route. Epoch is pure; Run writes at real speed.
type Sim struct {
	cfg   Config
	route *Route
}

// New builds a simulator.
func New(cfg Config) *Sim {
	if cfg.Rate <= 0 {
		cfg.Rate = 1
	}
	if cfg.Speedup <= 0 {
		cfg.Speedup = 1
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sim{cfg: cfg, route: NewRoute(cfg.Route)}
}

// Route is the simulated route.
func (s *Sim) Route() *Route { return s.route }

// Interval is the simulated time between epochs.
func (s *Sim) Interval() time.Duration { return time.Duration(float64(time.Second) / s.cfg.Rate) }

// EpochTruth says what epoch i of a run starting at start shows: the time, the truck's state, and
// whether the receiver has a fix (not in the tunnel, not a random lost fix).
func (s *Sim) EpochTruth(start time.Time, i int) (time.Time, State, bool) {
	d := time.Duration(i) * s.Interval()
	st := s.route.At(d)
	fix := !st.Tunnel
	if rate := s.route.cfg.LostFixRate; fix && rate > 0 {
		// Deterministic per epoch, so Epoch stays pure.
		rng := rand.New(rand.NewPCG(s.route.cfg.Seed, uint64(i)))
		fix = rng.Float64() >= rate
	}
	return start.Add(d).UTC().Truncate(time.Millisecond), st, fix
}

// Epoch returns the sentences of epoch i for a run whose first epoch is at start.
func (s *Sim) Epoch(start time.Time, i int) []byte {
	t, st, fix := s.EpochTruth(start, i)
	var b strings.Builder
	hms := t.Format("150405.00")
	date := t.Format("020106")
	lat, ns := nmeaCoord(st.Pos.Lat, 2, "N", "S")
	lon, ew := nmeaCoord(st.Pos.Lon, 3, "E", "W")
	kn := st.Speed / (1852.0 / 3600.0)
	if fix {
		put(&b, "GNRMC,%s,A,%s,%s,%s,%s,%.3f,%.2f,%s,,,A", hms, lat, ns, lon, ew, kn, st.Course, date)
		put(&b, "GNVTG,%.2f,T,,M,%.3f,N,%.3f,K,A", st.Course, kn, st.Speed*3.6)
		put(&b, "GNGGA,%s,%s,%s,%s,%s,1,12,0.82,12.5,M,46.0,M,,", hms, lat, ns, lon, ew)
		put(&b, "GNGSA,A,3,02,05,12,15,18,24,25,29,,,,,1.41,0.82,1.15,1")
		put(&b, "GNGSA,A,3,66,67,76,77,,,,,,,,,1.41,0.82,1.15,2")
	} else {
		put(&b, "GNRMC,%s,V,,,,,,,%s,,,N", hms, date)
		put(&b, "GNVTG,,T,,M,,N,,K,N")
		put(&b, "GNGGA,%s,,,,,0,00,99.99,,,,,,", hms)
		put(&b, "GNGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,1")
		put(&b, "GNGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,2")
	}
	put(&b, "GPGSV,2,1,08,02,45,120,42,05,62,210,44,12,33,075,39,15,20,300,35")
	put(&b, "GPGSV,2,2,08,18,55,045,41,24,12,160,30,25,70,260,45,29,28,330,37")
	put(&b, "GLGSV,1,1,04,66,40,100,38,67,25,150,33,76,60,280,40,77,15,320,29")
	if fix {
		put(&b, "GNGLL,%s,%s,%s,%s,%s,A,A", lat, ns, lon, ew, hms)
	} else {
		put(&b, "GNGLL,,,,,%s,V,N", hms)
	}
	put(&b, "GNZDA,%s,%02d,%02d,%04d,00,00", hms, t.Day(), int(t.Month()), t.Year())
	return []byte(b.String())
}

// put writes one sentence with its checksum and CRLF.
func put(b *strings.Builder, format string, args ...any) {
	body := fmt.Sprintf(format, args...)
	var sum byte
	for i := 0; i < len(body); i++ {
		sum ^= body[i]
	}
	fmt.Fprintf(b, "$%s*%02X\r\n", body, sum)
}

// nmeaCoord formats degrees as dddmm.mmmmm with the hemisphere letter.
func nmeaCoord(v float64, degDigits int, pos, neg string) (string, string) {
	h := pos
	if v < 0 {
		h, v = neg, -v
	}
	d := math.Floor(v)
	m := (v - d) * 60
	if m >= 59.999995 { // would print as 60.00000
		d, m = d+1, 0
	}
	return fmt.Sprintf("%0*d%08.5f", degDigits, int(d), m), h
}

// Run writes epochs to w, one every Interval()/Speedup of wall time, until ctx ends (returns nil) or a
// write fails (returns the error).
func (s *Sim) Run(ctx context.Context, w io.Writer) error {
	start := s.cfg.Start
	if start.IsZero() {
		start = s.cfg.Now()
	}
	wall := s.cfg.Now()
	step := time.Duration(float64(s.Interval()) / s.cfg.Speedup)
	// A write blocks while nobody reads a pseudo-terminal whose buffer is full: when ctx ends, a writer that
	// has deadlines (a pty master, a network connection) is woken, so Run returns (SIGTERM, Ctrl-C).
	if d, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		stop := context.AfterFunc(ctx, func() { _ = d.SetWriteDeadline(time.Now()) })
		defer stop()
	}
	for i := 0; ; i++ {
		if _, err := w.Write(s.Epoch(start, i)); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wait := wall.Add(time.Duration(i+1) * step).Sub(s.cfg.Now())
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}
