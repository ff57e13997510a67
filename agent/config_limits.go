package agent

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// limit is the range a numeric setting may take. A value outside it is a mistake an operator would not make
// on purpose (a status every 300 ns, a truck that reports once a week), so Validate refuses it, and with it
// both `waybill-agent check` and `run`.
type limit struct {
	min, max float64 // durations in nanoseconds
	// zero: a zero value is allowed and means the default (the keys whose default the package that uses
	// them applies: gps, sdk/transport, sdk/truck).
	zero bool
	def  float64 // the default, for the message and the example file
	why  string  // what the floor and the ceiling protect
}

func dur(d time.Duration) float64 { return float64(d) }

const day = 24 * time.Hour

// limits holds the range of every duration and number in Config, by dotted key. The field comments in
// config.go repeat the range; boards/agent.example.toml shows it beside the key (TestLimitsCoverEveryNumber
// and TestExampleShowsEveryRange keep the three in step).
var limits = map[string]limit{
	"broker.keep_alive": {min: dur(10 * time.Second), max: dur(30 * time.Minute), zero: true, def: dur(time.Minute),
		why: "under 10 s the pings alone cost more cellular data than the fixes; over 30 min a carrier NAT drops the idle connection unnoticed"},
	"broker.reconnect_window": {min: dur(time.Second), max: dur(10 * time.Minute), def: dur(30 * time.Second),
		why: "a fleet reconnecting within a second after a broker restart times out on a single-threaded broker; over 10 min a truck stays silent that long"},
	"broker.backoff_max": {min: dur(5 * time.Second), max: dur(time.Hour), zero: true, def: dur(2 * time.Minute),
		why: "a fleet retrying more often than every 5 s hammers a broker that is down; over an hour a truck back from a dead zone stays silent that long"},
	"broker.receipt_timeout": {min: dur(time.Minute), max: dur(time.Hour), zero: true, def: dur(5 * time.Minute),
		why: "dispatch receipts up to 30 s after a record, so under a minute records are sent twice; a lost receipt holds a record for up to 6x this"},

	"gps.replay_speed": {min: 0.1, max: 1000, zero: true, def: 1,
		why: "1 is real time; under 0.1 a replay barely moves, over 1000 use 0 (as fast as possible)"},
	"gps.filter.position_error_m": {min: 1, max: 100, zero: true, def: 5,
		why: "under 1 m the receiver's own noise is kept as track; over 100 m corners are cut across blocks"},
	"gps.filter.speed_error_mps": {min: 0.1, max: 20, zero: true, def: 1.39,
		why: "under 0.1 m/s speed noise keeps every fix; 20 m/s is 72 km/h"},
	"gps.filter.timeout": {min: dur(10 * time.Second), max: dur(time.Hour), zero: true, def: dur(100 * time.Second),
		why: "under 10 s a straight road costs a fix every few seconds; over an hour dispatch loses the truck on the map"},
	"gps.filter.max_delay": {min: dur(5 * time.Second), max: dur(10 * time.Minute), zero: true, def: dur(time.Minute),
		why: "under 5 s every bend is its own message; over 10 min dispatch's newest position is that old"},
	"gps.filter.buffer": {min: 8, max: 4096, zero: true, def: 128,
		why: "under 8 fixes the simplification sees too little of a curve; over 4096 the buffer outgrows a small unit's budget"},
	"gps.filter.period": {min: dur(5 * time.Second), max: dur(time.Hour), zero: true, def: dur(time.Minute),
		why: "a moving truck reporting more often than every 5 s floods the link; over an hour dispatch loses it on the map"},
	"gps.filter.stopped_period": {min: dur(time.Minute), max: dur(day), zero: true, def: dur(15 * time.Minute),
		why: "a parked truck needs no report every few seconds; over a day dispatch cannot tell parked from dead"},
	"gps.filter.min_interval": {min: dur(time.Second), max: dur(10 * time.Minute), zero: true, def: dur(5 * time.Second),
		why: "a 10 Hz receiver with a shorter interval reports 10 times a second in a bend; over 10 min turns go unreported"},
	"gps.filter.min_distance_m": {min: 10, max: 100_000, zero: true, def: 200,
		why: "under 10 m the jitter of a standing truck counts as moving; over 100 km only the period reports"},
	"gps.filter.min_heading_deg": {min: 1, max: 180, zero: true, def: 15,
		why: "under 1 degree every fix is a turn; 180 is the largest change there is"},
	"gps.filter.min_speed_change_mps": {min: 0.5, max: 50, zero: true, def: 2.78,
		why: "under 0.5 m/s the receiver's speed noise triggers reports; 50 m/s is 180 km/h"},
	"gps.filter.max_hdop": {min: 1, max: 50, zero: true, def: 5,
		why: "under 1 almost every fix is dropped and the truck never reports; over 50 fixes are off by kilometres"},

	"store.max_mb": {min: 1, max: 1024, def: 64,
		why: "the file may grow to about twice this, and a 32-bit board cannot map more than 2 GiB"},
	"store.fix_batch": {min: 1, max: 4096, def: 30,
		why: "1 is a commit per fix; over 4096 one commit holds hours of fixes in memory"},
	"store.fix_delay": {min: dur(time.Second), max: dur(10 * time.Minute), def: dur(30 * time.Second),
		why: "under a second every fix is its own commit and wears the flash; fixes wait in memory that long and a power cut loses them"},

	"http.read_timeout": {min: dur(5 * time.Second), max: dur(10 * time.Minute), def: dur(30 * time.Second),
		why: "under 5 s a tablet on weak cab Wi-Fi cannot send a request; over 10 min a client that never finishes holds a connection"},
	"http.write_timeout": {min: dur(35 * time.Second), max: dur(10 * time.Minute), def: dur(time.Minute),
		why: "a proof may take 30 s to reach the disk, so under 35 s its answer is cut off; over 10 min a stuck client holds a connection"},
	"http.idle_timeout": {min: dur(time.Second), max: dur(10 * time.Minute), def: dur(30 * time.Second),
		why: "under a second keep-alive is useless; over 10 min idle connections crowd out new ones"},
	"http.max_conns": {min: 2, max: 512, def: 64,
		why: "a page needs its event stream and one request; a service gets 1024 file descriptors and the store and broker need some"},
	"http.max_streams": {min: 1, max: 64, def: 8,
		why: "one open driver page needs one; a cab has a few devices"},

	"button.long_press": {min: dur(500 * time.Millisecond), max: dur(10 * time.Second), def: dur(2 * time.Second),
		why: "under half a second an ordinary press reports a problem; nobody holds a button 10 s"},

	"ignition.debounce": {min: dur(100 * time.Millisecond), max: dur(30 * time.Second), def: dur(time.Second),
		why: "under 100 ms the dips of a cranking engine end and start trips; over 30 s a trip_start is certain, and its position taken, that late"},

	"status.interval": {min: dur(10 * time.Second), max: dur(day), def: dur(5 * time.Minute),
		why: "each status is a signed message: more often than every 10 s floods the link; less than daily, dispatch cannot tell a parked truck from a dead one"},

	"odometer.save_distance": {min: 100, max: 10_000, def: 1000,
		why: "metres driven between odometer writes: under 100 m the flash wears; a power cut loses up to this much"},
	"odometer.stop_after": {min: dur(10 * time.Second), max: dur(time.Hour), def: dur(time.Minute),
		why: "a red light is not a stop; an hour's standing is"},
	"odometer.trip_end_after": {min: dur(10 * time.Second), max: dur(day), def: dur(10 * time.Minute),
		why: "standing this long ends the trip; it must also be at least odometer.stop_after"},

	"orders.keep_closed": {min: dur(time.Hour), max: dur(366 * day), zero: true, def: dur(30 * day),
		why: "under an hour a delivered order leaves the driver's history before the shift ends; over a year the book only grows"},
}

