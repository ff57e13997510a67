package agent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/waybill-iot/waybill/boards"
	"github.com/waybill-iot/waybill/gps"
)

// Config is the agent's configuration: one TOML file, with environment overrides for secrets and paths
// (see Env). Every field documents its zero value; Defaults fills them.
type Config struct {
	// Board names a profile in boards/ whose facts (serial device, baud, GPIO lines, data directory) fill
	// the fields left empty. "" means none.
	Board string `toml:"board"`
	// DataDir holds the store (queue.db). Zero: the board's, else /var/lib/waybill. Env WAYBILL_DATA_DIR.
	DataDir string `toml:"data_dir"`
	// AllowTestTimings lifts the floor of every range (a duration may be 1 ms, a number anything above
	// zero; the ceilings stay) so test rigs and `waybill demo` can run a status every 10 ms, a receipt
	// timeout of 2 s or a report per fix. Never on a truck: the floors keep a typo from flooding the link.
	AllowTestTimings bool `toml:"allow_test_timings"`

	Identity IdentityConfig `toml:"identity"`
	Broker   BrokerConfig   `toml:"broker"`
	GPS      GPSConfig      `toml:"gps"`
	Store    StoreConfig    `toml:"store"`
	HTTP     HTTPConfig     `toml:"http"`
	Button   ButtonConfig   `toml:"button"`
	Ignition IgnitionConfig `toml:"ignition"` // see config_ignition.go
	Status   StatusConfig   `toml:"status"`
	Log      LogConfig      `toml:"log"`
	Odometer OdometerConfig `toml:"odometer"` // see config_odometer.go
	Orders   OrdersConfig   `toml:"orders"`   // see config_orders.go
}

// IdentityConfig names the truck's certificate files. The truck's name is the certificate's CN.
type IdentityConfig struct {
	Cert string `toml:"cert"` // required; env WAYBILL_CERT_FILE
	Key  string `toml:"key"`  // required, mode 0600 or stricter; env WAYBILL_KEY_FILE
	CA   string `toml:"ca"`   // the fleet CA; required; env WAYBILL_CA_FILE
	CRL  string `toml:"crl"`  // the fleet CRL, optional; env WAYBILL_CRL_FILE
}

// BrokerConfig is the MQTT connection.
type BrokerConfig struct {
	URLs []string `toml:"urls"` // tried in order, mqtts://host:port; required; env WAYBILL_BROKERS (comma-separated)
	// TopicPrefix zero: "fleet".
	TopicPrefix string `toml:"topic_prefix"`
	// KeepAlive zero: 60 s (see sdk/transport). Range 10s..30m: shorter, the pings cost more cellular
	// data than the fixes; longer, a carrier NAT drops the idle connection before a ping notices.
	KeepAlive time.Duration `toml:"keep_alive"`
	// BackoffMax bounds the wait between connection attempts (jittered exponential from 1 s). A longer wait
	// spares a bad cellular link; a shorter one reconnects sooner when it comes back. Zero: 2 minutes.
	// Range 5s..1h: a fleet retrying faster hammers a broker that is down; slower, a truck back from a dead
	// zone stays silent for an hour.
	BackoffMax time.Duration `toml:"backoff_max"`
	// ReconnectWindow spreads the first reconnection after the broker was lost over a random wait of up to
	// this long. A broker restart drops the whole fleet at once, and Mosquitto does about 900 TLS handshakes
	// a second on one core (1.1 ms each): with a 0-1 s window 1,750 of 10,000 trucks timed out. Zero: 30 s
	// (10,000 trucks at about a third of a core). Range 1s..10m; the store holds what the truck records.
	ReconnectWindow time.Duration `toml:"reconnect_window"`
	// ReceiptTimeout is how long a record sent to the broker waits for dispatch's signed receipt before it
	// is sent again (doubling while none comes, up to 6x this); a record leaves the queue only on its
	// receipt. It must be well above dispatch's receipt delay (30 s). Zero: 5 minutes. Range 1m..1h.
	ReceiptTimeout time.Duration `toml:"receipt_timeout"`
	// AllowPlaintext allows mqtt:// for local development only.
	AllowPlaintext bool `toml:"allow_plaintext"`
}

