package agent

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/boards"
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
