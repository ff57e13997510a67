package button

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/waybill-iot/waybill/agent/gpio"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/truck"
)

// LongPressReason is the reason of the problem a long press reports.
const LongPressReason = "button: long press"

// Line is the button's input (Active: pressed). *GPIOLine implements it; tests inject a gpio.Fake.
type Line = gpio.Line

// LED is the lamp next to the button. *GPIOLED implements it.
type LED interface {
	Set(on bool) error
}

// Orders is the order book as the button uses it; *truck.Book implements it. The button reads only the
// orders waiting for the driver, so a press costs the same with a year of closed orders in the book.
type Orders interface {
	// Active returns the orders waiting for the driver (state active).
	Active() ([]truck.Entry, error)
	// Act records a driver's action; the proof is on disk when it returns.
	Act(ctx context.Context, a truck.Action) (truck.ActionResult, error)
}

// Config configures a Button. Zero values are documented per field.
type Config struct {
	Line   Line   // required
	Orders Orders // required
	// LED is optional; nil: no lamp.
	LED LED
	// Position returns the latest fix and whether there is one. Nil: never a fix.
	Position func() (sdk.Fix, bool)
	// Select picks the order a press acts on from the active orders (Orders.Active). Nil: Nearest.
	Select func(entries []truck.Entry, fix sdk.Fix, hasFix bool) (truck.Entry, bool)
	// Debounce is how long a level must hold to count. Zero: 30 ms.
	Debounce time.Duration
	// LongPress is how long a press must be held to report a problem. Zero: 2 s.
	LongPress time.Duration
	// AckHold is how long the LED stays on after a press was recorded; presses meanwhile are ignored, so a
	// driver who presses twice does not deliver the next order too. Zero: 3 s.
	AckHold time.Duration
	// ErrorHold is how long the LED blinks fast after a press that recorded nothing. Zero: 2 s.
	ErrorHold time.Duration
	// Blink is the half-period of the LED's slow blink while an order waits. Zero: 500 ms. The fast blink
	// is a fifth of it.
	Blink time.Duration
	// ActTimeout bounds the store write of one press. Zero: 30 s.
	ActTimeout time.Duration
	// Clock is the time presses and the LED are measured with; it must agree with the times of the Line's
	// edges. Nil: time.Now.
	Clock func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// Button turns presses of a hardware button into driver actions on the selected order and drives its LED.
type Button struct {
	cfg     Config
	changed chan struct{}
}

// New checks cfg. It starts nothing; Run does the work.
func New(cfg Config) (*Button, error) {
	if cfg.Line == nil || cfg.Orders == nil {
		return nil, errors.New("button: Config.Line and Config.Orders are required")
	}
	if cfg.Position == nil {
		cfg.Position = func() (sdk.Fix, bool) { return sdk.Fix{}, false }
	}
	if cfg.Select == nil {
		cfg.Select = Nearest
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Debounce, 30*time.Millisecond)
	def(&cfg.LongPress, 2*time.Second)
	def(&cfg.AckHold, 3*time.Second)
	def(&cfg.ErrorHold, 2*time.Second)
	def(&cfg.Blink, 500*time.Millisecond)
	def(&cfg.ActTimeout, 30*time.Second)
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Button{cfg: cfg, changed: make(chan struct{}, 1)}, nil
}

// Notify tells the button that an order changed, so the LED follows. Call it from
// truck.ClientConfig.OnOrder; it never blocks.
func (b *Button) Notify(truck.Entry) {
	select {
	case b.changed <- struct{}{}:
	default:
	}
}

// Run watches the line until ctx ends (nil) or the line is closed (an error), and turns the LED off when
// it returns. A press's action is finished before Run returns.
func (b *Button) Run(ctx context.Context) error {
	c := b.cfg
	pressed, err := c.Line.Active()
	if err != nil {
		return fmt.Errorf("button: read the line: %w", err)
	}
	p := presser{debounce: c.Debounce, long: c.LongPress}
	p.start(c.Clock(), pressed)
	led := ledInput{blink: c.Blink, errBlink: c.Blink / 5}
	led.pending = b.pending()
	ledOn, ledKnown := false, false
	defer func() {
		if c.LED != nil {
			c.LED.Set(false)
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	edges := c.Line.Edges()
	for {
		now := c.Clock()
		press, pressNext := p.advance(now)
		if press != 0 {
			switch {
			case now.Before(led.ackUntil):
				c.Logger.Info("button: press ignored while the last one is acknowledged", "press", press)
			case b.act(ctx, press):
				led.ackUntil, led.errUntil = now.Add(c.AckHold), time.Time{}
			default:
				led.errUntil = now.Add(c.ErrorHold)
			}
			led.pending = b.pending()
		}
		on, ledNext := ledAt(now, led)
		if c.LED != nil && (!ledKnown || on != ledOn) {
			if err := c.LED.Set(on); err != nil {
				c.Logger.Warn("button: set the LED", "err", err)
			}
			ledOn, ledKnown = on, true
		}
		next := earliest(pressNext, ledNext)
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(c.Clock()), time.Millisecond)
		}
		timer.Reset(wait) // since Go 1.23 Reset drops a value not yet received
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-edges:
			if !ok {
				return errors.New("button: the line was closed")
			}
			p.edge(e)
		case <-b.changed:
			led.pending = b.pending()
		case <-timer.C:
		}
	}
}

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// pending reports whether an order waits for the driver.
func (b *Button) pending() bool {
	entries, err := b.cfg.Orders.Active()
	if err != nil {
		b.cfg.Logger.Error("button: list active orders", "err", err)
		return false
	}
	return len(entries) > 0
}

// act records the press on the selected order and reports whether a proof was recorded.
func (b *Button) act(ctx context.Context, press Press) bool {
	c := b.cfg
	entries, err := c.Orders.Active()
	if err != nil {
		c.Logger.Error("button: list active orders", "err", err)
		return false
	}
	fix, hasFix := c.Position()
	e, ok := c.Select(entries, fix, hasFix)
	if !ok {
		c.Logger.Warn("button: pressed with no active order", "press", press)
		return false
	}
	a := truck.Action{OrderID: e.Order.ID, Kind: sdk.EventDelivered, Via: sdk.ViaButton}
	if press == LongPress {
		a.Kind, a.Reason = sdk.EventProblem, LongPressReason
	}
	if hasFix {
		a.Fix = &fix
	}
	// A proof being written is finished even when ctx ends.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.ActTimeout)
	defer cancel()
	res, err := c.Orders.Act(actx, a)
	if err != nil {
		c.Logger.Error("button: action not recorded", "order", a.OrderID, "kind", a.Kind, "err", err)
		return false
	}
	c.Logger.Info("button: action recorded", "order", a.OrderID, "kind", res.Kind, "seq", res.Seq, "off_site", res.OffSite)
	return true
}
