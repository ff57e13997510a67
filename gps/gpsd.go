package gps

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"time"
)

// GPSDConfig configures a gpsd client. Every zero field takes the default in brackets.
type GPSDConfig struct {
	Addr   string // gpsd's host:port ["localhost:2947"]
	Device string // only this device's reports, when gpsd serves several [all]
	// Quiet is how long after gpsd's last report an epoch is considered complete [300 ms]. gpsd sends
	// several TPVs per epoch as sentences arrive; the last one for a time is the complete fix.
	Quiet                  time.Duration
	MinBackoff, MaxBackoff time.Duration // between reconnects [500 ms, 30 s]
	Decode                 Config        // rollover floor and plausibility, applied to gpsd's fixes too
	Logger                 *slog.Logger  // nil discards
	Now                    func() time.Time
}

// GPSD reads fixes from gpsd's JSON protocol, for units where gpsd already owns the receiver.
type GPSD struct {
	cfg    GPSDConfig
	log    *slog.Logger
	health *healthTracker
}

// NewGPSD prepares a gpsd source; Run connects.
func NewGPSD(cfg GPSDConfig) *GPSD {
	if cfg.Addr == "" {
		cfg.Addr = "localhost:2947"
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = 300 * time.Millisecond
	}
	log := sourceDefaults(&cfg.MinBackoff, &cfg.MaxBackoff, cfg.Logger, &cfg.Decode)
	return &GPSD{cfg: cfg, log: log, health: newHealthTracker(cfg.Now)}
}

// Health returns the source's current state. Safe to call from any goroutine.
func (g *GPSD) Health() Health { return g.health.get() }

// Sky returns the receiver's latest sky view (satellites in view, used, DOPs); Updates is 0 before the
// first. Safe to call from any goroutine.
func (g *GPSD) Sky() Sky { return g.health.getSky() }

// Run reads fixes into out until ctx ends, then closes out and returns ctx.Err(). Connection failures
// are logged, recorded in Health and retried with backoff.
func (g *GPSD) Run(ctx context.Context, out chan<- Fix) error {
	defer close(out)
	b := backoff{min: g.cfg.MinBackoff, max: g.cfg.MaxBackoff}
	chk := newChecker(g.cfg.Decode) // one checker across reconnects: a fix gpsd repeats after one is dropped
	for first := true; ; first = false {
		if !first {
			g.health.reopened()
			if err := sleep(ctx, b.next()); err != nil {
				return err
			}
		}
		start := time.Now()
		err := g.session(ctx, out, &chk)
		if ctx.Err() != nil {
			g.health.connected(false, nil)
			return ctx.Err()
		}
		g.health.connected(false, err)
		g.log.Warn("gps: gpsd connection lost; reconnecting", "addr", g.cfg.Addr, "err", err)
		if time.Since(start) > g.cfg.MaxBackoff {
			b.reset()
		}
	}
}

// tpv and sky are the parts of gpsd's reports we use.
type gpsdReport struct {
	Class  string   `json:"class"`
	Device string   `json:"device"`
	Mode   int      `json:"mode"`
	Time   string   `json:"time"`
	Lat    *float64 `json:"lat"`
	Lon    *float64 `json:"lon"`
	AltMSL *float64 `json:"altMSL"`
	Alt    *float64 `json:"alt"`
	Speed  *float64 `json:"speed"`
	Track  *float64 `json:"track"`
	Status int      `json:"status"`
	HDOP   *float64 `json:"hdop"`
	PDOP   *float64 `json:"pdop"`
	VDOP   *float64 `json:"vdop"`
	USat   *int     `json:"uSat"`
	Sats   []struct {
		PRN    int      `json:"PRN"`
		El     *float64 `json:"el"`
		Az     *float64 `json:"az"`
		SS     *float64 `json:"ss"`
		Used   bool     `json:"used"`
		GNSSID *int     `json:"gnssid"`
	} `json:"satellites"`
}

// gpsdConstellations maps gpsd's gnssid (u-blox numbering) to ours.
var gpsdConstellations = map[int]Constellation{0: ConstGPS, 1: ConstSBAS, 2: ConstGalileo, 3: ConstBeiDou,
	5: ConstQZSS, 6: ConstGLONASS, 7: ConstNavIC}