// GPSConfig is the receiver.
type GPSConfig struct {
	// Source: "serial" (default), "gpsd" or "replay".
	Source string `toml:"source"`
	// Device is the serial port. Zero: the board's. Env WAYBILL_GPS_DEVICE.
	Device string `toml:"device"`
	// Baud: "auto" (default: try 4800, 9600, 38400, 115200) or a rate.
	Baud string `toml:"baud"`
	// GPSDAddr zero: localhost:2947.
	GPSDAddr string `toml:"gpsd_addr"`
	// ReplayFile is a capture for Source "replay"; ReplaySpeed 1 = real time, 10 = ten times faster. Zero:
	// 1. Range 0.1..1000.
	ReplayFile  string  `toml:"replay_file"`
	ReplaySpeed float64 `toml:"replay_speed"`
	// RolloverFloor corrects receivers with the GPS week-rollover bug: dates before it are moved forward by
	// 1024 weeks. Zero: gps.DefaultRolloverFloor. Range: the first rollover (1999-08-22) to the next
	// (2038-11-21); a floor in the future would move today's fixes 19.6 years ahead.
	RolloverFloor time.Time `toml:"rollover_floor"`
	// Filter overrides the reporting filter's thresholds; zero fields keep gps's documented defaults.
	Filter FilterConfig `toml:"filter"`
}

// FilterConfig mirrors gps.FilterConfig's thresholds; zero keeps gps's default (in brackets). The ranges
// stop a flood (a report per fix) and a truck that never reports; min_interval <= period <= stopped_period.
type FilterConfig struct {
	// Mode: "curve" (default: curve logging, the fewest bytes for a track within PositionError and
	// SpeedError, see gps/doc.go) or "thresholds" (period, distance, heading, speed change: the filter
	// before curve logging). Period, StoppedPeriod, MinInterval, MinDistance, MinHeading and MinSpeedChange
	// are the thresholds mode's; PositionError, SpeedError, Timeout, MaxDelay and Buffer the curve's.
	Mode           string        `toml:"mode"`
	PositionError  float64       `toml:"position_error_m"`     // [5] 1..100: no dropped fix further from the logged track
	SpeedError     float64       `toml:"speed_error_mps"`      // [1.39] 0.1..20: nor its speed further from the track's
	Timeout        time.Duration `toml:"timeout"`              // [100s] 10s..1h: a fix at least this often while moving
	MaxDelay       time.Duration `toml:"max_delay"`            // [60s] 5s..10m: no fix waits longer to be sent (nor past 10 s of receiver silence)
	Buffer         int           `toml:"buffer"`               // [128] 8..4096: most fixes held undecided (memory)
	Period         time.Duration `toml:"period"`               // [60s] 5s..1h while moving
	StoppedPeriod  time.Duration `toml:"stopped_period"`       // [15m] 1m..24h while stopped
	MinInterval    time.Duration `toml:"min_interval"`         // [5s] 1s..10m between turn/distance reports
	MinDistance    float64       `toml:"min_distance_m"`       // [200] 10..100000; under 10 m jitter is motion
	MinHeading     float64       `toml:"min_heading_deg"`      // [15] 1..180
	MinSpeedChange float64       `toml:"min_speed_change_mps"` // [2.78] 0.5..50
	MaxHDOP        float64       `toml:"max_hdop"`             // [5] 1..50; under 1 nearly every fix is dropped
}

// StoreConfig is the durable queue.
type StoreConfig struct {
	// MaxMB bounds the queued records, in MiB. Zero: 64. Range 1..1024: the file may grow to about twice
	// this, and a 32-bit board cannot map more than 2 GiB.
	MaxMB int `toml:"max_mb"`
	// FixBatch and FixDelay: reported fixes wait in memory until FixBatch are pending or the oldest has
	// waited FixDelay, then go to disk in one commit (store/doc.go: 30 fixes per commit write 26x less than a
	// commit per fix). Delivery events never wait. Zero: 30 and 30 s. Ranges 1..4096 and 1s..10m: under a
	// second every fix is its own commit and wears the flash; a power cut loses what waits in memory.
	FixBatch int           `toml:"fix_batch"`
	FixDelay time.Duration `toml:"fix_delay"`
}

