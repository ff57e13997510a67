package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps/gpssim"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fleetView is a verifying dispatch-side subscriber for tests.
type fleetView struct {
	mu       sync.Mutex
	fixes    map[string]sdk.Fix // truck/epoch/seq
	events   []*sdk.Event
	statuses []*sdk.Status
	rejected int
}

func (v *fleetView) counts() (fixes, events int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.fixes), len(v.events)
}

func startFleetView(t *testing.T, ctx context.Context, wg *sync.WaitGroup, b *sdktest.Broker, cl sdktest.Client) (*fleetView, *transport.Conn) {
	t.Helper()
	ver := cl.Verifier(t, sdk.VerifierConfig{})
	v := &fleetView{fixes: map[string]sdk.Fix{}}
	var topics sdk.Topics
	conn, err := transport.New(transport.Config{Brokers: []string{"mqtts://" + b.Addr}, ClientID: cl.Name,
		CertFile: cl.CertFile, KeyFile: cl.KeyFile, CAFile: cl.CAFile,
		Subscriptions: []transport.Subscription{{Topic: topics.FleetFilter(sdk.KindTelemetry), QoS: 1},
			{Topic: topics.FleetFilter(sdk.KindEvents), QoS: 1}, {Topic: topics.FleetFilter(sdk.KindStatus), QoS: 1}},
		OnPublish: func(ctx context.Context, m transport.Message) error {
			msg, err := ver.Verify(ctx, m.Topic, m.Payload)
			v.mu.Lock()
			defer v.mu.Unlock()
			switch {
			case err != nil && msg == nil:
				v.rejected++
			case err != nil: // duplicate
			case msg.Telemetry != nil:
				for _, f := range msg.Telemetry.Fixes {
					v.fixes[fmt.Sprintf("%s/%x/%d", msg.Sender, msg.Telemetry.Epoch, f.Seq)] = f.Fix
				}
			case msg.Event != nil:
				v.events = append(v.events, msg.Event)
			case msg.Status != nil:
				v.statuses = append(v.statuses, msg.Status)
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); conn.Run(ctx) }()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := conn.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	return v, conn
}

// writeConfig writes an agent configuration for a test truck.
func writeConfig(t *testing.T, dir string, b *sdktest.Broker, cl sdktest.Client, gpsDevice string, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf(`data_dir = %q
allow_test_timings = true
[identity]
cert = %q
key = %q
ca = %q
[broker]
urls = ["mqtts://%s"]
keep_alive = "5s"
reconnect_window = "1s"
[gps]
source = "serial"
device = %q
baud = "9600"
[gps.filter]
period = "2s"
min_interval = "1s"
[store]
fix_batch = 5
fix_delay = "1s"
[http]
listen = "127.0.0.1:0"
[status]
interval = "2s"
%s`, filepath.Join(dir, "data"), cl.CertFile, cl.KeyFile, cl.CAFile, b.Addr, gpsDevice, extra)
	path := filepath.Join(dir, "agent.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startSim runs the GPS simulator on a new pseudo-terminal and returns its path.
func startSim(t *testing.T, ctx context.Context, wg *sync.WaitGroup, seed uint64, speedup float64) string {
	t.Helper()
	p, err := gpssim.OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	sim := gpssim.New(gpssim.Config{Route: gpssim.RouteConfig{Seed: seed, LostFixRate: -1, TunnelLen: -1}, Speedup: speedup})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer p.Close()
		sim.Run(ctx, p.Master)
	}()
	return p.Path
}

// TestAgentEndToEnd runs the agent in-process: GPS simulator on a pty -> agent -> real Mosquitto with
// mutual TLS -> a verifying consumer; an order and a proof of delivery; /healthz and /metrics; and a stop
// within the bound that loses nothing committed.
func TestAgentEndToEnd(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	truckCl, officeCl := b.Truck("truck-0001"), b.ClientFiles("office")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	view, office := startFleetView(t, ctx, &wg, b, officeCl)

	dir := t.TempDir()
	dev := startSim(t, ctx, &wg, 1, 5)
	cfg, err := LoadConfig(writeConfig(t, dir, b, truckCl, dev, ""), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	agentCtx, stopAgent := context.WithCancel(ctx)
	ready := make(chan *Agent, 1)
	result := make(chan error, 1)
	go func() {
		result <- Run(agentCtx, cfg, Options{Version: "test", Logger: testLogger(t), Ready: func(a *Agent) { ready <- a }})
	}()
	var a *Agent
	select {
	case a = <-ready:
	case err := <-result:
		t.Fatalf("agent did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("agent not ready within 20 s")
	}

	// Fixes flow to the consumer.
	sdktest.WaitFor(t, 30*time.Second, "10 fixes at the consumer", func() bool { n, _ := view.counts(); return n >= 10 })

	// An order from dispatch reaches the order book; the driver's delivery reaches dispatch.
	signer := officeCl.Signer(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	o := sdk.Order{ID: "o-1", Revision: 1, Truck: "truck-0001", Created: now, Expires: now.Add(time.Hour),
		Recipient: "R", Address: "A", Lat: 52.52, Lon: 13.40, RadiusM: 50, Status: sdk.OrderActive}
	payload, _ := signer.SignOrder(&o)
	topic, _ := sdk.Topics{}.Order("truck-0001", "o-1")
	if err := office.Publish(ctx, topic, payload, transport.PublishOptions{QoS: 1}); err != nil {
		t.Fatal(err)
	}
	sdktest.WaitFor(t, 20*time.Second, "order in the book", func() bool {
		es, _ := a.Book().Orders()
		return len(es) == 1
	})
	// The driver's delivery through the HTTP hook on the agent's listener: answered once the proof is on disk.
	resp, err := http.Post("http://"+a.HTTPAddr()+"/api/orders/o-1/delivered", "application/json", strings.NewReader(`{"via":"http"}`))
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		State string `json:"state"`
		Event struct {
			Kind string   `json:"kind"`
			Fix  *sdk.Fix `json:"fix"`
		} `json:"event"`
	}
	json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if resp.StatusCode != 200 || res.State != "delivered" || res.Event.Fix == nil {
		t.Fatalf("hook answered %d %+v", resp.StatusCode, res)
	}
	if page := get(t, "http://"+a.HTTPAddr()+"/"); !strings.Contains(page, "<html") {
		t.Fatalf("driver page not served: %.200s", page)
	}
	sdktest.WaitFor(t, 20*time.Second, "delivered event", func() bool {
		view.mu.Lock()
		defer view.mu.Unlock()
		for _, e := range view.events {
			if e.Kind == sdk.EventDelivered && e.OrderID == "o-1" {
				return true
			}
		}
		return false
	})

	// Local endpoints.
	base := "http://" + a.HTTPAddr()
	var st Status
	getJSON(t, base+"/healthz", &st)
	if st.Truck != "truck-0001" || !st.Connected || !strings.HasPrefix(st.GPS, "ok") || st.CertDaysLeft < 300 {
		t.Fatalf("healthz = %+v", st)
	}
	if st.CRL.Loaded {
		t.Fatalf("healthz reports a CRL before any was configured or published: %+v", st.CRL)
	}
	metrics := get(t, base+"/metrics")
	for _, m := range []string{"waybill_queue_records{lane=\"normal\"}", "waybill_link_up 1", "waybill_upload_fixes_total",
		"waybill_gps_fix_age_seconds", "waybill_cert_days_left", "waybill_crl_number -1"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
	statusWith := func(pred func(*sdk.Health) bool) bool {
		view.mu.Lock()
		defer view.mu.Unlock()
		for _, s := range view.statuses {
			if s.State == sdk.StateOnline && s.Health != nil && s.Health.Version == "test" && pred(s.Health) {
				return true
			}
		}
		return false
	}
	if !statusWith(func(h *sdk.Health) bool { return h.CRL != nil && !h.CRL.Loaded }) {
		t.Error("no online status with health saying the truck has no CRL")
	}

	// The fleet CRL published by the administrator reaches the running agent: healthz, metrics, the status
	// and the cache in the data directory say so.
	b.PublishCRL()
	sdktest.WaitFor(t, 20*time.Second, "healthz reporting CRL #1", func() bool {
		var st Status
		getJSON(t, base+"/healthz", &st)
		return st.CRL.Loaded && st.CRL.Number != nil && st.CRL.Number.Int64() == 1 && st.CRL.Received.Applied == 1
	})
	if m := get(t, base+"/metrics"); !strings.Contains(m, "waybill_crl_number 1\n") {
		t.Errorf("metrics lack waybill_crl_number 1")
	}
	sdktest.WaitFor(t, 20*time.Second, "a status reporting CRL #1", func() bool {
		return statusWith(func(h *sdk.Health) bool { return h.CRL != nil && h.CRL.Loaded && h.CRL.Number.Int64() == 1 })
	})
	if _, err := os.Stat(filepath.Join(cfg.DataDir, CRLCacheFile)); err != nil {
		t.Errorf("the fleet CRL is not kept in the data directory: %v", err)
	}

	// Ignition off: stops within the bound.
	start := time.Now()
	stopAgent()
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("agent stopped with %v", err)
		}
	case <-time.After(StopTimeout + 5*time.Second):
		t.Fatal("agent did not stop within its bound")
	}
	n, e := view.counts()
	t.Logf("stopped in %s; consumer got %d fixes and %d events; agent reported %d, stored %d", time.Since(start).Round(time.Millisecond),
		n, e, a.fixes.reported.Load(), a.fixes.stored.Load())
	if a.fixes.storeErrors.Load() != 0 {
		t.Fatalf("%d fixes could not be stored", a.fixes.storeErrors.Load())
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	if err := json.NewDecoder(bytes.NewReader([]byte(get(t, url)))).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// testLogger writes the agent's log into the test output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
