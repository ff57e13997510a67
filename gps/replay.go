package gps

import (
	"bufio"
	"context"
	"io"
	"os"
	"time"
)

// ReplayConfig replays a capture file. Every zero field takes the default in brackets.
type ReplayConfig struct {
	Path string
	// Speed: 1 plays at the receiver's own pace (from the sentences' times), 10 ten times faster; 0 or
	// negative decodes as fast as possible.
	Speed  float64
	Decode Config
	Now    func() time.Time // system clock for Health [time.Now]
}

// Replay is a source that reads a capture, for tests, demos and the agent's replay mode.
type Replay struct {
	cfg    ReplayConfig
	health *healthTracker
}

// NewReplay prepares a replay source.
func NewReplay(cfg ReplayConfig) *Replay { return &Replay{cfg: cfg, health: newHealthTracker(cfg.Now)} }

// Health returns the source's current state.
func (r *Replay) Health() Health { return r.health.get() }

// Sky returns the receiver's latest sky view (satellites in view, used, DOPs); Updates is 0 before the
// first. Safe to call from any goroutine.
func (r *Replay) Sky() Sky { return r.health.getSky() }

// Run sends the capture's fixes to out, closes out, and returns nil at the end of the file or ctx.Err().
func (r *Replay) Run(ctx context.Context, out chan<- Fix) error {
	defer close(out)
	f, err := os.Open(r.cfg.Path)
	if err != nil {
		r.health.connected(false, err)
		return err
	}
	defer f.Close()
	r.health.connected(true, nil)
	var src io.Reader = f
	if r.cfg.Speed > 0 {
		src = NewPacedReader(ctx, f, r.cfg.Speed)
	}
	err = pump(ctx, NewReader(src, r.cfg.Decode), out, r.health, 0)
	r.health.connected(false, nil)
	if err == io.EOF {
		return nil
	}
	return err
}

// PacedReader returns the lines of an NMEA capture at the pace of the receiver that produced it: when
// a sentence's time of day moves forward, it waits that long divided by speed. Lines without a time pass
// at once. Reads return ctx.Err() once ctx ends.
func NewPacedReader(ctx context.Context, r io.Reader, speed float64) io.Reader {
	return &pacedReader{ctx: ctx, br: bufio.NewReaderSize(r, DefaultMaxLine*4), speed: speed}
}

type pacedReader struct {
	ctx   context.Context
	br    *bufio.Reader
	speed float64
	rest  []byte // the part of the current line not yet returned
	last  tod    // time of day of the previous timed sentence
	wall  time.Time
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	if len(p.rest) == 0 {
		line, err := p.br.ReadSlice('\n')
		if len(line) == 0 && err != nil {
			if err == bufio.ErrBufferFull {
				err = nil
			}
			return 0, err
		}
		if t := lineTime(line); t.valid {
			if p.last.valid && t.ms > p.last.ms {
				d := time.Duration(float64(time.Duration(t.ms-p.last.ms)*time.Millisecond) / p.speed)
				if d > 10*time.Second { // a gap in the capture: do not wait for it
					d = 10 * time.Second
				}
				p.wall = p.wall.Add(d)
				if err := sleep(p.ctx, time.Until(p.wall)); err != nil {
					return 0, err
				}
			} else if !p.last.valid {
				p.wall = time.Now()
			}
			p.last = t
		}
		p.rest = line
	}
	n := copy(b, p.rest)
	p.rest = p.rest[n:]
	return n, nil
}

// lineTime finds the UTC time of day in an RMC, GGA, GNS (field 1) or GLL (field 5) sentence.
func lineTime(line []byte) tod {
	k := sentenceKind(line)
	field := 1
	switch k {
	case kindRMC, kindGGA, kindGNS, kindZDA:
	case kindGLL:
		field = 5
	default:
		return tod{}
	}
	n, start := 0, -1
	for i, c := range line {
		if c == ',' || c == '*' {
			n++
			if n == field {
				start = i + 1
			} else if n == field+1 {
				return parseTOD(line[start:i])
			}
		}
	}
	return tod{}
}

func parseTOD(s []byte) tod {
	if len(s) < 6 {
		return tod{}
	}
	v := 0
	for _, c := range s[:6] {
		if c < '0' || c > '9' {
			return tod{}
		}
		v = v*10 + int(c-'0')
	}
	ms := 0
	if len(s) > 7 && s[6] == '.' {
		scale := 100
		for _, c := range s[7:] {
			if c < '0' || c > '9' || scale == 0 {
				break
			}
			ms += int(c-'0') * scale
			scale /= 10
		}
	}
	h, m, sec := v/10000, v/100%100, v%100
	return tod{valid: true, ms: int64(((h*60+m)*60+sec)*1000 + ms)}
}