// HTTPConfig is the local listener: the driver page, the HTTP hook, /healthz and /metrics.
type HTTPConfig struct {
	// Listen zero: 127.0.0.1:8080. "off" disables the listener.
	Listen string `toml:"listen"`
	// Token is required by every request when Listen is not a loopback address. Env WAYBILL_HTTP_TOKEN.
	Token string `toml:"token"`
	// ReadTimeout bounds reading one request, body included (a request body is at most 16 KiB); it also
	// bounds a new connection that sends nothing (the header timeout is the smaller of it and 10 s).
	// Zero: 30 s. Range 5s..10m (a tablet on weak cab Wi-Fi needs a few seconds).
	ReadTimeout time.Duration `toml:"read_timeout"`
	// WriteTimeout bounds a request from its headers to the end of its answer. It is above the driver
	// hook's 30 s bound on writing a proof, so a slow store still gets its answer out. The /events stream
	// is exempt (it sets a deadline per event). Zero: 60 s. Range 35s..10m.
	WriteTimeout time.Duration `toml:"write_timeout"`
	// IdleTimeout closes a keep-alive connection that waits that long for its next request. Zero: 30 s.
	// Range 1s..10m.
	IdleTimeout time.Duration `toml:"idle_timeout"`
	// MaxConns caps the open connections. At the cap a new connection takes the place of the oldest one
	// that is idle or has sent nothing yet; when every one is busy, the new one is closed at once. Zero: 64
	// (a browser opens at most 6 per host; a cab has a few devices). Range 2..512 (a service has 1024 file
	// descriptors) and above MaxStreams.
	MaxConns int `toml:"max_conns"`
	// MaxStreams caps the driver page's open /events streams; a new one closes the oldest. Zero: 8.
	// Range 1..64.
	MaxStreams int `toml:"max_streams"`
}

// ButtonConfig is the driver's hardware button and LED on the GPIO character device.
type ButtonConfig struct {
	Chip    string `toml:"chip"`     // e.g. gpiochip0; zero: the board's
	Line    *int   `toml:"line"`     // nil: the board's; -1: no button
	LEDChip string `toml:"led_chip"` // zero: Chip
	LEDLine *int   `toml:"led_line"` // nil: the board's; -1: no LED
	// LongPress zero: 2 s. Range 500ms..10s: shorter, an ordinary press reports a problem.
	LongPress time.Duration `toml:"long_press"`
	// ActiveHigh: the button drives the line high when pressed (an external pull-down, or a line such as
	// QEMU's virt power button). Zero: active-low, a button to ground with the internal pull-up.
	ActiveHigh bool `toml:"active_high"`
	// NoPull leaves the line's pull resistor off (a board with its own, or a GPIO block without any, like
	// the PL061). Zero: the internal pull-up (active-low) or pull-down (active-high).
	NoPull bool `toml:"no_pull"`
}

// StatusConfig is the retained status message.
type StatusConfig struct {
	// Interval zero: 5 minutes. Range 10s..24h: each status is a signed message, so more often floods the
	// link (a bare 300 once meant 300 ns: 34,535 messages in 8 s); less than daily, dispatch cannot tell a
	// parked truck from a dead one.
	Interval time.Duration `toml:"interval"`
}

// LogConfig is the log output (stderr; journald adds the time).
type LogConfig struct {
	Level  string `toml:"level"`  // debug, info (default), warn, error
	Format string `toml:"format"` // text (default) or json
}

// ParseConfig reads a TOML configuration. Unknown keys are errors (a typo must not silently do nothing).
func ParseConfig(r io.Reader) (Config, error) {
	var c Config
	md, err := toml.NewDecoder(r).Decode(&c)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		return Config{}, unknownKeys(un)
	}
	if bare := bareDurations(md, reflect.TypeOf(c), nil); len(bare) > 0 {
		return Config{}, fmt.Errorf("config: %s: a duration needs its unit, as a string such as \"30s\", \"5m\" or "+
			"\"1h\" (a bare number would be read as nanoseconds)", strings.Join(bare, ", "))
	}
	return c, nil
}

var durationType = reflect.TypeOf(time.Duration(0))

