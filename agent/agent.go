package agent

import (
	"context"
	"errors"
	"fmt"
	"github.com/waybill-iot/waybill/sdk/gpsfix"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waybill-iot/waybill/agent/button"
	"github.com/waybill-iot/waybill/agent/driver"
	"github.com/waybill-iot/waybill/agent/gpio"
	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/sdk/truck"
	"github.com/waybill-iot/waybill/store"
)

// CRLCacheFile is the file in the data directory where the truck keeps the newest fleet CRL the broker
// sent (truck.ClientConfig.CRLCacheFile), so a restart keeps refusing what it revoked.
const CRLCacheFile = "crl.der"

// StopTimeout bounds the shutdown after the context ends (ignition off): the GPS source stops, pending fixes
// are committed, the connection closes with its will, the store closes.
const StopTimeout = 10 * time.Second

// Options are the agent's run-time parameters that do not come from the configuration file.
type Options struct {
	Version string       // reported in status and metrics
	Logger  *slog.Logger // nil: built from Config.Log on stderr
	// Now is the system clock; nil means time.Now (tests inject a clock without RTC).
	Now func() time.Time
	// ClockFloor: a system time before it is implausible (no RTC). Zero: gps.DefaultRolloverFloor.
	ClockFloor time.Time
	// Ready, if set, is called once everything runs (tests); systemd gets READY=1 either way.
	Ready func(*Agent)
	// openInput opens the ignition line; nil: gpio.OpenInput. Tests inject a gpio.Fake.
	openInput func(gpio.InputConfig) (ignitionLine, error)
}

// Agent is the running daemon. Run creates and runs one.
type Agent struct {
	cfg   Config
	opts  Options
	log   *slog.Logger
	clock *clock

	store  *store.Store
	client *truck.Client
	source fixSource
	http   *http.Server
	addr   string       // the HTTP listener's address, once listening
	conns  *connLimiter // the HTTP listener's connection cap, once listening

	driver   *driver.Server // nil when the listener is off
	button   *button.Button // nil without a button
	ignition *ignitionSense // nil without an ignition input: trips follow movement
	closers  []func() error // GPIO lines, closed at the end

	latest  atomic.Pointer[gps.Fix]
	fixes   fixCounters
	mileage *mileage // the odometer and trips, fed by runFixes

	mu        sync.Mutex
	listeners []func(truck.Entry)     // guarded by mu: order-change listeners (driver page, LED)
	mounts    map[string]http.Handler // guarded by mu: extra handlers on the local listener
}

// fixSource is what the agent needs of a GPS source (gps.Serial, gps.GPSD, gps.Replay).
type fixSource interface {
	Run(ctx context.Context, out chan<- gps.Fix) error
	Health() gps.Health
}

type fixCounters struct {
	seen, reported, stored, storeErrors atomic.Uint64
	// pending counts the fixes and movement events waiting for the next commit; held the fixes the
	// curve filter holds undecided. Both live in memory only: a power cut loses them.
	pending, held atomic.Uint64
}

// inMemory is what waits in memory for the store, as /healthz reports it. held is read first: fixes move
// from held to pending to the store, so no fix is between two reads unseen (the caller reads the store
// after this).
func (c *fixCounters) inMemory() uint64 {
	h := c.held.Load()
	return h + c.pending.Load()
}

// receiverQuiet is how long the receiver may stay silent before the curve filter's undecided fixes are
// logged (MaxDelay, if shorter): a tunnel or a dead receiver would otherwise keep them in memory until the
// next fix, away from dispatch and at the mercy of a power cut.
const receiverQuiet = 10 * time.Second

// Run runs the agent until ctx ends, then stops within StopTimeout. It returns an error when it cannot
// start (bad key permissions, unusable store, port in use) or when a component fails for good.
func Run(ctx context.Context, cfg Config, opts Options) error {
	a, err := newAgent(cfg, opts)
	if err != nil {
		return err
	}
	return a.run(ctx)
}

