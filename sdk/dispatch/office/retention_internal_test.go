package office

import (
	"testing"
	"time"
)

func TestParseRetention(t *testing.T) {
	day := 24 * time.Hour
	for in, want := range map[string]time.Duration{"400d": 400 * day, "0": 0, "0d": 0, "7d": 7 * day, "720h": 720 * time.Hour, " 30d ": 30 * day} {
		if got, err := ParseRetention(in); err != nil || got != want {
			t.Errorf("ParseRetention(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "400", "1.5d", "-3d", "d", "1y", "400 days", "-1h"} {
		if got, err := ParseRetention(in); err == nil {
			t.Errorf("ParseRetention(%q) = %v, want an error", in, got)
		}
	}
}

// KeepFixes has a floor: zero keeps for ever, anything shorter than a week is refused.
func TestKeepFixesFloor(t *testing.T) {
	for _, c := range []struct {
		keep time.Duration
		ok   bool
	}{{0, true}, {time.Second, false}, {30 * time.Minute, false}, {MinKeepFixes - time.Second, false}, {MinKeepFixes, true},
		{400 * 24 * time.Hour, true}, {-time.Hour, false}} {
		cfg := Config{KeepFixes: c.keep}
		if err := cfg.checkRetention(); (err == nil) != c.ok {
			t.Errorf("KeepFixes %v: %v, want ok %v", c.keep, err, c.ok)
		}
	}
}
