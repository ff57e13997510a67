package agent

import (
	"context"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/agent/gpio"
	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/store"
)

// ignitionStep is one second of a drive: the fix, and the ignition line's edges within that second.
type ignitionStep struct {
	fix   gps.Fix
	edges []gpio.Edge
}

// ignitionDrive builds a day's trip second by second from t0 at a given speed per second, with the line's
// edges at offsets from t0.
type ignitionDrive struct {
	t0    time.Time
	lat   float64
	lon   float64
	steps []ignitionStep
}

// run adds n seconds at speed v (m/s) heading east.
func (d *ignitionDrive) run(n int, v float64) {
	for range n {
		d.lon += v / (111_320 * math.Cos(d.lat*math.Pi/180))
		d.steps = append(d.steps, ignitionStep{fix: gps.Fix{Time: d.t0.Add(time.Duration(len(d.steps)) * time.Second),
			Lat: d.lat, Lon: d.lon, Speed: v, Course: 90, Alt: math.NaN(), HDOP: 0.9, PDOP: math.NaN(),
			Mode: gps.Mode3D, Sats: 9}})
	}
}

// line sets the line to each level in turn at the given offsets from t0 (seconds).
func (d *ignitionDrive) line(levels []bool, at ...float64) {
	for i, s := range at {
		t := d.t0.Add(time.Duration(s * float64(time.Second)))
		step := int(s)
		d.steps[step].edges = append(d.steps[step].edges, gpio.Edge{Time: t, Active: levels[i]})
	}
}

