package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/waybill-iot/waybill/agent/gpio"
)

// ignitionChange is a debounced change of the ignition input.
type ignitionChange struct {
	on bool
	at time.Time // when the new level began to hold (the agent's clock)
}

// ignitionLine is the ignition input as the agent opens and closes it: a *gpio.Input, or a test's
// *gpio.Fake.
type ignitionLine interface {
	gpio.Line
	Close() error
}

// openGPIOInput is Options.openInput's default.
func openGPIOInput(c gpio.InputConfig) (ignitionLine, error) {
	in, err := gpio.OpenInput(c)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return in, nil
}

// ignitionSense debounces the ignition line for runFixes; State may be read from any goroutine.
type ignitionSense struct {
	line     gpio.Line
	debounce time.Duration
	clock    func() time.Time // the line's edges are stamped with it
	log      *slog.Logger
	state    atomic.Int32 // 0 not read yet, 1 on, 2 off
}

// State returns the debounced ignition state, and false before the line was first read.
func (s *ignitionSense) State() (on, known bool) {
	v := s.state.Load()
	return v == 1, v != 0
}

func (s *ignitionSense) set(on bool) {
	if on {
		s.state.Store(1)
	} else {
		s.state.Store(2)
	}
}

// run reads the line's level and follows its edges until ctx ends or the line is closed. It sends out the
// level read at the start and every change that held for debounce, and closes out when it returns; the
// reader (runFixes) reads until then. When ctx ends, a level that has not held for debounce yet counts as
// it is: the unit is stopped at ignition off, and the trip must end before the store closes.
func (s *ignitionSense) run(ctx context.Context, out chan<- ignitionChange) error {
	defer close(out)
	on, err := s.line.Active()
	if err != nil {
		return fmt.Errorf("ignition: read the line: %w", err)
	}
	db := levelDebouncer{hold: s.debounce}
	db.start(on, s.clock())
	s.set(on)
	s.log.Info("ignition input", "on", on)
	out <- ignitionChange{on: on, at: db.rawAt}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	edges := s.line.Edges()
	for {
		if c, ok := db.advance(s.clock()); ok {
			s.set(c.on)
			s.log.Info("ignition", "on", c.on)
			out <- c
		}
		wait := time.Hour
		if due := db.due(); !due.IsZero() {
			wait = max(due.Sub(s.clock()), time.Millisecond)
		}
		timer.Reset(wait) // since Go 1.23 Reset drops a value not yet received
		select {
		case <-ctx.Done():
			if c, ok := db.flush(); ok {
				s.set(c.on)
				s.log.Info("ignition at stop", "on", c.on)
				out <- c
			}
			return nil
		case e, ok := <-edges:
			if !ok {
				return errors.New("ignition: the line was closed")
			}
			db.edge(e)
		case <-timer.C:
		}
	}
}

// levelDebouncer: a level counts once it has held for hold, dated when it began to hold; a flicker
// shorter than that (a cranking engine's dip, contact bounce) changes nothing. It is pure: time comes from
// its arguments.
type levelDebouncer struct {
	hold   time.Duration
	raw    bool      // the level of the last edge
	rawAt  time.Time // when the line took that level
	stable bool      // the debounced level
}

func (l *levelDebouncer) start(level bool, now time.Time) {
	l.raw, l.rawAt, l.stable = level, now, level
}

// edge records a raw edge; edges come in time order. An edge to the level the line has already (one in
// between was dropped) does not restart the wait.
func (l *levelDebouncer) edge(e gpio.Edge) {
	if e.Active != l.raw {
		l.raw, l.rawAt = e.Active, e.Time
	}
}

// advance returns the change that became certain by now, if any.
func (l *levelDebouncer) advance(now time.Time) (ignitionChange, bool) {
	if l.raw == l.stable || now.Sub(l.rawAt) < l.hold {
		return ignitionChange{}, false
	}
	l.stable = l.raw
	return ignitionChange{on: l.raw, at: l.rawAt}, true
}

// due is when the pending level becomes certain; zero when none is pending.
func (l *levelDebouncer) due() time.Time {
	if l.raw == l.stable {
		return time.Time{}
	}
	return l.rawAt.Add(l.hold)
}

// flush takes the pending level as certain (at stop), if there is one.
func (l *levelDebouncer) flush() (ignitionChange, bool) {
	if l.raw == l.stable {
		return ignitionChange{}, false
	}
	l.stable = l.raw
	return ignitionChange{on: l.raw, at: l.rawAt}, true
}
