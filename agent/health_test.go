package agent

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps/gpssim"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// startAgentAt runs an agent whose simulated receiver reports GPS time gpsStart for its first fix, with tweak
// applied to the configuration, and returns it with its configuration and broker.
func startAgentAt(t *testing.T, gpsStart time.Time, tweak func(*Config)) (*Agent, Config, *sdktest.Broker) {
	t.Helper()
	return startAgentWith(t, gpsStart, tweak, Options{})
}

// startAgentWith is startAgentAt with options (a logger, an injected ignition line); Version and Ready are
// set here, and Logger when opts has none.
func startAgentWith(t *testing.T, gpsStart time.Time, tweak func(*Config), opts Options) (*Agent, Config, *sdktest.Broker) {
	t.Helper()
	return startAgentGPS(t, nil, gpsStart, tweak, opts)
}

// startAgentGPS is startAgentWith whose receiver stops when gpsCtx ends (nil: with the agent).
func startAgentGPS(t *testing.T, gpsCtx context.Context, gpsStart time.Time, tweak func(*Config), opts Options) (*Agent, Config, *sdktest.Broker) {
	t.Helper()
	b := sdktest.StartDevBroker(t, sdktest.Options{Dispatch: []string{"office"}})
	ctx, cancel := context.WithCancel(context.Background())
	if gpsCtx == nil {
		gpsCtx = ctx
	}
	var wg sync.WaitGroup
	p, err := gpssim.OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	sim := gpssim.New(gpssim.Config{Route: gpssim.RouteConfig{Seed: 3, LostFixRate: -1, TunnelLen: -1}, Speedup: 5, Start: gpsStart})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer p.Close()
		sim.Run(gpsCtx, p.Master)
	}()
	dir := t.TempDir()
	cfg, err := LoadConfig(writeConfig(t, dir, b, b.Truck("truck-0001"), p.Path, ""), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(&cfg)
	}
	ready := make(chan *Agent, 1)
	result := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		opts.Version, opts.Ready = "test", func(a *Agent) { ready <- a }
		if opts.Logger == nil {
			opts.Logger = testLogger(t)
		}
		result <- Run(ctx, cfg, opts)
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if err := <-result; err != nil {
			t.Errorf("agent stopped with %v", err)
		}
	})
	select {
	case a := <-ready:
		return a, cfg, b
	case err := <-result:
		result <- err
		t.Fatalf("agent did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("agent not ready within 20 s")
	}
	return nil, cfg, b
}

// readHealthz returns /healthz's status code and body.
func readHealthz(t *testing.T, a *Agent) (int, Status) {
	t.Helper()
	resp, err := http.Get("http://" + a.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s Status
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("/healthz body %q: %v", body, err)
	}
	return resp.StatusCode, s
}

// Issue 11.5: a receiver dated a year ahead, and one whose 2015 date the week-rollover correction moved to
// 2034, each disagree with the (plausible) system clock. /healthz answers 503 with the warning and the skew,
// the status message carries Health.ClockSkew, and `waybill-agent check` run beside the agent warns with the
// agent's warning without opening the receiver (issue 11.9).
func TestGPSDateDisagreesWithTheSystemClock(t *testing.T) {
	now := time.Now().UTC()
	cases := []struct {
		name     string
		gps      time.Time // the receiver's date for the first fix
		skew     time.Duration
		rollover bool
	}{
		{"a year ahead", now.AddDate(1, 0, 0), 365 * 24 * time.Hour, false},
		// 2015-03-01 is before the rollover floor (2026-01-01): moved forward by 1024 weeks to 2034.
		{"miscorrected by 1024 weeks", time.Date(2015, 3, 1, 12, 0, 0, 0, time.UTC),
			time.Date(2015, 3, 1, 12, 0, 0, 0, time.UTC).Add(1024 * 7 * 24 * time.Hour).Sub(now), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, cfg, _ := startAgentAt(t, tc.gps, nil)
			var code int
			var s Status
			sdktest.WaitFor(t, 20*time.Second, "/healthz with a clock warning", func() bool {
				code, s = readHealthz(t, a)
				return s.ClockWarning != ""
			})
			if code != http.StatusServiceUnavailable || s.Healthy {
				t.Errorf("/healthz %d, healthy %v; want 503", code, s.Healthy)
			}
			if !containsPrefix(s.Problems, "clock: ") {
				t.Errorf("problems %q lack the clock", s.Problems)
			}
			got := time.Duration(s.ClockSkew * float64(time.Second))
			if d := got - tc.skew; d < -2*24*time.Hour || d > 2*24*time.Hour {
				t.Errorf("clock_skew_s = %v (%v), want about %v", s.ClockSkew, got, tc.skew)
			}
			if tc.rollover != strings.Contains(s.ClockWarning, "1024 weeks") {
				t.Errorf("warning %q: mentions the rollover correction = %v, want %v", s.ClockWarning, !tc.rollover, tc.rollover)
			}
			if s.Fix == nil || s.Fix.Sats == 0 || s.Fix.HDOP == nil || s.Fix.Mode == "" {
				t.Errorf("/healthz fix = %+v; want sats, HDOP and mode", s.Fix)
			}
			// The status message: Health is what the client publishes (and round-trips through CBOR).
			h := a.health()
			st, err := sdk.UnmarshalStatus(mustMarshalStatus(t, &sdk.Status{State: sdk.StateOnline, Time: now, Health: &h}))
			if err != nil {
				t.Fatal(err)
			}
			if d := st.Health.ClockSkew - tc.skew; d < -2*24*time.Hour || d > 2*24*time.Hour {
				t.Errorf("status Health.ClockSkew = %v, want about %v", st.Health.ClockSkew, tc.skew)
			}
			// check beside the running agent: the store is locked, so the GPS comes from /healthz.
			cfg.HTTP.Listen = a.HTTPAddr()
			res := Check(context.Background(), cfg, CheckOptions{BrokerProbe: 5 * time.Second})
			r := findCheck(t, res, "gps")
			if r.Severity != Warn || !strings.Contains(r.Detail, "receiver not opened") || !strings.Contains(r.Detail, "disagree") {
				t.Errorf("check gps = %+v; want a warning from the running agent's /healthz", r)
			}
		})
	}
}