// unknownKeys names each unknown key (a table once, not each key in it) with the closest known key, so a
// typo such as `intreval` says what was meant.
func unknownKeys(un []toml.Key) error {
	reported := map[string]bool{}
	var parts []string
	for _, k := range un {
		name := k.String()
		if reportedPrefix(reported, k) { // a key of an unknown table: the table is named already
			reported[name] = true
			continue
		}
		reported[name] = true
		if hint := suggestKey(k); hint != "" {
			name += " (did you mean " + hint + "?)"
		}
		parts = append(parts, name)
	}
	return fmt.Errorf("config: unknown keys: %s; boards/agent.example.toml lists every key with its default",
		strings.Join(parts, ", "))
}

func reportedPrefix(reported map[string]bool, k toml.Key) bool {
	for i := 1; i < len(k); i++ {
		if reported[k[:i].String()] {
			return true
		}
	}
	return false
}

// configKeys lists the dotted TOML key of every setting (leaves and tables) under t, in field order.
func configKeys(t reflect.Type, path []string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := append(path[:len(path):len(path)], name)
		out = append(out, strings.Join(key, "."))
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}) {
			out = append(out, configKeys(f.Type, key)...)
		}
	}
	return out
}

// suggestKey returns the known key closest to k: one a few edits away in the same table, else the same
// name in another table (`interval` under [broker] is status.interval). "" when nothing is close.
func suggestKey(k toml.Key) string {
	known := configKeys(reflect.TypeOf(Config{}), nil)
	parent, last := k[:len(k)-1].String(), k[len(k)-1]
	best, bestDist := "", len(last)/3+2 // at most a third of the name, and at least 2 edits, may differ
	for _, cand := range known {
		cp, cl := "", cand
		if i := strings.LastIndexByte(cand, '.'); i >= 0 {
			cp, cl = cand[:i], cand[i+1:]
		}
		if cp != parent {
			continue
		}
		d := boards.EditDistance(last, cl)
		if strings.HasPrefix(last, cl+"_") || strings.HasPrefix(cl, last+"_") {
			d = 1 // listen_addr for listen, min_distance for min_distance_m
		}
		if d < bestDist {
			best, bestDist = cand, d
		}
	}
	if best != "" {
		return best
	}
	for _, cand := range known {
		if cand == last || strings.HasSuffix(cand, "."+last) {
			return cand
		}
	}
	return ""
}

// bareDurations lists the duration keys under path that the file gives as bare numbers: the TOML library
// would take `interval = 300` as 300 ns, and a status interval of 300 ns floods the link.
func bareDurations(md toml.MetaData, t reflect.Type, path []string) []string {
	var bare []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := append(path[:len(path):len(path)], name)
		switch {
		case f.Type == durationType:
			if md.Type(key...) == "Integer" { // a float fails to decode already, naming the key
				bare = append(bare, strings.Join(key, "."))
			}
		case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}):
			bare = append(bare, bareDurations(md, f.Type, key)...)
		}
	}
	return bare
}