// testDurationFloor is the floor of every duration when allow_test_timings is set: test rigs and the demo
// run a status every 10 ms or a receipt timeout of 2 s to finish in seconds (numbers then need only be
// above zero). Ceilings still apply.
const testDurationFloor = time.Millisecond

// checkLimits returns one problem per numeric setting outside its range.
func (c *Config) checkLimits() []string {
	var p []string
	walkNumbers(reflect.ValueOf(c).Elem(), nil, func(key string, v reflect.Value) {
		l, ok := limits[key]
		if !ok {
			return // TestLimitsCoverEveryNumber fails instead
		}
		isDur := v.Type() == durationType
		var x float64
		switch v.Kind() {
		case reflect.Int, reflect.Int64:
			x = float64(v.Int())
		case reflect.Float64:
			x = v.Float()
		}
		if x == 0 && l.zero {
			return
		}
		lo := l.min
		if c.AllowTestTimings {
			lo = math.SmallestNonzeroFloat64
			if isDur {
				lo = dur(testDurationFloor)
			}
		}
		if x >= lo && x <= l.max {
			return
		}
		f := func(x float64) string { return formatLimit(x, isDur) }
		msg := fmt.Sprintf("%s = %s is out of range: allowed %s..%s (%s); set it within the range or remove it for "+
			"the default %s", key, f(x), f(l.min), f(l.max), l.why, f(l.def))
		if x > 0 && x < l.min && !c.AllowTestTimings {
			msg += " (test rigs and the demo only: allow_test_timings = true lifts the floors)"
		}
		p = append(p, msg)
	})
	return p
}