// The same dates without a running agent: check opens the receiver and compares its first fix's date with
// the system clock itself.
func TestCheckWarnsAboutAWrongGPSDate(t *testing.T) {
	now := time.Now().UTC()
	for name, start := range map[string]time.Time{
		"a year ahead":               now.AddDate(1, 0, 0),
		"miscorrected by 1024 weeks": time.Date(2015, 3, 1, 12, 0, 0, 0, time.UTC),
		"right":                      now,
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			defer func() { cancel(); wg.Wait() }()
			p, err := gpssim.OpenPTY()
			if err != nil {
				t.Fatal(err)
			}
			sim := gpssim.New(gpssim.Config{Route: gpssim.RouteConfig{Seed: 3, LostFixRate: -1, TunnelLen: -1}, Speedup: 5, Start: start})
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer p.Close()
				sim.Run(ctx, p.Master)
			}()
			r := probeGPS(ctx, GPSConfig{Source: "serial", Device: p.Path, Baud: "9600"}, 10*time.Second, time.Now)
			wantWarn := name != "right"
			if (r.Severity == Warn) != wantWarn || wantWarn && !strings.Contains(r.Detail, "disagree") {
				t.Fatalf("probeGPS = %+v; want a warning: %v", r, wantWarn)
			}
			if wantWarn && strings.Contains(name, "1024") != strings.Contains(r.Detail, "rollover_floor") {
				t.Errorf("detail %q: the rollover correction is not named (or named when none happened)", r.Detail)
			}
			if !wantWarn && r.Severity != OK {
				t.Errorf("probeGPS = %+v", r)
			}
		})
	}
}

// A healthy agent answers 200 (fixes flowing, link up, clocks agreeing); the link going down makes it 503
// with the link among the problems, and the body still carries everything.
func TestHealthzSemantics(t *testing.T) {
	a, _, b := startAgentAt(t, time.Time{}, nil)
	var code int
	var s Status
	sdktest.WaitFor(t, 20*time.Second, "/healthz 200", func() bool {
		code, s = readHealthz(t, a)
		return code == http.StatusOK
	})
	if !s.Healthy || len(s.Problems) != 0 || s.ClockWarning != "" || s.Fix == nil || s.Fix.Sats == 0 {
		t.Fatalf("healthy /healthz = %+v", s)
	}
	b.Stop()
	sdktest.WaitFor(t, 20*time.Second, "/healthz 503 with the link down", func() bool {
		code, s = readHealthz(t, a)
		return code == http.StatusServiceUnavailable
	})
	if s.Healthy || !containsPrefix(s.Problems, "link: ") || s.Truck == "" || s.Fix == nil {
		t.Errorf("/healthz with the link down = %+v", s)
	}
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

func findCheck(t *testing.T, res []CheckResult, prefix string) CheckResult {
	t.Helper()
	for _, r := range res {
		if strings.HasPrefix(r.Name, prefix) {
			return r
		}
	}
	t.Fatalf("no %q check in %+v", prefix, res)
	return CheckResult{}
}

func mustMarshalStatus(t *testing.T, s *sdk.Status) []byte {
	t.Helper()
	b, err := s.MarshalBody()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
