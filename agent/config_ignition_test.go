package agent

import (
	"strings"
	"testing"
	"time"
)

// TestIgnitionConfig: no ignition input unless a board or the file names a line; the bias pulls toward off
// by default; a line without a chip, a bad line or bias, and a debounce without its unit or out of range
// are each one message naming the key; a typo suggests the key.
func TestIgnitionConfig(t *testing.T) {
	c, err := loadString(t, baseConfig)
	if err != nil {
		t.Fatal(err)
	}
	if ig := c.Ignition; *ig.Line != -1 || ig.Chip != "" || ig.Bias != "pull-up" || ig.Debounce != time.Second || ig.ActiveHigh {
		t.Errorf("defaults: %+v (line %d), want no input, pull-up, 1s", ig, *ig.Line)
	}
	c, err = loadString(t, baseConfig+"[ignition]\nchip = \"gpiochip0\"\nline = 5\nactive_high = true\ndebounce = \"500ms\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if ig := c.Ignition; *ig.Line != 5 || ig.Chip != "gpiochip0" || ig.Bias != "pull-down" || ig.Debounce != 500*time.Millisecond {
		t.Errorf("set: %+v (line %d), want line 5 on gpiochip0, pull-down (active high), 500ms", ig, *ig.Line)
	}
	// Every board without a documented input has none; a file's line = -1 turns a board's off.
	for _, board := range []string{"rpi4", "openwrt-armv7"} {
		c, err := loadString(t, "board = \""+board+"\"\n"+baseConfig)
		if err != nil || *c.Ignition.Line != -1 {
			t.Errorf("board %s: %v, ignition line %v, want none", board, err, c.Ignition.Line)
		}
	}
	for _, bad := range []struct{ lines, want string }{
		{"line = 3", "ignition.line 3 needs ignition.chip, e.g. gpiochip0"},
		{"chip = \"gpiochip0\"\nline = -7", "ignition.line -7: want the line's offset on the chip (gpioinfo lists them), or -1"},
		{"bias = \"up\"", `ignition.bias "up": want pull-up, pull-down or none`},
		{"debounce = \"10ms\"", "ignition.debounce = 10ms is out of range: allowed 100ms..30s"},
		{"debounce = \"2m\"", "ignition.debounce = 2m is out of range: allowed 100ms..30s"},
		{"debounce = 1", "ignition.debounce: a duration needs its unit"},
		{"debounse = \"1s\"", "ignition.debounse (did you mean ignition.debounce?)"},
		{"active_low = true", "ignition.active_low (did you mean ignition.active_high?)"},
	} {
		_, err := loadString(t, withLine("ignition", bad.lines))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("[ignition] %s: %v\nwant %q", bad.lines, err, bad.want)
		}
	}
}
