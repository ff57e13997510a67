package gps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"go.bug.st/serial"
)

// AutoBauds are the rates tried, in order, when SerialConfig.Baud is 0: the NMEA 0183 standard rate,
// then the common defaults of u-blox/SiRF/MTK modules and of fast multi-constellation receivers.
var AutoBauds = []int{4800, 9600, 38400, 115200}

// SerialConfig configures a serial NMEA receiver. The zero value of every field but Device is usable.
type SerialConfig struct {
	Device string // e.g. /dev/ttyUSB0 or a udev symlink such as /dev/serial/by-id/...
	// Baud is the line rate; 0 means auto: try AutoBauds until ProbeSentences sentences with valid
	// checksums arrive.
	Baud int
	// ProbeTimeout is how long each rate is tried in auto mode. Zero means 2.5 s: at least two epochs
	// of a 1 Hz receiver.
	ProbeTimeout time.Duration
	// ProbeSentences is how many valid sentences prove a rate. Zero means 2.
	ProbeSentences int
	// IdleTimeout: no valid sentence for this long and the port is closed and reopened (auto baud
	// probes again). Zero means 10 s.
	IdleTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reopen attempts. Zero means 500 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	Decode                 Config
	Logger                 *slog.Logger // nil discards
	// Now is the system clock for Health; nil means time.Now.
	Now func() time.Time
}

// Serial reads a receiver on a serial port, reopening it with backoff when it fails or disappears (a
// USB receiver unplugged and plugged back). It is the only file that imports go.bug.st/serial.
type Serial struct {
	cfg    SerialConfig
	log    *slog.Logger
	health *healthTracker
}

// NewSerial prepares a serial source; Run opens the port.
func NewSerial(cfg SerialConfig) *Serial {
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = 2500 * time.Millisecond
	}
	if cfg.ProbeSentences <= 0 {
		cfg.ProbeSentences = 2
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Second
	}
	log := sourceDefaults(&cfg.MinBackoff, &cfg.MaxBackoff, cfg.Logger, &cfg.Decode)
	return &Serial{cfg: cfg, log: log, health: newHealthTracker(cfg.Now)}
}

// Health returns the source's current state. Safe to call from any goroutine.
func (s *Serial) Health() Health { return s.health.get() }

// Sky returns the receiver's latest sky view (satellites in view, used, DOPs); Updates is 0 before the
// first. Safe to call from any goroutine.
func (s *Serial) Sky() Sky { return s.health.getSky() }

// readTimeout bounds each Read so Run notices ctx and a silent line (the end of an epoch) quickly.
const readTimeout = 100 * time.Millisecond

// Run reads fixes into out until ctx ends, then closes out and returns ctx.Err(). Open and read
// failures are logged, recorded in Health and retried with backoff; they never end Run.
func (s *Serial) Run(ctx context.Context, out chan<- Fix) error {
	defer close(out)
	b := backoff{min: s.cfg.MinBackoff, max: s.cfg.MaxBackoff}
	first := true
	for {
		if !first {
			s.health.reopened()
			if err := sleep(ctx, b.next()); err != nil {
				return err
			}
		}
		first = false
		port, baud, err := s.open(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.health.connected(false, err)
			s.log.Warn("gps: cannot open serial receiver", "device", s.cfg.Device, "err", err)
			continue
		}
		s.health.connected(true, nil)
		s.health.openedAt(baud)
		s.log.Info("gps: serial receiver open", "device", s.cfg.Device, "baud", baud)
		start := time.Now()
		err = pump(ctx, NewReader(port, s.cfg.Decode), out, s.health, s.cfg.IdleTimeout)
		port.Close()
		s.health.openedAt(0)
		if ctx.Err() != nil {
			s.health.connected(false, nil)
			return ctx.Err()
		}
		s.health.connected(false, err)
		s.log.Warn("gps: serial receiver lost; reopening", "device", s.cfg.Device, "err", err)
		if time.Since(start) > s.cfg.MaxBackoff {
			b.reset() // it worked for a while: retry quickly
		}
	}
}

// open opens the device at the configured rate, or probes the rates in auto mode.
func (s *Serial) open(ctx context.Context) (serial.Port, int, error) {
	if s.cfg.Baud > 0 {
		p, err := s.openAt(s.cfg.Baud)
		return p, s.cfg.Baud, err
	}
	var lastErr error
	for _, baud := range AutoBauds {
		p, err := s.openAt(baud)
		if err != nil {
			return nil, 0, err // the device itself is missing: no other rate will help
		}
		ok, err := s.probe(ctx, p)
		if ok {
			return p, baud, nil
		}
		p.Close()
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		lastErr = err
		s.log.Debug("gps: no NMEA at this rate", "device", s.cfg.Device, "baud", baud, "err", err)
	}
	return nil, 0, fmt.Errorf("no valid NMEA at %v baud: %w", AutoBauds, lastErr)
}

func (s *Serial) openAt(baud int) (serial.Port, error) {
	p, err := serial.Open(s.cfg.Device, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity,
		StopBits: serial.OneStopBit})
	if err != nil {
		return nil, err
	}
	if err := p.SetReadTimeout(readTimeout); err != nil {
		p.Close()
		return nil, err
	}
	// Bytes the driver kept from before (another rate, or echoed while the port had the kernel's default
	// termios) would only be garbage to the probe.
	if err := p.ResetInputBuffer(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// probe reads until ProbeSentences sentences with a valid checksum arrive or ProbeTimeout passes.
// Sentences without a checksum do not count: at the wrong rate, garbage can look like anything.
func (s *Serial) probe(ctx context.Context, p serial.Port) (bool, error) {
	fr := NewFramer(p, s.cfg.Decode.MaxLine)
	deadline := time.Now().Add(s.cfg.ProbeTimeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		_, err := fr.Next()
		st := fr.Stats()
		if int(st.Sentences-st.NoChecksum) >= s.cfg.ProbeSentences {
			return true, nil
		}
		if err != nil && !errors.Is(err, errNoProgress) {
			return false, err
		}
	}
	st := fr.Stats()
	return false, fmt.Errorf("%d bad checksums, %d bytes of garbage: %w", st.BadChecksum, st.Garbage, io.ErrNoProgress)
}