func newAgent(cfg Config, opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = NewLogger(cfg.Log, os.Stderr)
	}
	if opts.ClockFloor.IsZero() {
		opts.ClockFloor = gps.DefaultRolloverFloor
	}
	a := &Agent{cfg: cfg, opts: opts, log: opts.Logger, clock: newClock(opts.ClockFloor, opts.Now, opts.Logger)}
	if err := pki.CheckKeyFile(cfg.Identity.Key); err != nil {
		return nil, fmt.Errorf("identity.key: %w", err)
	}
	if cfg.Identity.CRL != "" {
		if err := pki.CheckCRLFile(cfg.Identity.CRL, a.clock.Now(), 0); err != nil {
			a.log.Warn("CRL", "err", err) // stale: the broker will refuse everyone; say so, keep queueing
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	st, err := store.Open(filepath.Join(cfg.DataDir, "queue.db"), store.Options{
		MaxBytes: int64(cfg.Store.MaxMB) << 20, Clock: a.clock.Now, Logger: a.log})
	if err != nil {
		return nil, err
	}
	a.store = st
	cfg.Odometer.defaults()
	if err := cfg.Odometer.validate(); err != nil {
		st.Close()
		return nil, err
	}
	a.cfg.Odometer = cfg.Odometer
	octx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	a.mileage, err = openMileage(octx, st, cfg.Odometer, a.clock.Now(), a.log)
	cancel()
	if err != nil {
		st.Close()
		return nil, err
	}
	a.client, err = truck.NewClient(truck.ClientConfig{
		Transport: transport.Config{Brokers: cfg.Broker.URLs, CertFile: cfg.Identity.Cert, KeyFile: cfg.Identity.Key,
			CAFile: cfg.Identity.CA, CRLFile: cfg.Identity.CRL, KeepAlive: cfg.Broker.KeepAlive, BackoffMax: cfg.Broker.BackoffMax,
			ReconnectWindow: cfg.Broker.ReconnectWindow,
			AllowPlaintext:  cfg.Broker.AllowPlaintext},
		Store:          st,
		CRLCacheFile:   filepath.Join(cfg.DataDir, CRLCacheFile),
		Topics:         sdk.Topics{Prefix: cfg.Broker.TopicPrefix},
		Clock:          a.clock.Now,
		Health:         a.health,
		StatusInterval: cfg.Status.Interval,
		OnOrder:        a.orderChanged,
		KeepClosed:     cfg.Orders.KeepClosed,
		Uploader: truck.UploaderConfig{ReceiptTimeout: cfg.Broker.ReceiptTimeout, ReceiptTimeoutMax: 6 * cfg.Broker.ReceiptTimeout,
			MaxUnreceipted: maxUnreceipted(cfg.Store.MaxMB)},
		Logger: a.log,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	a.source = newSource(cfg.GPS, a.log)
	if cfg.HTTP.Listen != "off" {
		drv, err := driver.New(driver.Config{Orders: a.client.Book(), Position: a.LatestFix,
			Status: func() any { return a.Status() }, Token: cfg.HTTP.Token, MaxStreams: cfg.HTTP.MaxStreams, Logger: a.log})
		if err != nil {
			st.Close()
			return nil, err
		}
		a.driver = drv
		a.Mount("/", drv)
		a.OnOrder(drv.Notify)
	}
	a.button = a.openButton()
	a.ignition = a.openIgnition()
	return a, nil
}

// Odometer is the truck's odometer reading in metres.
func (a *Agent) Odometer() uint64 { return a.mileage.Metres() }

// maxUnreceipted bounds the records waiting for a receipt to a quarter of the store limit (a fix takes about
// 64 bytes there): records waiting for their receipt are handed out, and the store cannot thin them, so a
// small store must not fill up with them. 20,000 at most, 1,000 at least.
func maxUnreceipted(maxMB int) int {
	return min(max(maxMB<<20/4/64, 1000), 20_000)
}

// openButton opens the driver's GPIO button and LED. A unit whose GPIO cannot be opened keeps running
// without them (the page and the HTTP hook still work), and says so.
func (a *Agent) openButton() *button.Button {
	c := a.cfg.Button
	if *c.Line < 0 {
		return nil
	}
	line, err := button.OpenLine(button.GPIOConfig{Chip: c.Chip, Line: *c.Line, ActiveHigh: c.ActiveHigh, NoPull: c.NoPull})
	if err != nil {
		a.log.Error("button unavailable; the driver page and HTTP hook still work", "err", err,
			"fix", "check button.chip and button.line (gpioinfo lists them) and that the agent may open /dev/gpiochip*")
		return nil
	}
	a.closers = append(a.closers, line.Close)
	bc := button.Config{Line: line, Orders: a.client.Book(), Position: a.LatestFix, LongPress: c.LongPress, Logger: a.log}
	if *c.LEDLine >= 0 {
		if led, err := button.OpenLED(button.LEDConfig{Chip: c.LEDChip, Line: *c.LEDLine}); err != nil {
			a.log.Error("LED unavailable", "err", err)
		} else {
			bc.LED = led
			a.closers = append(a.closers, led.Close)
		}
	}
	b, err := button.New(bc)
	if err != nil {
		a.log.Error("button", "err", err)
		return nil
	}
	a.OnOrder(b.Notify)
	return b
}

// openIgnition opens the ignition-sense line and makes trips follow it. A line that cannot be opened (no
// such chip or line, no permission, held by another program) is logged once and the agent runs on without
// it: trips follow movement, as without an input.
func (a *Agent) openIgnition() *ignitionSense {
	c := a.cfg.Ignition
	if c.Line == nil || *c.Line < 0 {
		return nil
	}
	open := a.opts.openInput
	if open == nil {
		open = openGPIOInput
	}
	line, err := open(gpio.InputConfig{Chip: c.Chip, Line: *c.Line, ActiveHigh: c.ActiveHigh, Bias: gpio.Bias(c.Bias),
		Consumer: "waybill-ignition", Clock: a.clock.Now})
	if err != nil {
		a.log.Error("ignition input unavailable; trips follow movement", "err", err,
			"fix", "check ignition.chip and ignition.line (gpioinfo lists them) and that the agent may open /dev/gpiochip*")
		return nil
	}
	a.closers = append(a.closers, line.Close)
	a.mileage.followIgnition()
	return &ignitionSense{line: line, debounce: c.Debounce, clock: a.clock.Now, log: a.log}
}

func newSource(c GPSConfig, log *slog.Logger) fixSource {
	decode := gps.Config{RolloverFloor: c.RolloverFloor, Logger: log}
	switch c.Source {
	case "gpsd":
		return gps.NewGPSD(gps.GPSDConfig{Addr: c.GPSDAddr, Decode: decode, Logger: log})
	case "replay":
		return gps.NewReplay(gps.ReplayConfig{Path: c.ReplayFile, Speed: c.ReplaySpeed, Decode: decode})
	}
	baud, _ := strconv.Atoi(c.Baud) // "auto" -> 0
	return gps.NewSerial(gps.SerialConfig{Device: c.Device, Baud: baud, Decode: decode, Logger: log})
}

// OnOrder registers a listener for order changes (the driver page, the LED). Call before Run.
func (a *Agent) OnOrder(f func(truck.Entry)) {
	a.mu.Lock()
	a.listeners = append(a.listeners, f)
	a.mu.Unlock()
}

func (a *Agent) orderChanged(e truck.Entry) {
	a.mu.Lock()
	ls := slices.Clone(a.listeners)
	a.mu.Unlock()
	for _, f := range ls {
		f(e)
	}
}

// Book is the truck's order book.
func (a *Agent) Book() *truck.Book { return a.client.Book() }

// Store is the truck's store.
func (a *Agent) Store() *store.Store { return a.store }

// HTTPAddr is the local listener's address ("" when off).
func (a *Agent) HTTPAddr() string { return a.addr }

// LatestFix returns the newest fix from the receiver, converted for the SDK.
func (a *Agent) LatestFix() (sdk.Fix, bool) {
	f := a.latest.Load()
	if f == nil {
		return sdk.Fix{}, false
	}
	return gpsfix.From(*f), true
}

func (a *Agent) run(ctx context.Context) error {
	defer a.store.Close()
	defer func() {
		for _, c := range a.closers {
			_ = c()
		}
	}()
	log := a.log
	id := a.client.Name()
	log.Info("waybill-agent starting", "version", a.opts.Version, "truck", id, "data_dir", a.cfg.DataDir,
		"brokers", a.cfg.Broker.URLs, "gps", a.cfg.GPS.Source)
	if !a.clock.plausible() {
		log.Warn("system clock is before the build date: using GPS time for certificates and messages once a fix arrives",
			"system_time", a.opts.now())
	}

	var httpLn net.Listener
	if a.cfg.HTTP.Listen != "off" {
		ln, err := net.Listen("tcp", a.cfg.HTTP.Listen)
		if err != nil {
			return fmt.Errorf("http.listen %s: %w (another program on that port? change http.listen)", a.cfg.HTTP.Listen, err)
		}
		a.addr = ln.Addr().String()
		a.http, a.conns = newLocalServer(a.cfg.HTTP, a.handler())
		httpLn = a.conns.Listen(ln)
	}

	// Start back to front: the client (uploader) first, the GPS source last; stop front to back.
	clientCtx, stopClient := context.WithCancel(context.WithoutCancel(ctx))
	defer stopClient()
	var wg sync.WaitGroup
	failed := make(chan error, 4)
	goRun := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) {
				log.Error(name+" stopped", "err", err)
				select {
				case failed <- fmt.Errorf("%s: %w", name, err):
				default:
				}
			}
		}()
	}
	goRun("connection", func() error { return a.client.Run(clientCtx) })
	if a.button != nil {
		goRun("button", func() error { return a.button.Run(clientCtx) })
	}
	if a.http != nil {
		goRun("http", func() error { return a.http.Serve(httpLn) })
		log.Info("local HTTP listener", "addr", a.addr)
	}
	gpsCtx, stopGPS := context.WithCancel(ctx)
	defer stopGPS()
	fixes := make(chan gps.Fix, 16)
	pipelineDone := make(chan struct{})
	goRun("gps", func() error { return a.source.Run(gpsCtx, fixes) })
	var ignition chan ignitionChange // nil without an input
	if a.ignition != nil {
		// Stopped with the GPS: a trip ended by the ignition going off reaches the store before it closes.
		ignition = make(chan ignitionChange, 4)
		goRun("ignition", func() error { return a.ignition.run(gpsCtx, ignition) })
	}
	go func() {
		defer close(pipelineDone)
		a.runFixes(fixes, ignition)
	}()

	_ = sdNotify("READY=1")
	if a.opts.Ready != nil {
		a.opts.Ready(a)
	}
	var runErr error
	wd := watchdogInterval()
	var tick <-chan time.Time
	if wd > 0 {
		t := time.NewTicker(wd)
		defer t.Stop()
		tick = t.C
	}
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case runErr = <-failed:
			break wait
		case <-tick:
			_ = sdNotify("WATCHDOG=1")
		}
	}

	// Stop: GPS first; the pipeline commits what it holds; then the connection; then HTTP; the store last.
	_ = sdNotify("STOPPING=1")
	log.Info("stopping", "reason", stopReason(ctx, runErr))
	deadline := time.NewTimer(StopTimeout)
	defer deadline.Stop()
	stopGPS()
	select {
	case <-pipelineDone:
	case <-deadline.C:
		log.Error("GPS pipeline did not stop in time")
	}
	stopClient()
	if a.driver != nil {
		_ = a.driver.Close() // ends the pages' event streams, so Shutdown need not wait for them
	}
	if a.http != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = a.http.Shutdown(sctx)
		cancel()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-deadline.C:
		log.Error("components did not stop in time; closing the store anyway")
	}
	log.Info("stopped")
	return runErr
}