// LoadConfig reads the file at path, applies the environment overrides and the defaults, and validates.
func LoadConfig(path string, env func(string) string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w (pass the file with --config)", err)
	}
	defer f.Close()
	c, err := ParseConfig(f)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	c.Env(env)
	if err := c.Defaults(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Env applies the environment overrides: WAYBILL_DATA_DIR, WAYBILL_CERT_FILE, WAYBILL_KEY_FILE,
// WAYBILL_CA_FILE, WAYBILL_CRL_FILE, WAYBILL_BROKERS, WAYBILL_GPS_DEVICE, WAYBILL_HTTP_TOKEN. env nil means
// os.Getenv.
func (c *Config) Env(env func(string) string) {
	if env == nil {
		env = os.Getenv
	}
	set := func(dst *string, key string) {
		if v := env(key); v != "" {
			*dst = v
		}
	}
	set(&c.DataDir, "WAYBILL_DATA_DIR")
	set(&c.Identity.Cert, "WAYBILL_CERT_FILE")
	set(&c.Identity.Key, "WAYBILL_KEY_FILE")
	set(&c.Identity.CA, "WAYBILL_CA_FILE")
	set(&c.Identity.CRL, "WAYBILL_CRL_FILE")
	set(&c.GPS.Device, "WAYBILL_GPS_DEVICE")
	set(&c.HTTP.Token, "WAYBILL_HTTP_TOKEN")
	if v := env("WAYBILL_BROKERS"); v != "" {
		c.Broker.URLs = strings.Split(v, ",")
	}
}

// Defaults fills zero fields from the board profile and the documented defaults.
func (c *Config) Defaults() error {
	if c.Board != "" {
		p, err := boards.Lookup(c.Board)
		if errors.Is(err, boards.ErrUnknownBoard) {
			return fmt.Errorf("config: board = %q: %w; put one of %s there (`make dist BOARD=name` does it), "+
				"or delete the line and set gps.device and the [button] lines yourself",
				c.Board, err, strings.Join(boards.Names(), ", "))
		}
		if err != nil {
			return err
		}
		if c.DataDir == "" {
			c.DataDir = p.DataDir
		}
		if c.GPS.Device == "" {
			c.GPS.Device = p.SerialDevice
		}
		if c.GPS.Baud == "" {
			c.GPS.Baud = p.Baud
		}
		if c.Button.Chip == "" {
			c.Button.Chip = p.ButtonChip
		}
		if c.Button.Line == nil {
			c.Button.Line = &p.ButtonLine
		}
		if c.Button.LEDChip == "" {
			c.Button.LEDChip = p.LEDChip
		}
		if c.Button.LEDLine == nil {
			c.Button.LEDLine = &p.LEDLine
		}
		if c.Ignition.Chip == "" {
			c.Ignition.Chip = p.IgnitionChip
		}
		if c.Ignition.Line == nil {
			c.Ignition.Line = &p.IgnitionLine
		}
	}
	none := -1
	if c.Button.Line == nil {
		c.Button.Line = &none
	}
	if c.Button.LEDLine == nil {
		c.Button.LEDLine = &none
	}
	if c.Button.LEDChip == "" {
		c.Button.LEDChip = c.Button.Chip
	}
	if c.Button.LongPress == 0 {
		c.Button.LongPress = 2 * time.Second
	}
	if c.DataDir == "" {
		c.DataDir = "/var/lib/waybill"
	}
	if c.GPS.Source == "" {
		c.GPS.Source = "serial"
	}
	if c.GPS.Filter.Mode == "" {
		c.GPS.Filter.Mode = string(gps.DefaultFilterMode)
	}
	if c.GPS.Baud == "" {
		c.GPS.Baud = "auto"
	}
	if c.GPS.GPSDAddr == "" {
		c.GPS.GPSDAddr = "localhost:2947"
	}
	if c.GPS.Source == "replay" && c.GPS.ReplaySpeed == 0 {
		c.GPS.ReplaySpeed = 1
	}
	if c.Store.MaxMB == 0 {
		c.Store.MaxMB = 64
	}
	if c.Broker.ReconnectWindow == 0 {
		c.Broker.ReconnectWindow = 30 * time.Second
	}
	if c.Store.FixBatch == 0 {
		c.Store.FixBatch = 30
	}
	if c.Store.FixDelay == 0 {
		c.Store.FixDelay = 30 * time.Second
	}
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = "127.0.0.1:8080"
	}
	if c.HTTP.ReadTimeout == 0 {
		c.HTTP.ReadTimeout = 30 * time.Second
	}
	if c.HTTP.WriteTimeout == 0 {
		c.HTTP.WriteTimeout = 60 * time.Second
	}
	if c.HTTP.IdleTimeout == 0 {
		c.HTTP.IdleTimeout = 30 * time.Second
	}
	if c.HTTP.MaxConns == 0 {
		c.HTTP.MaxConns = 64
	}
	if c.HTTP.MaxStreams == 0 {
		c.HTTP.MaxStreams = 8
	}
	if c.Status.Interval == 0 {
		c.Status.Interval = 5 * time.Minute
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	c.Ignition.defaults()
	c.Odometer.defaults()
	return nil
}

// Validate checks what can be checked without touching files or the network (Check does the rest). It
// reports every problem at once.
func (c *Config) Validate() error {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if !filepath.IsAbs(c.DataDir) {
		add("data_dir %q must be an absolute path", c.DataDir)
	}
	for _, f := range []struct{ key, v string }{{"identity.cert", c.Identity.Cert}, {"identity.key", c.Identity.Key},
		{"identity.ca", c.Identity.CA}} {
		if f.v == "" {
			add("%s is required (the file from `waybill pki issue --role truck NAME`)", f.key)
		}
	}
	if len(c.Broker.URLs) == 0 {
		add("broker.urls is required, e.g. [\"mqtts://mqtt.example.com:8883\"]")
	}
	for _, u := range c.Broker.URLs {
		pu, err := url.Parse(strings.TrimSpace(u))
		switch {
		case err != nil || pu.Host == "":
			add("broker.urls: %q is not a URL like mqtts://host:8883", u)
		case pu.Scheme == "mqtt" || pu.Scheme == "tcp":
			if !c.Broker.AllowPlaintext {
				add("broker.urls: %q is plaintext: trucks talk to the broker over mutual TLS (mqtts://); "+
					"set broker.allow_plaintext = true only for local development", u)
			}
		case pu.Scheme != "mqtts" && pu.Scheme != "ssl" && pu.Scheme != "tls":
			add("broker.urls: %q has scheme %q, want mqtts", u, pu.Scheme)
		}
	}
	switch c.GPS.Source {
	case "serial":
		if c.GPS.Device == "" {
			add("gps.device is required for the serial source (or set board)")
		}
	case "gpsd":
	case "replay":
		if c.GPS.ReplayFile == "" {
			add("gps.replay_file is required for the replay source")
		}
	default:
		add("gps.source %q: want serial, gpsd or replay", c.GPS.Source)
	}
	switch c.GPS.Filter.Mode {
	case "", string(gps.FilterCurve), string(gps.FilterThresholds):
	default:
		add("gps.filter.mode %q: want curve (the default) or thresholds", c.GPS.Filter.Mode)
	}
	if c.GPS.Baud != "auto" {
		if n, err := strconv.Atoi(c.GPS.Baud); err != nil || n <= 0 {
			add("gps.baud %q: want auto or a rate such as 9600", c.GPS.Baud)
		}
	}
	p = append(p, c.checkLimits()...)
	if err := c.Odometer.validate(); err != nil {
		p = append(p, err.Error())
	}
	p = append(p, c.checkFilterOrder()...)
	if f := c.GPS.RolloverFloor; !f.IsZero() && (f.Before(firstRollover) || !f.Before(nextRollover)) {
		add("gps.rollover_floor %s is out of range: allowed %s..%s (dates before the floor are moved 1024 weeks "+
			"forward, so a floor in the future moves today's fixes 19.6 years ahead); remove it for the default",
			f.Format(time.DateOnly), firstRollover.Format(time.DateOnly), nextRollover.Add(-day).Format(time.DateOnly))
	}
	if c.HTTP.Listen != "off" {
		host, _, err := net.SplitHostPort(c.HTTP.Listen)
		if err != nil {
			add("http.listen %q: want host:port, e.g. 127.0.0.1:8080, or \"off\"", c.HTTP.Listen)
		} else if !isLoopback(host) && c.HTTP.Token == "" {
			add("http.listen %q is reachable from the network: set http.token (or WAYBILL_HTTP_TOKEN) so only "+
				"the cab's devices can act on orders", c.HTTP.Listen)
		}
		if c.HTTP.MaxConns > 0 && c.HTTP.MaxStreams >= c.HTTP.MaxConns {
			add("http.max_streams (%d) must be below http.max_conns (%d): streams hold connections", c.HTTP.MaxStreams, c.HTTP.MaxConns)
		}
	}
	if *c.Button.Line >= 0 && c.Button.Chip == "" {
		add("button.line %d needs button.chip, e.g. gpiochip0", *c.Button.Line)
	}
	if *c.Button.LEDLine >= 0 && c.Button.LEDChip == "" {
		add("button.led_line %d needs button.led_chip", *c.Button.LEDLine)
	}
	p = append(p, c.Ignition.validate()...)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		add("log.format %q: want text or json", c.Log.Format)
	}
	if len(p) > 0 {
		return errors.New("config: " + strings.Join(p, "; "))
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