// feedIgnition runs the drive through the ignition's debouncer and the mileage as runFixes does: the
// line's edges in time order, each change the debouncer makes certain handed to the mileage before the next
// fix, and the events committed with the fixes. It returns the events.
func feedIgnition(t *testing.T, m *mileage, st *store.Store, d *ignitionDrive, debounce time.Duration) []sdk.Event {
	t.Helper()
	db := levelDebouncer{hold: debounce}
	db.start(false, d.t0)
	var events []sdk.Event
	var fixes []gps.Fix
	take := func(evs []sdk.Event) {
		events = append(events, evs...)
	}
	for _, s := range d.steps {
		for _, e := range s.edges {
			if c, ok := db.advance(e.Time); ok {
				take(m.ignite(c.on, c.at))
			}
			db.edge(e)
		}
		if c, ok := db.advance(s.fix.Time); ok {
			take(m.ignite(c.on, c.at))
		}
		take(m.next(s.fix))
		fixes = append(fixes, s.fix)
	}
	var entries []store.Entry
	for _, ev := range events {
		e, err := encodeTripEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	if err := m.commit(context.Background(), st, entries); err != nil {
		t.Fatal(err)
	}
	return events
}

func kindsOf(evs []sdk.Event) []sdk.EventKind {
	var k []sdk.EventKind
	for _, e := range evs {
		k = append(k, e.Kind)
	}
	return k
}

// TestIgnitionTrip: the ignition decides the trip. It comes on with the bounces of a cranking engine (one
// trip_start, dated when the line settled, at the truck's position); a 20 s warm-up is no stop; 3 km of
// driving; a stop of 2 minutes with the engine on (longer than trip_end_after, which does not apply) is a
// stop and counts as idle; 1.8 km more; 45 s standing before the ignition goes off (bouncing) is a stop too.
// trip_end carries the distance, the duration from ignition on to off and the idle time. Afterwards,
// standing with the ignition off and being towed 300 m are no trip and no idle time.
func TestIgnitionTrip(t *testing.T) {
	st := openTestStore(t, t.TempDir())
	defer st.Close()
	var logBuf sdktest.SyncBuffer
	m, err := openMileage(context.Background(), st, testOdoConfig(), time.Now(), slog.New(slog.NewTextHandler(&logBuf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	m.followIgnition()
	d := &ignitionDrive{t0: time.Date(2026, 6, 1, 7, 0, 0, 0, time.UTC), lat: 52.5, lon: 13.4}
	d.run(80, 0)   // 0..79: parked; the ignition comes on at 60, the engine warms up
	d.run(300, 10) // 80..379: 3000 m
	d.run(120, 0)  // 380..499: two minutes standing, engine on
	d.run(180, 10) // 500..679: 1800 m
	d.run(46, 0)   // 680..725: standing until the ignition goes off at 725
	d.run(300, 0)  // parked, ignition off
	d.run(60, 5)   // towed 300 m with the ignition off
	d.run(120, 0)
	on, off := true, false
	d.line([]bool{on, off, on, off, on}, 60.0, 60.2, 60.35, 60.5, 60.65) // cranking
	d.line([]bool{off, on, off}, 725.0, 725.1, 725.3)
	events := feedIgnition(t, m, st, d, time.Second)
	t.Logf("events %v", kindsOf(events))
	want := []sdk.EventKind{sdk.EventTripStart, sdk.EventStop, sdk.EventStop, sdk.EventTripEnd}
	if got := kindsOf(events); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Fatalf("events %v, want %v", got, want)
	}
	at := func(s float64) time.Time { return d.t0.Add(time.Duration(s * float64(time.Second))) }
	start, stop, last, end := events[0], events[1], events[2], events[3]
	if !start.Time.Equal(at(60.65)) || start.Fix == nil || start.Fix.Lon != 13.4 || start.Odometer != 0 {
		t.Errorf("trip_start %+v, want at 60.65 s where the truck was parked, odometer 0", start)
	}
	if stop.Duration != 120*time.Second || !stop.Time.Equal(at(380)) {
		t.Errorf("stop %s at %s, want 2m0s from 380 s", stop.Duration, stop.Time)
	}
	if last.Duration != 45300*time.Millisecond || !last.Time.Equal(at(680)) {
		t.Errorf("stop before ignition off %s at %s, want 45.3s from 680 s", last.Duration, last.Time)
	}
	if !end.Time.Equal(at(725.3)) || end.Duration != 664650*time.Millisecond || end.Idle != 165300*time.Millisecond {
		t.Errorf("trip_end at %s, duration %s, idle %s; want 725.3 s, 11m4.65s, 2m45.3s", end.Time.Sub(d.t0), end.Duration, end.Idle)
	}
	if math.Abs(float64(end.Distance)-4800) > 48 || end.Odometer != end.Distance {
		t.Errorf("trip_end distance %d m, odometer %d, want 4800 m within 1 %%", end.Distance, end.Odometer)
	}
	if m.Metres() < end.Odometer+290 {
		t.Errorf("odometer %d after towing, trip ended at %d: the tow counts as distance", m.Metres(), end.Odometer)
	}
	if log := logBuf.String(); !strings.Contains(log, "moving with the ignition off") ||
		!strings.Contains(log, "movement with the ignition off ended") {
		t.Errorf("the tow is not logged:\n%s", log)
	}
	recs, err := st.Peek(context.Background(), 100)
	if err != nil || len(recs) != 4 {
		t.Fatalf("%d records stored (%v), want the 4 events", len(recs), err)
	}
}

// TestIgnitionBeforeFirstFix: the ignition comes on before the receiver has a fix (a restart with the
// ignition on, a cold receiver): the trip starts at the first fix, its time and place. On and off again
// before any fix is no trip. Without followIgnition, ignition changes do nothing (movement decides).
func TestIgnitionBeforeFirstFix(t *testing.T) {
	t0 := time.Date(2026, 6, 1, 7, 0, 0, 0, time.UTC)
	fix := gps.Fix{Time: t0.Add(40 * time.Second), Lat: 52.5, Lon: 13.4, Speed: 0, Course: math.NaN(), Alt: math.NaN(),
		HDOP: 1, PDOP: math.NaN(), Mode: gps.Mode3D, Sats: 7}

	d := newTripDetector(testOdoConfig())
	d.followIgnition()
	if evs := d.ignite(true, t0, 0); len(evs) != 0 {
		t.Fatalf("ignition on without a fix: %v", kindsOf(evs))
	}
	evs := d.next(fix, 0)
	if len(evs) != 1 || evs[0].Kind != sdk.EventTripStart || !evs[0].Time.Equal(fix.Time) || evs[0].Fix.Lat != 52.5 {
		t.Fatalf("first fix with the ignition on: %+v, want trip_start at the fix", evs)
	}
	if evs := d.ignite(true, t0.Add(time.Minute), 0); len(evs) != 0 {
		t.Errorf("ignition on again: %v", kindsOf(evs))
	}
	evs = d.ignite(false, t0.Add(100*time.Second), 0)
	if len(evs) != 2 || evs[1].Kind != sdk.EventTripEnd || evs[1].Duration != time.Minute {
		t.Errorf("ignition off: %+v, want a stop (standing 60 s with the engine on) and trip_end after 1m", evs)
	}

	d = newTripDetector(testOdoConfig())
	d.followIgnition()
	d.ignite(true, t0, 0)
	d.ignite(false, t0.Add(time.Second), 0)
	if evs := d.next(fix, 0); len(evs) != 0 {
		t.Errorf("on and off before the first fix, then a fix: %v", kindsOf(evs))
	}

	d = newTripDetector(testOdoConfig())
	d.next(fix, 0)
	if evs := d.ignite(true, t0.Add(time.Minute), 0); len(evs) != 0 {
		t.Errorf("an ignition change without an ignition input: %v", kindsOf(evs))
	}
}

// TestLevelDebouncer: a level counts once it held for the debounce, dated when it began to hold; shorter
// flickers change nothing; at stop a pending level counts as it is.
func TestLevelDebouncer(t *testing.T) {
	t0 := time.Date(2026, 6, 1, 7, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	db := levelDebouncer{hold: time.Second}
	db.start(false, t0)
	for i, lvl := range []bool{true, false, true, false, true} { // cranking: 5 edges within 400 ms
		db.edge(gpio.Edge{Time: ms(100 * i), Active: lvl})
		if c, ok := db.advance(ms(100*i + 50)); ok {
			t.Fatalf("a change during the bounce: %+v", c)
		}
	}
	if due := db.due(); !due.Equal(ms(1400)) {
		t.Errorf("due %s, want 1.4 s", due.Sub(t0))
	}
	if _, ok := db.advance(ms(1399)); ok {
		t.Error("certain before the debounce")
	}
	if c, ok := db.advance(ms(1400)); !ok || !c.on || !c.at.Equal(ms(400)) {
		t.Errorf("after the debounce: %+v %v, want on at 400 ms", c, ok)
	}
	if _, ok := db.advance(ms(5000)); ok || !db.due().IsZero() {
		t.Error("a second change without an edge")
	}
	db.edge(gpio.Edge{Time: ms(6000), Active: true}) // the same level (an edge between was dropped)
	if !db.due().IsZero() {
		t.Error("an edge to the same level starts a wait")
	}
	db.edge(gpio.Edge{Time: ms(7000), Active: false})
	if c, ok := db.flush(); !ok || c.on || !c.at.Equal(ms(7000)) {
		t.Errorf("flush: %+v %v, want off at 7 s", c, ok)
	}
	if _, ok := db.flush(); ok {
		t.Error("flush twice")
	}
}

// TestIgnitionSenseInjectedLine: the sense reads an injected line at the start, turns a cranking engine's
// bounces into one change, and at stop sends a level that has not held yet (the unit is being switched off),
// then closes its output. State follows.
func TestIgnitionSenseInjectedLine(t *testing.T) {
	line := gpio.NewFake(false)
	s := &ignitionSense{line: line, debounce: 100 * time.Millisecond, clock: time.Now, log: slog.New(slog.DiscardHandler)}
	if _, known := s.State(); known {
		t.Fatal("state known before the line was read")
	}
	out := make(chan ignitionChange, 8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx, out) }()
	if c := <-out; c.on {
		t.Fatalf("first change %+v, want the line's level (off)", c)
	}
	for i, lvl := range []bool{true, false, true, false, true} {
		line.Set(time.Now(), lvl)
		if i < 4 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	select {
	case c := <-out:
		if !c.on {
			t.Fatalf("after cranking: %+v, want on", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no change after cranking")
	}
	if on, known := s.State(); !on || !known {
		t.Errorf("state %v %v, want on", on, known)
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case c := <-out:
		t.Fatalf("a second change from one crank: %+v", c)
	default:
	}
	line.Set(time.Now(), false) // ignition off, and the unit stops at once
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var rest []ignitionChange
	for c := range out {
		rest = append(rest, c)
	}
	if len(rest) != 1 || rest[0].on {
		t.Errorf("at stop: %+v, want off (the edge before the stop)", rest)
	}
	// A line that goes away ends the sense with an error.
	line2 := gpio.NewFake(true)
	s2 := &ignitionSense{line: line2, debounce: time.Second, clock: time.Now, log: slog.New(slog.DiscardHandler)}
	out2 := make(chan ignitionChange, 8)
	line2.Close()
	if err := s2.run(context.Background(), out2); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("closed line: %v", err)
	}
}

// TestAgentIgnition: an agent with an injected ignition line on a driving truck. With the ignition off the
// movement is logged, not a trip; ignition on (bouncing while cranking) is one trip_start; off is its
// trip_end. /healthz, the status message's health and /metrics carry the state.
func TestAgentIgnition(t *testing.T) {
	line := gpio.NewFake(false)
	var logBuf sdktest.SyncBuffer
	var opened gpio.InputConfig
	opts := Options{
		Logger: slog.New(slog.NewTextHandler(io.MultiWriter(&logBuf, testWriter{t}), nil)),
		openInput: func(c gpio.InputConfig) (ignitionLine, error) {
			opened = c
			return line, nil
		},
	}
	a, _, _ := startAgentWith(t, time.Time{}, func(c *Config) {
		five := 5
		c.Ignition.Chip, c.Ignition.Line, c.Ignition.Debounce = "gpiochip0", &five, 100*time.Millisecond
	}, opts)
	if opened.Chip != "gpiochip0" || opened.Line != 5 || opened.ActiveHigh || opened.Bias != gpio.PullUp ||
		opened.Consumer != "waybill-ignition" {
		t.Errorf("opened %+v", opened)
	}
	ignition := func() *bool { _, s := readHealthz(t, a); return s.Ignition }
	sdktest.WaitFor(t, 20*time.Second, "/healthz ignition off", func() bool { ig := ignition(); return ig != nil && !*ig })
	if h := a.health(); h.Ignition == nil || *h.Ignition {
		t.Errorf("status health ignition %v, want off", h.Ignition)
	}
	sdktest.WaitFor(t, 30*time.Second, "movement with the ignition off logged", func() bool {
		return strings.Contains(logBuf.String(), "moving with the ignition off")
	})
	if strings.Contains(logBuf.String(), "event=trip_start") {
		t.Fatal("a trip started with the ignition off")
	}

	for _, lvl := range []bool{true, false, true, false, true} { // cranking
		line.Set(time.Now(), lvl)
		time.Sleep(10 * time.Millisecond)
	}
	sdktest.WaitFor(t, 20*time.Second, "trip_start", func() bool { return strings.Contains(logBuf.String(), "event=trip_start") })
	if ig := ignition(); ig == nil || !*ig {
		t.Errorf("/healthz ignition %v, want on", ig)
	}
	if h := a.health(); h.Ignition == nil || !*h.Ignition {
		t.Errorf("status health ignition %v, want on", h.Ignition)
	}
	metrics := get(t, "http://"+a.HTTPAddr()+"/metrics")
	if !strings.Contains(metrics, "\nwaybill_ignition_on 1\n") {
		t.Errorf("/metrics lacks waybill_ignition_on 1")
	}
	time.Sleep(2 * time.Second) // drive a little
	line.Set(time.Now(), false)
	sdktest.WaitFor(t, 20*time.Second, "trip_end", func() bool { return strings.Contains(logBuf.String(), "event=trip_end") })
	log := logBuf.String()
	if n := strings.Count(log, "event=trip_start"); n != 1 {
		t.Errorf("%d trip_start for one crank", n)
	}
	if !strings.Contains(get(t, "http://"+a.HTTPAddr()+"/metrics"), "\nwaybill_ignition_on 0\n") {
		t.Errorf("/metrics lacks waybill_ignition_on 0")
	}
}

// TestIgnitionUnavailable: a chip that does not exist is one error naming the key to check; the agent
// runs on without the input (trips follow movement, no ignition in the status or metrics).
func TestIgnitionUnavailable(t *testing.T) {
	var logBuf sdktest.SyncBuffer
	a, _, _ := startAgentWith(t, time.Time{}, func(c *Config) {
		three := 3
		c.Ignition.Chip, c.Ignition.Line = "gpiochip99", &three
	}, Options{Logger: slog.New(slog.NewTextHandler(io.MultiWriter(&logBuf, testWriter{t}), nil))})
	log := logBuf.String()
	if n := strings.Count(log, "ignition input unavailable"); n != 1 || !strings.Contains(log, "gpiochip99") ||
		!strings.Contains(log, "check ignition.chip and ignition.line") {
		t.Errorf("%d errors for the missing chip:\n%s", n, log)
	}
	if a.ignition != nil || a.mileage.trips.ignition {
		t.Error("trips follow an ignition that could not be opened")
	}
	sdktest.WaitFor(t, 20*time.Second, "/healthz 200", func() bool { code, _ := readHealthz(t, a); return code == 200 })
	if _, s := readHealthz(t, a); s.Ignition != nil {
		t.Errorf("/healthz ignition %v without an input", *s.Ignition)
	}
	if a.health().Ignition != nil {
		t.Error("status health has an ignition without an input")
	}
	m := get(t, "http://"+a.HTTPAddr()+"/metrics")
	if !strings.Contains(m, "# TYPE waybill_ignition_on gauge") || strings.Contains(m, "\nwaybill_ignition_on ") {
		t.Errorf("/metrics: want the family without a sample")
	}
}
