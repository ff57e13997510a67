package gps

import (
	"errors"
	"io"
	"log/slog"
	"math"
	"time"
)

// DefaultRolloverFloor is the earliest date a receiver can truthfully report, used when
// Config.RolloverFloor is zero: a date near this code's build. A receiver that reports an earlier date is
// 1024 weeks (or a multiple) late: the GPS week-rollover bug.
var DefaultRolloverFloor = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// rolloverPeriod is the GPS week-number rollover: 1024 weeks.
const rolloverPeriod = 1024 * 7 * 24 * time.Hour

// Config is how fixes are decoded and checked. The zero value is ready to use.
type Config struct {
	// RolloverFloor: a fix dated before it is moved forward by 1024 weeks (as often as needed), and the
	// correction logged once. Zero means DefaultRolloverFloor. Set it to a date far in the past
	// (time.Unix(0, 0)) to keep the receiver's dates unchanged.
	RolloverFloor time.Time
	// MaxLine bounds a sentence in bytes. Zero means DefaultMaxLine.
	MaxLine int
	// MaxSpeed, in metres per second: a fix farther from the previous accepted one than this speed allows
	// is implausible. Zero means 100 m/s (360 km/h): no truck, but lets a fix after a gap through.
	MaxSpeed float64
	// Logger receives one line per rollover correction and per run of implausible fixes. Nil discards.
	Logger *slog.Logger
}

func (c Config) floor() time.Time {
	if c.RolloverFloor.IsZero() {
		return DefaultRolloverFloor
	}
	return c.RolloverFloor
}

func (c Config) maxSpeed() float64 {
	if c.MaxSpeed <= 0 {
		return 100
	}
	return c.MaxSpeed
}