func stopReason(ctx context.Context, err error) string {
	if err != nil {
		return err.Error()
	}
	if ctx.Err() != nil {
		return "signal"
	}
	return "done"
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// runFixes takes every fix from the source: it keeps the latest (driver page, status, clock), checks order
// arrival, and passes the fixes the reporting filter wants to the store in groups (Store.FixBatch or
// Store.FixDelay, whichever comes first). It takes the ignition's changes too (nil: no input), and commits
// the trip events they complete at once: ignition off may cut the power. It returns when both are closed,
// after committing what it holds.
func (a *Agent) runFixes(fixes <-chan gps.Fix, ignition <-chan ignitionChange) {
	filter := gps.NewFilter(a.filterConfig())
	var pending []store.Entry
	nFixes := 0 // how many of pending are fixes (the rest are movement events)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	quietAfter := receiverQuiet
	if d := a.filterConfig().MaxDelay; d > 0 && d < quietAfter {
		quietAfter = d
	}
	quiet := time.NewTimer(time.Hour) // runs while the filter holds fixes: reset by every fix
	quiet.Stop()
	// flush commits the pending fixes and movement events, and the odometer with them in the same
	// transaction (one fsync, no extra flash write); with nothing pending it saves the odometer alone.
	flush := func() {
		m := a.mileage
		if len(pending) == 0 && m.unsaved() <= 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := m.commit(ctx, a.store, pending)
		if err != nil {
			a.fixes.storeErrors.Add(uint64(nFixes))
			a.log.Error("store fixes", "fixes", nFixes, "movement_events", len(pending)-nFixes, "err", err)
		} else {
			a.fixes.stored.Add(uint64(nFixes))
		}
		pending, nFixes = pending[:0], 0
		a.fixes.pending.Store(0)
		timer.Stop()
	}
	// keep queues a fix the filter logged. In curve mode it may be some seconds older than the newest
	// fix; the odometer it carries is the current reading (dispatch takes a batch's reading from its newest
	// fix, which is always the last logged).
	keep := func(l gps.Logged) {
		e, err := truck.EncodeFixOdometer(gpsfix.From(l.Fix), a.mileage.Metres())
		if err != nil {
			a.log.Warn("fix cannot be encoded; skipped", "reason", l.Reason, "err", err)
			return
		}
		a.fixes.reported.Add(1)
		if len(pending) == 0 {
			timer.Reset(a.cfg.Store.FixDelay)
		}
		pending = append(pending, e)
		nFixes++
		a.fixes.pending.Store(uint64(len(pending)))
		if len(pending) >= a.cfg.Store.FixBatch {
			flush()
		}
	}
	// movement queues trip events with the next commit.
	movement := func(evs []sdk.Event) {
		for _, ev := range evs {
			e, err := encodeTripEvent(ev)
			if err != nil {
				a.log.Warn("movement event cannot be encoded; skipped", "kind", ev.Kind, "err", err)
				continue
			}
			a.log.Info("movement", "event", ev.Kind, "odometer_m", ev.Odometer, "distance_m", ev.Distance,
				"duration", ev.Duration, "idle", ev.Idle)
			if len(pending) == 0 {
				timer.Reset(a.cfg.Store.FixDelay)
			}
			pending = append(pending, e)
			a.fixes.pending.Store(uint64(len(pending)))
		}
	}
	// release logs what the filter still holds (input ended, or the receiver went quiet).
	release := func() {
		for _, l := range filter.Flush(nil) {
			keep(l)
		}
		a.fixes.held.Store(0)
	}
	var logged []gps.Logged
	defer flush()
	for fixes != nil || ignition != nil {
		select {
		case c, ok := <-ignition:
			if !ok {
				ignition = nil
				continue
			}
			if evs := a.mileage.ignite(c.on, c.at); len(evs) > 0 {
				movement(evs)
				flush()
			}
		case f, ok := <-fixes:
			if !ok {
				release() // what the curve still holds goes with the last commit
				quiet.Stop()
				fixes = nil
				continue
			}
			a.fixes.seen.Add(1)
			fix := f
			a.latest.Store(&fix)
			a.clock.observe(f.Time)
			sf := gpsfix.From(f)
			movement(a.mileage.next(f))
			if a.mileage.mustSave() {
				flush() // SaveDistance driven, or the truck stands: the reading goes to flash now
			}
			if len(a.activeOrders()) > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if _, err := a.client.Book().CheckArrival(ctx, sf); err != nil {
					a.log.Error("check arrival", "err", err)
				}
				cancel()
			}
			logged = filter.Push(f, logged[:0])
			for _, l := range logged {
				keep(l)
			}
			held := filter.Pending()
			a.fixes.held.Store(uint64(held))
			if held > 0 {
				quiet.Reset(quietAfter)
			} else {
				quiet.Stop()
			}
		case <-quiet.C:
			if filter.Pending() > 0 {
				a.log.Debug("gps: the receiver went quiet; the fixes the curve filter held are logged",
					"fixes", filter.Pending(), "after", quietAfter)
				release()
			}
		case <-timer.C:
			flush()
		}
	}
}

// activeOrders are the orders waiting for the driver: read from the book's open-order index, so the cost
// per fix does not grow with the closed history.
func (a *Agent) activeOrders() []truck.Entry {
	entries, err := a.client.Book().Active()
	if err != nil {
		a.log.Error("list active orders", "err", err)
		return nil
	}
	return entries
}

func (a *Agent) filterConfig() gps.FilterConfig {
	f := a.cfg.GPS.Filter
	return gps.FilterConfig{Mode: gps.FilterMode(f.Mode), PositionError: f.PositionError, SpeedError: f.SpeedError,
		Timeout: f.Timeout, MaxDelay: f.MaxDelay, Buffer: f.Buffer,
		Period: f.Period, StoppedPeriod: f.StoppedPeriod, MinInterval: f.MinInterval,
		MinDistance: f.MinDistance, MinHeading: f.MinHeading, MinSpeedChange: f.MinSpeedChange, MaxHDOP: f.MaxHDOP}
}