// walkNumbers calls fn with the dotted TOML key of every int, float and duration field under v.
func walkNumbers(v reflect.Value, path []string, fn func(key string, v reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := append(path[:len(path):len(path)], name)
		fv := v.Field(i)
		switch fv.Kind() {
		case reflect.Int, reflect.Int64, reflect.Float64:
			fn(strings.Join(key, "."), fv)
		case reflect.Struct:
			if fv.Type() != reflect.TypeOf(time.Time{}) {
				walkNumbers(fv, key, fn)
			}
		}
	}
}

// formatLimit writes a duration as an operator types it ("24h", "1m30s", "500ms") and a number plainly.
func formatLimit(x float64, isDur bool) string {
	if !isDur {
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	d := time.Duration(x)
	if d == 0 || d%time.Second != 0 || d < 0 {
		return d.String()
	}
	var b strings.Builder
	for _, u := range []struct {
		d time.Duration
		s string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.s)
			d -= n * u.d
		}
	}
	return b.String()
}

// The GPS week number rolls over every 1024 weeks; a rollover floor outside this span is a typo.
var (
	firstRollover = time.Date(1999, 8, 22, 0, 0, 0, 0, time.UTC)
	nextRollover  = time.Date(2038, 11, 21, 0, 0, 0, 0, time.UTC)
)

// checkFilterOrder refuses reporting periods that contradict each other, zero ones taken at their defaults:
// a min_interval above the period would silently stretch the period.
func (c *Config) checkFilterOrder() []string {
	f := c.GPS.Filter
	eff := func(key string, d time.Duration) time.Duration {
		if d == 0 {
			return time.Duration(limits[key].def)
		}
		return d
	}
	minInterval := eff("gps.filter.min_interval", f.MinInterval)
	period := eff("gps.filter.period", f.Period)
	stopped := eff("gps.filter.stopped_period", f.StoppedPeriod)
	var p []string
	if minInterval > period {
		p = append(p, fmt.Sprintf("gps.filter.min_interval (%s) must not exceed gps.filter.period (%s): no report "+
			"could come sooner than the interval; lower min_interval or raise period",
			formatLimit(dur(minInterval), true), formatLimit(dur(period), true)))
	}
	if period > stopped {
		p = append(p, fmt.Sprintf("gps.filter.period (%s) must not exceed gps.filter.stopped_period (%s): a stopped "+
			"truck would report more often than a moving one; raise stopped_period or lower period",
			formatLimit(dur(period), true), formatLimit(dur(stopped), true)))
	}
	return p
}