func (c Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// Stats counts what happened to the input. Every sentence and epoch lands in exactly one counter.
type Stats struct {
	FrameStats
	Skipped     uint64 // valid sentences that carry no fix data (GSV, TXT, proprietary, ...)
	ParseErrors uint64 // fix sentences go-nmea and our tolerant parsers could not read
	NoFix       uint64 // epochs in which the receiver had no fix, or whose cycle it never reported (cut short)
	NoDate      uint64 // epochs with a position before any date was known (RMC or ZDA)
	Fixes       uint64 // fixes delivered
	Rejected    uint64 // implausible fixes dropped: the sum of the three below
	BadCoords   uint64 // latitude or longitude out of range, or exactly 0,0
	Repeats     uint64 // the same time as the previous fix
	Jumps       uint64 // moved faster than Config.MaxSpeed (over the time between the two, either way)
	Backwards   uint64 // delivered although their time is before the previous fix's: the receiver stepped back
	Rollovers   uint64 // fixes whose date was moved forward by 1024 weeks
}

// ErrNoData is returned by Reader.Next when the underlying reader returned no bytes and no error (a serial
// read timeout). Call Next again.
var ErrNoData = errNoProgress

// Reader turns a byte stream from a receiver into plausible fixes: framing, decoding, one Fix per epoch,
// week-rollover correction and plausibility checks. It is not safe for concurrent use.
type Reader struct {
	fr    *Framer
	dec   *sentenceDecoder
	asm   *assembler
	chk   checker
	sky   *SkyTracker
	stats Stats
	err   error
}

// NewReader reads from r, which is typically a serial port, a file or a pseudo-terminal.
func NewReader(r io.Reader, cfg Config) *Reader {
	return &Reader{fr: NewFramer(r, cfg.MaxLine), dec: newSentenceDecoder(), asm: newAssembler(), chk: newChecker(cfg),
		sky: NewSkyTracker()}
}

// Next returns the next fix. At the end of the input it returns the reader's error (io.EOF for a clean
// end) after the last epoch's fix. When the reader returns no bytes (a read timeout), the epoch in
// progress is closed, as a silent line means the receiver finished it, and Next returns its fix or
// ErrNoData.
func (r *Reader) Next() (Fix, error) {
	for {
		if r.err != nil {
			return Fix{}, r.err
		}
		line, err := r.fr.Next()
		if err != nil {
			if !errors.Is(err, errNoProgress) {
				r.err = err
			}
			r.sky.Flush()
			if f, ok := r.accept(r.asm.flush()); ok {
				return f, nil
			}
			if r.err != nil {
				return Fix{}, r.err
			}
			return Fix{}, ErrNoData
		}
		r.sky.Add(line)
		o, err := r.dec.decode(line)
		if err != nil {
			if err != errNotFix {
				r.stats.ParseErrors++
				continue
			}
			r.stats.Skipped++ // no fix data, but it may start or end the receiver's cycle
		}
		if f, ok := r.accept(r.asm.add(o)); ok {
			return f, nil
		}
	}
}

// Flush closes the epoch in progress, for callers that know the receiver went quiet.
func (r *Reader) Flush() (Fix, bool) {
	r.sky.Flush()
	return r.accept(r.asm.flush())
}

// Sky returns the receiver's latest sky view (GSV and GSA), published at the end of each epoch, whether or
// not the epoch had a fix: an installer needs it most before the first fix.
func (r *Reader) Sky() Sky { return r.sky.Sky() }

// SkyUpdates is the number of sky views so far; Sky changes when it does.
func (r *Reader) SkyUpdates() uint64 { return r.sky.Updates() }

func (r *Reader) accept(f Fix, ok bool) (Fix, bool) {
	if !ok {
		return Fix{}, false
	}
	f, ok = r.chk.check(f, &r.stats)
	if ok {
		r.stats.Fixes++
	}
	return f, ok
}

// Stats returns the counters so far.
func (r *Reader) Stats() Stats {
	s := r.stats
	s.FrameStats = r.fr.Stats()
	s.NoFix, s.NoDate = r.asm.noFix+r.asm.unreported, r.asm.noDate
	return s
}

// checker applies the week-rollover correction and the plausibility rules to assembled fixes.
type checker struct {
	floor     time.Time
	maxSpeed  float64
	log       *slog.Logger
	logged    bool // the rollover correction has been logged
	last      Fix
	haveLast  bool
	rejectRun int // consecutive rejections against last
}

func newChecker(cfg Config) checker {
	return checker{floor: cfg.floor(), maxSpeed: cfg.maxSpeed(), log: cfg.logger()}
}

// reanchorAfter is how many consecutive fixes may disagree with the previous accepted one before we
// believe them instead: otherwise one wild fix that got through would block every good one after it.
const reanchorAfter = 5

func (c *checker) check(f Fix, s *Stats) (Fix, bool) {
	if t, k := correctRollover(f.Time, c.floor); k > 0 {
		if !c.logged {
			c.logged = true
			c.log.Warn("gps: receiver reports a date before the rollover floor; moving it forward by 1024 weeks",
				"reported", f.Time.Format(time.RFC3339), "corrected", t.Format(time.RFC3339),
				"floor", c.floor.Format(time.DateOnly), "rollovers", k)
		}
		f.Time = t
		s.Rollovers++
	}
	if !(f.Lat >= -90 && f.Lat <= 90 && f.Lon >= -180 && f.Lon <= 180) || f.Lat == 0 && f.Lon == 0 {
		s.BadCoords++
		s.Rejected++
		return Fix{}, false
	}
	back := false
	if c.haveLast && c.rejectRun < reanchorAfter {
		dt := f.Time.Sub(c.last.Time).Seconds()
		if dt == 0 {
			s.Repeats++
			s.Rejected++
			c.reject("the same time as the previous fix", f)
			return Fix{}, false
		}
		// A receiver's time may step back (it corrected itself, moved its epoch, or was reset), and the fix
		// is still a fix: gpsd reports it too. The speed bound holds whichever way time went.
		if d := Distance(c.last.Lat, c.last.Lon, f.Lat, f.Lon); d > c.maxSpeed*math.Abs(dt)+50 {
			// 50 m of slack: two honest fixes 0.1 s apart may differ by their own error.
			s.Jumps++
			s.Rejected++
			c.reject("position jump faster than MaxSpeed", f)
			return Fix{}, false
		}
		back = dt < 0
	} else if c.haveLast && !f.Time.After(c.last.Time) {
		back = true // re-anchoring on a time before the last accepted one
	}
	if back {
		s.Backwards++
		c.log.Warn("gps: the receiver's time went back; following it", "time", f.Time, "previous", c.last.Time,
			"by", c.last.Time.Sub(f.Time))
	}
	c.last, c.haveLast, c.rejectRun = f, true, 0
	return f, true
}

func (c *checker) reject(why string, f Fix) {
	if c.rejectRun == 0 {
		c.log.Warn("gps: implausible fix dropped", "reason", why, "time", f.Time, "lat", f.Lat, "lon", f.Lon,
			"previous", c.last.Time)
	}
	c.rejectRun++
}

// correctRollover moves t forward by whole 1024-week periods until it is not before floor, and returns
// how many periods it added.
func correctRollover(t, floor time.Time) (time.Time, int) {
	k := 0
	for t.Before(floor) && k < 64 {
		t = t.Add(rolloverPeriod)
		k++
	}
	return t, k
}

// Distance is the great-circle distance in metres between two points in degrees (haversine on a sphere
// of the mean Earth radius: within 0.5 % of WGS84, plenty for reporting thresholds).
func Distance(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371008.8
	φ1, φ2 := lat1*math.Pi/180, lat2*math.Pi/180
	dφ, dλ := φ2-φ1, (lon2-lon1)*math.Pi/180
	a := math.Sin(dφ/2)*math.Sin(dφ/2) + math.Cos(φ1)*math.Cos(φ2)*math.Sin(dλ/2)*math.Sin(dλ/2)
	return 2 * r * math.Asin(math.Min(1, math.Sqrt(a)))
}
