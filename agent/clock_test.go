package agent

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// fakeClock is a system clock (wall) and a monotonic clock that tests move independently, as NTP or a
// fake-hwclock restore moves the one and not the other.
type fakeClock struct {
	sys  time.Time
	mono time.Duration
}

// newTestClock returns a clock on f with the given floor and the buffer its log goes to.
func newTestClock(f *fakeClock, floor time.Time) (*clock, *bytes.Buffer) {
	var logs bytes.Buffer
	c := newClock(floor, func() time.Time { return f.sys }, slog.New(slog.NewTextHandler(&logs, nil)))
	c.elapsed = func() time.Duration { return f.mono }
	return c, &logs
}

var (
	testFloor = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	testGPS   = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
)

// A unit without a real-time clock boots in 1970: until its clock is plausible, the agent's time is the last
// GPS time carried forward by the elapsed time; once plausible, the system clock wins.
func TestClockUsesGPSTimeUntilTheSystemClockIsPlausible(t *testing.T) {
	f := &fakeClock{sys: time.Date(1970, 1, 1, 0, 0, 10, 0, time.UTC), mono: time.Minute}
	c, _ := newTestClock(f, testFloor)
	if c.plausible() || !c.Now().Equal(f.sys) {
		t.Fatalf("before any fix: %v (plausible %v)", c.Now(), c.plausible())
	}
	c.observe(testGPS)
	f.sys, f.mono = f.sys.Add(5*time.Second), f.mono+5*time.Second
	if got := c.Now(); !got.Equal(testGPS.Add(5 * time.Second)) {
		t.Fatalf("with GPS: %v, want %v", got, testGPS.Add(5*time.Second))
	}
	f.mono += time.Hour // a stale fix still beats 1970
	if got := c.Now(); !got.Equal(testGPS.Add(time.Hour + 5*time.Second)) {
		t.Fatalf("with a stale fix: %v", got)
	}
	f.sys = testGPS.Add(time.Hour + 7*time.Second) // NTP set the clock
	if !c.plausible() || !c.Now().Equal(f.sys) {
		t.Fatalf("after NTP: %v", c.Now())
	}
}

// A plausible system clock that disagrees with a recent fix by more than MaxClockSkew is wrong: Now is
// GPS time carried forward.
func TestClockOverrulesASystemClockThatDisagreesWithGPS(t *testing.T) {
	cases := []struct {
		name    string
		offset  time.Duration // system clock minus true time
		fixAge  time.Duration // monotonic time since the fix
		wantGPS bool
	}{
		{"agrees", 0, time.Second, false},
		{"ahead 9 minutes", 9 * time.Minute, time.Second, false},
		{"behind 9 minutes", -9 * time.Minute, time.Second, false},
		{"ahead 11 minutes", 11 * time.Minute, time.Second, true},
		{"behind 11 minutes", -11 * time.Minute, time.Second, true},
		{"weeks behind (fake-hwclock)", -3 * 7 * 24 * time.Hour, time.Second, true},
		{"weeks behind, fix 4 minutes old", -3 * 7 * 24 * time.Hour, 4 * time.Minute, true},
		{"ahead 11 minutes, fix stale", 11 * time.Minute, GPSTimeFresh + time.Second, false},
		{"weeks behind, fix stale", -3 * 7 * 24 * time.Hour, time.Hour, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeClock{sys: testGPS.Add(tc.offset), mono: time.Hour}
			c, logs := newTestClock(f, testFloor)
			c.observe(testGPS)
			f.sys, f.mono = f.sys.Add(tc.fixAge), f.mono+tc.fixAge
			want, wantLogs := f.sys, 0
			if tc.wantGPS {
				want, wantLogs = testGPS.Add(tc.fixAge), 1
			}
			for i := 0; i < 3; i++ { // and logs once, not at every call
				if got := c.Now(); !got.Equal(want) {
					t.Fatalf("Now() = %v, want %v", got, want)
				}
			}
			if c.plausible() == tc.wantGPS {
				t.Errorf("plausible() = %v", c.plausible())
			}
			if n := strings.Count(logs.String(), "level=WARN"); n != wantLogs {
				t.Errorf("%d warnings, want %d:\n%s", n, wantLogs, logs)
			}
		})
	}
}

// A unit that restored a clock weeks behind signs with GPS time, carried forward between fixes, and goes
// back to its system clock, with one log line each way, once NTP has set it.
func TestClockRecovers(t *testing.T) {
	f := &fakeClock{sys: testGPS.Add(-14 * 24 * time.Hour), mono: 10 * time.Second}
	c, logs := newTestClock(f, testFloor)
	if !c.Now().Equal(f.sys) {
		t.Fatal("before any fix: not the system clock")
	}
	c.observe(testGPS)
	f.sys, f.mono = f.sys.Add(30*time.Second), f.mono+30*time.Second
	if got := c.Now(); !got.Equal(testGPS.Add(30 * time.Second)) {
		t.Fatalf("weeks behind: %v, want GPS time", got)
	}
	c.observe(testGPS.Add(30 * time.Second)) // the next fix
	f.sys, f.mono = f.sys.Add(40*time.Second), f.mono+40*time.Second
	if got := c.Now(); !got.Equal(testGPS.Add(70 * time.Second)) {
		t.Fatalf("carried forward: %v", got)
	}
	if !strings.Contains(logs.String(), "system clock disagrees with GPS time") {
		t.Errorf("no warning when GPS time took over:\n%s", logs)
	}
	f.sys = testGPS.Add(70*time.Second + 300*time.Millisecond) // NTP stepped the clock; monotonic time did not move
	if got := c.Now(); !got.Equal(f.sys) || !c.plausible() {
		t.Fatalf("after NTP: %v, want the system clock %v", got, f.sys)
	}
	if !strings.Contains(logs.String(), "agrees with GPS time again") {
		t.Errorf("no log line when the clocks agreed again:\n%s", logs)
	}
	c.Now()
	if n := strings.Count(logs.String(), "level=WARN"); n != 2 {
		t.Errorf("%d log lines, want 2:\n%s", n, logs)
	}
}

// When the fix goes stale while the system clock is still wrong, the clock falls back to the system clock
// and says so once.
func TestClockStaleFixEndsOverrule(t *testing.T) {
	f := &fakeClock{sys: testGPS.Add(-time.Hour), mono: 0}
	c, logs := newTestClock(f, testFloor)
	c.observe(testGPS)
	if got := c.Now(); !got.Equal(testGPS) {
		t.Fatalf("an hour behind: %v", got)
	}
	f.sys, f.mono = f.sys.Add(GPSTimeFresh+time.Minute), GPSTimeFresh+time.Minute
	if got := c.Now(); !got.Equal(f.sys) {
		t.Fatalf("fix stale: %v, want the system clock", got)
	}
	c.Now()
	if !strings.Contains(logs.String(), "no recent GPS fix") || strings.Count(logs.String(), "level=WARN") != 2 {
		t.Errorf("logs:\n%s", logs)
	}
}