// sky converts a SKY report; mode is the last TPV's.
func (r gpsdReport) sky(mode Mode) Sky {
	s := emptySky()
	s.Mode = mode
	opt := func(p *float64, dst *float64) {
		if p != nil {
			*dst = *p
		}
	}
	opt(r.HDOP, &s.HDOP)
	opt(r.PDOP, &s.PDOP)
	opt(r.VDOP, &s.VDOP)
	for _, g := range r.Sats {
		if len(s.Satellites) == MaxSatellites || g.PRN < 1 || g.PRN > 999 {
			continue
		}
		sat := Satellite{PRN: g.PRN, Elevation: -1, Azimuth: -1, Used: g.Used, Constellation: constellationOf("GN", g.PRN, 0)}
		if g.GNSSID != nil {
			sat.Constellation = gpsdConstellations[*g.GNSSID]
		}
		if g.El != nil && *g.El >= 0 && *g.El <= 90 {
			sat.Elevation = int(math.Round(*g.El))
		}
		if g.Az != nil && *g.Az >= 0 && *g.Az < 360 {
			sat.Azimuth = int(math.Round(*g.Az))
		}
		if g.SS != nil && *g.SS > 0 && *g.SS < 100 {
			sat.SNR = int(math.Round(*g.SS))
		}
		s.Satellites = append(s.Satellites, sat)
	}
	return s
}

func (g *GPSD) session(ctx context.Context, out chan<- Fix, chk *checker) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", g.cfg.Addr)
	if err != nil {
		return err
	}
	// Closing the connection is what releases a blocked read when ctx ends.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	watch := `?WATCH={"enable":true,"json":true`
	if g.cfg.Device != "" {
		dev, _ := json.Marshal(g.cfg.Device)
		watch += `,"device":` + string(dev)
	}
	if _, err := fmt.Fprintf(conn, "%s};\n", watch); err != nil {
		return err
	}
	g.health.connected(true, nil)
	br := bufio.NewReaderSize(conn, 64<<10)
	var (
		mode    Mode // the last TPV's, for the sky view
		pending Fix
		have    bool
		partial []byte
		st      Stats
	)
	emit := func() error {
		if !have {
			return nil
		}
		have = false
		f, ok := chk.check(pending, &st)
		if !ok {
			g.health.update(st, nil)
			return nil
		}
		st.Fixes++
		g.health.update(st, &f)
		select {
		case out <- f:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		conn.SetReadDeadline(time.Now().Add(g.cfg.Quiet))
		line, err := br.ReadSlice('\n')
		partial = append(partial, line...)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if err := emit(); err != nil {
				return err
			}
			continue
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue // a long SKY report; keep collecting (bounded by gpsd's own limits)
		}
		if err != nil {
			emit()
			return err
		}
		var r gpsdReport
		if json.Unmarshal(partial, &r) != nil {
			partial = partial[:0]
			continue
		}
		partial = partial[:0]
		if g.cfg.Device != "" && r.Device != "" && r.Device != g.cfg.Device {
			continue
		}
		switch r.Class {
		case "TPV":
			if r.Mode >= 1 && r.Mode <= 3 {
				mode = Mode(r.Mode)
			}
			f, ok := r.fix()
			if !ok {
				st.NoFix++
				continue
			}
			if have && !f.Time.Equal(pending.Time) {
				if err := emit(); err != nil {
					return err
				}
			}
			if have { // a later TPV for the same epoch: keep the DOPs and satellites SKY gave
				f.HDOP, f.PDOP, f.Sats = pending.HDOP, pending.PDOP, pending.Sats
			}
			pending, have = f, true
		case "SKY":
			if len(r.Sats) > 0 {
				g.health.setSky(r.sky(mode))
			}
			if have {
				if r.HDOP != nil {
					pending.HDOP = *r.HDOP
				}
				if r.PDOP != nil {
					pending.PDOP = *r.PDOP
				}
				if r.USat != nil {
					pending.Sats = *r.USat
				}
			}
		}
	}
}

// fix converts a TPV with a 2D or 3D fix and a time.
func (r gpsdReport) fix() (Fix, bool) {
	if r.Mode < 2 || r.Time == "" || r.Lat == nil || r.Lon == nil {
		return Fix{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, r.Time)
	if err != nil {
		return Fix{}, false
	}
	f := emptyFix()
	f.Time, f.Lat, f.Lon, f.Mode, f.DGPS = t.UTC(), *r.Lat, *r.Lon, Mode(min(r.Mode, 3)), r.Status == 2
	opt := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	if f.Mode == Mode3D {
		f.Alt = opt(r.AltMSL)
		if math.IsNaN(f.Alt) {
			f.Alt = opt(r.Alt)
		}
	}
	f.Speed, f.Course = opt(r.Speed), opt(r.Track)
	return f, true
}
