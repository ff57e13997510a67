package agent

import (
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/boards"
	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/sdk"
)

// The example configuration shipped by `make dist` is valid for every board.
func TestExampleConfigIsValidForEveryBoard(t *testing.T) {
	raw, err := os.ReadFile("../boards/agent.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range boards.Names() {
		c, err := ParseConfig(strings.NewReader(strings.Replace(string(raw), `"BOARD"`, `"`+name+`"`, 1)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := c.Defaults(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p, _ := boards.Lookup(name)
		if c.GPS.Device != p.SerialDevice || c.DataDir != p.DataDir || *c.Button.Line != p.ButtonLine {
			t.Fatalf("%s: board facts not applied: %+v", name, c)
		}
	}
}

func TestDefaultsAndEnvironment(t *testing.T) {
	c, err := ParseConfig(strings.NewReader("[identity]\ncert = \"c\"\nkey = \"k\"\nca = \"a\"\n[broker]\nurls = [\"mqtts://b:8883\"]\n[gps]\ndevice = \"/dev/ttyS0\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"WAYBILL_KEY_FILE": "/run/credentials/truck.key", "WAYBILL_BROKERS": "mqtts://x:1,mqtts://y:2",
		"WAYBILL_HTTP_TOKEN": "s3cret"}
	c.Env(func(k string) string { return env[k] })
	if err := c.Defaults(); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Identity.Key != "/run/credentials/truck.key" || len(c.Broker.URLs) != 2 || c.HTTP.Token != "s3cret" {
		t.Fatalf("environment not applied: %+v", c)
	}
	if c.DataDir != "/var/lib/waybill" || c.Store.FixBatch != 30 || c.Store.FixDelay != 30*time.Second ||
		c.HTTP.Listen != "127.0.0.1:8080" || c.GPS.Baud != "auto" || *c.Button.Line != -1 ||
		c.HTTP.ReadTimeout != 30*time.Second || c.HTTP.WriteTimeout != time.Minute || c.HTTP.IdleTimeout != 30*time.Second ||
		c.HTTP.MaxConns != 64 || c.HTTP.MaxStreams != 8 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c, err := ParseConfig(strings.NewReader(`data_dir = "relative"
[broker]
urls = ["http://nope", "mqtt://plain:1883"]
[gps]
source = "carrier-pigeon"
baud = "fast"
[http]
listen = "0.0.0.0:8080"
idle_timeout = "-1s"
max_conns = 4
max_streams = 4
[log]
level = "chatty"
`))
	if err != nil {
		t.Fatal(err)
	}
	c.Defaults()
	err = c.Validate()
	if err == nil {
		t.Fatal("a bad configuration passed")
	}
	for _, want := range []string{"data_dir", "identity.cert is required", `"http://nope" has scheme "http"`,
		"plaintext", "gps.source", "gps.baud", "http.token", "idle_timeout", "max_streams (4) must be below http.max_conns (4)", "log.level"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

// TestBareNumberDurationsRefused: `interval = 300` once meant 300 ns (34,535 status messages in 8 s); every
// duration key given as a bare number is now an error that names the key and the fix, at any depth.
func TestBareNumberDurationsRefused(t *testing.T) {
	const base = "[identity]\ncert = \"c\"\nkey = \"k\"\nca = \"a\"\n[broker]\nurls = [\"mqtts://b:8883\"]\n"
	for _, c := range []struct{ extra, key string }{
		{"[status]\ninterval = 300\n", "status.interval"},
		{"[gps.filter]\nperiod = 60\n", "gps.filter.period"},
		{"[store]\nfix_delay = 30\n", "store.fix_delay"},
	} {
		_, err := ParseConfig(strings.NewReader(base + c.extra))
		if err == nil || !strings.Contains(err.Error(), c.key) || !strings.Contains(err.Error(), `"5m"`) {
			t.Errorf("%q: %v, want an error naming %s and the unit", c.extra, err, c.key)
		}
	}
	if _, err := ParseConfig(strings.NewReader(base + "[status]\ninterval = \"5m\"\n[gps.filter]\nperiod = \"1m\"\n")); err != nil {
		t.Errorf("durations with units: %v", err)
	}
	_, err := ParseConfig(strings.NewReader(base + "[http]\nbogus = 1\n"))
	if err == nil || !strings.Contains(err.Error(), "boards/agent.example.toml") {
		t.Errorf("unknown key: %v, want a pointer to boards/agent.example.toml", err)
	}
}

// baseConfig is the least a valid configuration needs.
const baseConfig = "[identity]\ncert = \"c\"\nkey = \"k\"\nca = \"a\"\n[broker]\nurls = [\"mqtts://b:8883\"]\n[gps]\ndevice = \"/dev/ttyS0\"\n"

// loadString parses, fills defaults and validates, as LoadConfig does for `check` and `run`.
func loadString(t *testing.T, toml string) (Config, error) {
	t.Helper()
	c, err := ParseConfig(strings.NewReader(toml))
	if err != nil {
		return c, err
	}
	if err := c.Defaults(); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// withKey adds `key = value` to baseConfig under the key's table.
func withKey(key, value string) string {
	i := strings.LastIndexByte(key, '.')
	return withLine(key[:i], key[i+1:]+" = "+value)
}

// withLine adds a line to baseConfig's table (a new one if it has none).
func withLine(table, line string) string {
	if header := "[" + table + "]\n"; strings.Contains(baseConfig, header) {
		return strings.Replace(baseConfig, header, header+line+"\n", 1)
	}
	return baseConfig + "[" + table + "]\n" + line + "\n"
}

// TestOutOfRangeRefused (issue 11.1): a duration or rate an operator would not choose on purpose is refused
// with the key, the value, the range and the fix; values an operator would choose pass.
func TestOutOfRangeRefused(t *testing.T) {
	for _, c := range []struct {
		key, value string
		refused    bool
		want       string // in the error
	}{
		{"status.interval", `"100ms"`, true, `status.interval = 100ms is out of range: allowed 10s..24h`},
		{"status.interval", `"168h"`, true, "allowed 10s..24h"},
		{"status.interval", `"1m"`, false, ""},
		{"status.interval", `"-5m"`, true, "status.interval = -5m0s"},
		{"gps.filter.period", `"100ms"`, true, "gps.filter.period = 100ms is out of range: allowed 5s..1h"},
		{"gps.filter.period", `"30s"`, false, ""},
		{"gps.filter.stopped_period", `"72h"`, true, "allowed 1m..24h"},
		{"gps.filter.min_interval", `"10ms"`, true, "allowed 1s..10m"},
		{"gps.filter.min_distance_m", `0.5`, true, "gps.filter.min_distance_m = 0.5 is out of range: allowed 10..100000"},
		{"gps.filter.max_hdop", `0.5`, true, "allowed 1..50"},
		{"gps.filter.min_heading_deg", `360.0`, true, "allowed 1..180"},
		{"gps.filter.min_speed_change_mps", `0.1`, true, "allowed 0.5..50"},
		{"gps.replay_speed", `-1.0`, true, "allowed 0.1..1000"},
		{"gps.replay_speed", `1e6`, true, "use 0 (as fast as possible)"},
		{"store.fix_delay", `"1ms"`, true, "store.fix_delay = 1ms is out of range: allowed 1s..10m"},
		{"store.fix_delay", `"1h"`, true, "allowed 1s..10m"},
		{"store.fix_batch", `100000`, true, "allowed 1..4096"},
		{"store.max_mb", `1048576`, true, "store.max_mb = 1048576 is out of range: allowed 1..1024"},
		{"store.max_mb", `-1`, true, "allowed 1..1024"},
		{"broker.keep_alive", `"1s"`, true, "broker.keep_alive = 1s is out of range: allowed 10s..30m"},
		{"broker.keep_alive", `"24h"`, true, "allowed 10s..30m"},
		{"broker.backoff_max", `"100ms"`, true, "allowed 5s..1h"},
		{"broker.receipt_timeout", `"10s"`, true, "broker.receipt_timeout = 10s is out of range: allowed 1m..1h"},
		{"broker.receipt_timeout", `"10m"`, false, ""},
		{"http.read_timeout", `"1ms"`, true, "allowed 5s..10m"},
		{"http.write_timeout", `"10s"`, true, "allowed 35s..10m"},
		{"http.idle_timeout", `"24h"`, true, "allowed 1s..10m"},
		{"http.max_conns", `100000`, true, "http.max_conns = 100000 is out of range: allowed 2..512"},
		{"http.max_streams", `1000`, true, "allowed 1..64"},
		{"button.long_press", `"10ms"`, true, "button.long_press = 10ms is out of range: allowed 500ms..10s"},
		{"orders.keep_closed", `"1m"`, true, "allowed 1h..8784h"},
	} {
		_, err := loadString(t, withKey(c.key, c.value))
		switch {
		case !c.refused && err != nil:
			t.Errorf("%s = %s refused: %v", c.key, c.value, err)
		case c.refused && err == nil:
			t.Errorf("%s = %s accepted", c.key, c.value)
		case c.refused && !strings.Contains(err.Error(), c.want):
			t.Errorf("%s = %s: %v\nwant it to say %q", c.key, c.value, err, c.want)
		case c.refused && !strings.Contains(err.Error(), "set it within the range or remove it for the default"):
			t.Errorf("%s = %s: %v\nwant the fix", c.key, c.value, err)
		}
	}
}

// TestEveryLimitHolds sweeps the table: each bound is accepted, a step beyond it is refused.
func TestEveryLimitHolds(t *testing.T) {
	for key, l := range limits {
		typ := keyType(t, key)
		render := func(x float64) string {
			switch {
			case typ == durationType:
				return `"` + time.Duration(x).String() + `"`
			case typ.Kind() == reflect.Float64:
				return strconv.FormatFloat(x, 'e', -1, 64)
			default:
				return strconv.FormatInt(int64(x), 10)
			}
		}
		step := 1.0
		switch {
		case typ == durationType:
			step = dur(time.Millisecond)
		case typ.Kind() == reflect.Float64:
			step = l.min / 10
		}
		for _, v := range []struct {
			x  float64
			ok bool
		}{{l.min, true}, {l.max, true}, {l.def, true}, {l.min - step, false}, {l.max + step, false}} {
			if v.x == 0 {
				continue // zero means the default
			}
			_, err := loadString(t, withKey(key, render(v.x)))
			refused := err != nil && regexp.MustCompile(regexp.QuoteMeta(key)+` = \S+ is out of range`).MatchString(err.Error())
			if refused == v.ok {
				t.Errorf("%s = %s: refused %v, want %v (%v)", key, render(v.x), refused, !v.ok, err)
			}
		}
	}
}

// keyType is the Go type of the setting at a dotted key.
func keyType(t *testing.T, key string) reflect.Type {
	t.Helper()
	typ := reflect.TypeOf(Config{})
	for _, name := range strings.Split(key, ".") {
		found := false
		for i := range typ.NumField() {
			if n, _, _ := strings.Cut(typ.Field(i).Tag.Get("toml"), ","); n == name {
				typ, found = typ.Field(i).Type, true
				break
			}
		}
		if !found {
			t.Fatalf("limits names %s, which Config does not have", key)
		}
	}
	return typ
}

// TestLimitsCoverEveryNumber: every duration, int and float in Config has a range (including the keys of
// config_odometer.go and config_orders.go as they are added), and every range names a real key.
func TestLimitsCoverEveryNumber(t *testing.T) {
	seen := map[string]bool{}
	walkNumbers(reflect.ValueOf(&Config{}).Elem(), nil, func(key string, v reflect.Value) {
		seen[key] = true
		if _, ok := limits[key]; !ok {
			t.Errorf("%s (%s) has no range: add it to limits in agent/config_limits.go, say why in its "+
				"comment and in boards/agent.example.toml", key, v.Type())
		}
	})
	for key := range limits {
		if !seen[key] {
			t.Errorf("limits has %s, which is not a number in Config", key)
		}
	}
}

// Test rigs and the demo run a status every 10 ms or report every fix; allow_test_timings lets them, and
// keeps the ceilings.
func TestAllowTestTimings(t *testing.T) {
	fast := baseConfig + "[status]\ninterval = \"10ms\"\n"
	_, err := loadString(t, fast)
	if err == nil || !strings.Contains(err.Error(), "allow_test_timings = true lifts the floors") {
		t.Fatalf("10 ms status without allow_test_timings: %v", err)
	}
	if _, err := loadString(t, "allow_test_timings = true\n"+fast); err != nil {
		t.Fatalf("10 ms status with allow_test_timings: %v", err)
	}
	if _, err := loadString(t, "allow_test_timings = true\n"+withKey("gps.filter.min_distance_m", "1.0")); err != nil {
		t.Fatalf("1 m report distance with allow_test_timings: %v", err)
	}
	for _, extra := range []string{`"0.1ms"`, `"48h"`, `"-1s"`} {
		if _, err := loadString(t, "allow_test_timings = true\n"+withKey("status.interval", extra)); err == nil {
			t.Errorf("allow_test_timings accepted status.interval = %s: durations go down to 1 ms, ceilings stay", extra)
		}
	}
	for _, extra := range []string{"100000", "-1"} {
		if _, err := loadString(t, "allow_test_timings = true\n"+withKey("store.max_mb", extra)); err == nil {
			t.Errorf("allow_test_timings accepted store.max_mb = %s", extra)
		}
	}
}

func TestFilterPeriodsInOrder(t *testing.T) {
	for _, c := range []struct{ filter, want string }{
		{"min_interval = \"2m\"\n", "gps.filter.min_interval (2m) must not exceed gps.filter.period (1m)"},
		{"period = \"30m\"\n", "gps.filter.period (30m) must not exceed gps.filter.stopped_period (15m)"},
	} {
		_, err := loadString(t, baseConfig+"[gps.filter]\n"+c.filter)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.filter, err, c.want)
		}
	}
	if _, err := loadString(t, baseConfig+"[gps.filter]\nperiod = \"10m\"\nstopped_period = \"10m\"\nmin_interval = \"10m\"\n"); err != nil {
		t.Errorf("ordered periods refused: %v", err)
	}
}

func TestRolloverFloorRange(t *testing.T) {
	for _, c := range []struct {
		v  string
		ok bool
	}{{"2026-01-01T00:00:00Z", true}, {"1990-01-01T00:00:00Z", false}, {"2045-01-01T00:00:00Z", false}} {
		_, err := loadString(t, withKey("gps.rollover_floor", c.v))
		if (err == nil) != c.ok || (err != nil && !strings.Contains(err.Error(), "allowed 1999-08-22..2038-11-20")) {
			t.Errorf("rollover_floor = %s: %v, want ok %v", c.v, err, c.ok)
		}
	}
}

// TestUnknownKeySuggests (issue 11.6): a typo names the key it meant, and the file that lists them all.
func TestUnknownKeySuggests(t *testing.T) {
	for _, c := range []struct{ table, lines, want string }{
		{"status", `intreval = "5m"`, "unknown keys: status.intreval (did you mean status.interval?)"},
		{"http", `listen_addr = "x"`, "http.listen_addr (did you mean http.listen?)"},
		{"htpp", "listen = \"x\"\ntoken = \"y\"", "unknown keys: htpp (did you mean http?);"},
		{"broker", `interval = "5m"`, "broker.interval (did you mean status.interval?)"},
		{"gps.filter", "min_distance = 100", "did you mean gps.filter.min_distance_m?"},
		{"store", "whatever = 1", "unknown keys: store.whatever; boards/agent.example.toml"},
	} {
		_, err := ParseConfig(strings.NewReader(withLine(c.table, c.lines)))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "boards/agent.example.toml") {
			t.Errorf("[%s] %s: %v\nwant %q", c.table, c.lines, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "htpp.listen") {
			t.Errorf("the keys of an unknown table are listed too: %v", err)
		}
	}
}

// TestExampleBoardPlaceholder (issue 11.6): the example as shipped says what to put in board; its list of
// boards is the real one.
func TestExampleBoardPlaceholder(t *testing.T) {
	raw, err := os.ReadFile("../boards/agent.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = loadString(t, string(raw))
	names := strings.Join(boards.Names(), ", ")
	if err == nil || !strings.Contains(err.Error(), `board = "BOARD"`) || !strings.Contains(err.Error(), "put one of "+names+" there") {
		t.Fatalf("the example as shipped: %v\nwant it to name the boards to put there", err)
	}
	if !strings.Contains(strings.ReplaceAll(string(raw), "\n# ", " "), "one of "+names+" (the directories of boards/") {
		t.Errorf("the example's board comment does not list %s", names)
	}
	_, err = loadString(t, "board = \"rpi-4\"\n"+baseConfig)
	if err == nil || !strings.Contains(err.Error(), "did you mean rpi4?") {
		t.Errorf("board rpi-4: %v, want a suggestion", err)
	}
}

// exampleKeys reads the keys boards/agent.example.toml shows, commented out or not, as dotted keys, and the
// line each is on.
func exampleKeys(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("../boards/agent.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	table := regexp.MustCompile(`^\[([a-z_.]+)\]`)
	key := regexp.MustCompile(`^#? ?([a-z_]+) = `)
	out, prefix := map[string]string{}, ""
	for _, line := range strings.Split(string(raw), "\n") {
		if m := table.FindStringSubmatch(line); m != nil {
			prefix = m[1] + "."
			out[m[1]] = line
		} else if m := key.FindStringSubmatch(line); m != nil {
			out[prefix+m[1]] = line
		}
	}
	return out
}

// TestExampleListsEveryKey (issue 11.7): every key of Config, found by reflection, is in the example, so a
// key added to any config_*.go file must be documented there.
func TestExampleListsEveryKey(t *testing.T) {
	have := exampleKeys(t)
	known := map[string]bool{}
	for _, k := range configKeys(reflect.TypeOf(Config{}), nil) {
		known[k] = true
		if _, ok := have[k]; !ok {
			t.Errorf("boards/agent.example.toml lacks %s: add it, commented out with its default", k)
		}
	}
	for k := range have {
		if !known[k] {
			t.Errorf("boards/agent.example.toml shows %s, which the agent does not know", k)
		}
	}
}

// TestExampleShowsEveryRange: the example gives each range as Validate enforces it.
func TestExampleShowsEveryRange(t *testing.T) {
	have := exampleKeys(t)
	for key, l := range limits {
		isDur := keyType(t, key) == durationType
		want := formatLimit(l.min, isDur) + ".." + formatLimit(l.max, isDur)
		if line, ok := have[key]; ok && !strings.Contains(line, "# "+want) {
			t.Errorf("example line %q does not give the range %s", line, want)
		}
	}
}

// TestExampleCommentsAreTheDefaults: uncommenting every key of the example changes nothing but the keys
// whose comment is an example value, so each commented value is the default it claims to be.
func TestExampleCommentsAreTheDefaults(t *testing.T) {
	raw, err := os.ReadFile("../boards/agent.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	shipped := strings.Replace(string(raw), `"BOARD"`, `"rpi4"`, 1)
	uncommented := regexp.MustCompile(`(?m)^# ?([a-z_]+ = )`).ReplaceAllString(shipped, "$1")
	def, err := loadString(t, shipped)
	if err != nil {
		t.Fatal(err)
	}
	all, err := loadString(t, uncommented)
	if err != nil {
		t.Fatalf("the example with every key uncommented: %v", err)
	}
	// Example values, not defaults: the CRL path, the replay file, the odometer reading.
	all.Identity.CRL, all.GPS.ReplayFile, all.Odometer.SetKM = def.Identity.CRL, def.GPS.ReplayFile, def.Odometer.SetKM
	// The packages that use these apply their defaults; the agent leaves them zero.
	if all.Broker.TopicPrefix != sdk.DefaultPrefix {
		t.Errorf("example broker.topic_prefix = %q, the default is %q", all.Broker.TopicPrefix, sdk.DefaultPrefix)
	}
	all.Broker.TopicPrefix = ""
	walkNumbers(reflect.ValueOf(&all).Elem(), nil, func(key string, v reflect.Value) {
		l := limits[key]
		if !l.zero {
			return
		}
		x := v.Convert(reflect.TypeOf(float64(0))).Float()
		if x != l.def {
			t.Errorf("example %s = %v, the default is %v", key, x, l.def)
		}
		v.SetZero()
	})
	if !all.GPS.RolloverFloor.Equal(gps.DefaultRolloverFloor) {
		t.Errorf("example gps.rollover_floor = %v, the default is %v", all.GPS.RolloverFloor, gps.DefaultRolloverFloor)
	}
	all.GPS.RolloverFloor = def.GPS.RolloverFloor
	if !reflect.DeepEqual(all, def) {
		t.Errorf("uncommented example differs from the defaults:\n got %+v\nwant %+v", all, def)
	}
	// The limits' defaults are the ones Defaults applies.
	var zero Config
	zero.Defaults()
	walkNumbers(reflect.ValueOf(&zero).Elem(), nil, func(key string, v reflect.Value) {
		var x float64
		if v.CanInt() {
			x = float64(v.Int())
		} else {
			x = v.Float()
		}
		if l := limits[key]; x != 0 && x != l.def {
			t.Errorf("%s: Defaults gives %v, limits says %v", key, x, l.def)
		}
	})
}
