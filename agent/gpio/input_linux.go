package gpio

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/warthog618/go-gpiocdev"
)

// Input is an input line watched for both edges.
type Input struct {
	line    *gpiocdev.Line
	name    string // "gpiochip0 line 17", for errors
	edges   chan Edge
	clock   func() time.Time
	dropped atomic.Uint64
}

// OpenInput requests the line as an input with edge detection on both edges.
func OpenInput(cfg InputConfig) (*Input, error) {
	if cfg.Chip == "" || cfg.Line < 0 {
		return nil, errors.New("gpio: InputConfig needs a Chip and a Line offset >= 0")
	}
	if cfg.Consumer == "" {
		cfg.Consumer = "waybill"
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	in := &Input{name: fmt.Sprintf("%s line %d", cfg.Chip, cfg.Line), edges: make(chan Edge, EdgeBuffer), clock: cfg.Clock}
	opts := []gpiocdev.LineReqOption{gpiocdev.AsInput, gpiocdev.WithConsumer(cfg.Consumer), gpiocdev.WithBothEdges,
		gpiocdev.WithEventHandler(in.handle)}
	if !cfg.ActiveHigh {
		opts = append(opts, gpiocdev.AsActiveLow)
	}
	switch {
	case cfg.Bias == PullUp, cfg.Bias == BiasAuto && !cfg.ActiveHigh:
		opts = append(opts, gpiocdev.WithPullUp)
	case cfg.Bias == PullDown, cfg.Bias == BiasAuto && cfg.ActiveHigh:
		opts = append(opts, gpiocdev.WithPullDown)
	case cfg.Bias != BiasNone:
		return nil, fmt.Errorf("gpio: bias %q: want pull-up, pull-down or none", cfg.Bias)
	}
	line, err := gpiocdev.RequestLine(cfg.Chip, cfg.Line, opts...)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", in.name, err)
	}
	in.line = line
	return in, nil
}

// handle runs on gpiocdev's event goroutine. Active-low is applied by the kernel: a rising edge is the
// line becoming active whatever the wiring.
func (in *Input) handle(evt gpiocdev.LineEvent) {
	e := Edge{Time: in.clock(), Active: evt.Type == gpiocdev.LineEventRisingEdge}
	select {
	case in.edges <- e:
	default:
		in.dropped.Add(1)
	}
}

// Active reads the line's level now.
func (in *Input) Active() (bool, error) {
	v, err := in.line.Value()
	if err != nil {
		return false, fmt.Errorf("read %s: %w", in.name, err)
	}
	return v == 1, nil
}

// Edges delivers the line's edges; it is closed by Close.
func (in *Input) Edges() <-chan Edge { return in.edges }

// Dropped counts edges lost because the reader did not keep up.
func (in *Input) Dropped() uint64 { return in.dropped.Load() }

// Close releases the line. gpiocdev's Close waits for its event goroutine, so no edge is sent after the
// channel is closed.
func (in *Input) Close() error {
	err := in.line.Close()
	close(in.edges)
	return err
}
