package gps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Health is a snapshot of a source, for the agent's status message and logs.
type Health struct {
	Connected  bool      // the device or daemon is open and being read
	LastFix    time.Time // system time when the last fix was delivered; zero if none yet
	LastFixGPS time.Time // that fix's own (GPS) time
	Since      time.Time // system time the source started, for "no GPS since" before any fix
	Reopens    uint64    // times the device or connection was (re)opened after a failure
	Baud       int       // the serial port's rate while it is open (auto baud: the rate found); 0 otherwise
	LastError  string    // the last open or read error, if any
	Stats      Stats     // decoding counters, summed over every (re)open
}

// Status says in a few words whether the source delivers fixes: "ok (fix 2s ago)", or "no GPS since
// 2026-05-04T10:00:00Z (...)" when the last fix is older than stale.
func (h Health) Status(now time.Time, stale time.Duration) string {
	if !h.LastFix.IsZero() && now.Sub(h.LastFix) <= stale {
		return fmt.Sprintf("ok (fix %s ago)", now.Sub(h.LastFix).Round(time.Second))
	}
	since := h.LastFix
	if since.IsZero() {
		since = h.Since
	}
	why := "receiver has no fix"
	switch {
	case !h.Connected && h.LastError != "":
		why = "not connected: " + h.LastError
	case !h.Connected:
		why = "not connected"
	}
	return fmt.Sprintf("no GPS since %s (%s)", since.UTC().Format(time.RFC3339), why)
}

// healthTracker is the mutable side of Health, shared by a source's Run and its Health method.
type healthTracker struct {
	now func() time.Time
	// Grab mu before accessing the fields below.
	mu   sync.Mutex
	h    Health
	base Stats // counters of readers already closed
	sky  Sky   // the latest sky view
}

func newHealthTracker(now func() time.Time) *healthTracker {
	if now == nil {
		now = time.Now
	}
	return &healthTracker{now: now, h: Health{Since: now()}, sky: emptySky()}
}

// Sky returns the latest sky view.
func (t *healthTracker) getSky() Sky {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.sky
	s.Satellites = append([]Satellite(nil), s.Satellites...)
	return s
}

// setSky publishes a sky view; its Updates count on from the previous view's, across reopens.
func (t *healthTracker) setSky(s Sky) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.Updates = t.sky.Updates + 1
	t.sky = s
}

func (t *healthTracker) get() Health {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.h
}

func (t *healthTracker) connected(ok bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.h.Connected = ok
	if err != nil {
		t.h.LastError = err.Error()
	}
	if ok && t.h.Since.IsZero() {
		t.h.Since = t.now()
	}
}

// openedAt records the serial port's rate (0: closed).
func (t *healthTracker) openedAt(baud int) {
	t.mu.Lock()
	t.h.Baud = baud
	t.mu.Unlock()
}

func (t *healthTracker) reopened() {
	t.mu.Lock()
	t.h.Reopens++
	t.mu.Unlock()
}

// update records a reader's current counters (cur) on top of the closed readers' (base).
func (t *healthTracker) update(cur Stats, fix *Fix) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.h.Stats = addStats(t.base, cur)
	if fix != nil {
		t.h.LastFix, t.h.LastFixGPS = t.now(), fix.Time
	}
}

// closeReader folds a finished reader's counters into the base.
func (t *healthTracker) closeReader(cur Stats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.base = addStats(t.base, cur)
	t.h.Stats = t.base
}

func addStats(a, b Stats) Stats {
	a.Sentences += b.Sentences
	a.BadChecksum += b.BadChecksum
	a.NoChecksum += b.NoChecksum
	a.Overlong += b.Overlong
	a.Garbage += b.Garbage
	a.Skipped += b.Skipped
	a.ParseErrors += b.ParseErrors
	a.NoFix += b.NoFix
	a.NoDate += b.NoDate
	a.Fixes += b.Fixes
	a.Rejected += b.Rejected
	a.BadCoords += b.BadCoords
	a.Backwards += b.Backwards
	a.Repeats += b.Repeats
	a.Jumps += b.Jumps
	a.Rollovers += b.Rollovers
	return a
}

// pump reads fixes from r and sends them to out until r fails or ctx ends. idle, if > 0, makes it return
// errIdle when no valid sentence arrived for that long (a silent or wrong-baud device).
func pump(ctx context.Context, r *Reader, out chan<- Fix, h *healthTracker, idle time.Duration) error {
	lastSentences, lastSeen := uint64(0), h.now()
	lastSky := uint64(0)
	defer func() { h.closeReader(r.Stats()) }()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		f, err := r.Next()
		if n := r.SkyUpdates(); n != lastSky {
			lastSky = n
			h.setSky(r.Sky())
		}
		st := r.Stats()
		if st.Sentences != lastSentences {
			lastSentences, lastSeen = st.Sentences, h.now()
		}
		switch {
		case err == nil:
			h.update(st, &f)
			select {
			case out <- f:
			case <-ctx.Done():
				return ctx.Err()
			}
		case errors.Is(err, ErrNoData):
			h.update(st, nil)
			if idle > 0 && h.now().Sub(lastSeen) > idle {
				return errIdle
			}
		default:
			h.update(st, nil)
			return err
		}
	}
}

var errIdle = errors.New("gps: no valid NMEA sentence received")

// backoff doubles a delay between min and max.
type backoff struct{ cur, min, max time.Duration }

func (b *backoff) next() time.Duration {
	if b.cur < b.min {
		b.cur = b.min
	} else if b.cur *= 2; b.cur > b.max {
		b.cur = b.max
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sourceDefaults applies the defaults the reopening sources share: backoff between reopen attempts of 500 ms
// to 30 s, a discarding logger, and that logger for the decoder too. It returns the logger.
func sourceDefaults(minBackoff, maxBackoff *time.Duration, log *slog.Logger, decode *Config) *slog.Logger {
	if *minBackoff <= 0 {
		*minBackoff = 500 * time.Millisecond
	}
	if *maxBackoff <= 0 {
		*maxBackoff = 30 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if decode.Logger == nil {
		decode.Logger = log
	}
	return log
}
