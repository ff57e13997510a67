package office_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/dispatch"
	service "github.com/waybill-iot/waybill/sdk/dispatch/office"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/embedded"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// logger logs text to w.
func logger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// officePKI makes a fleet PKI with a dispatch identity "office" (and a server certificate "office-api"
// for HTTPS) and returns the PKI and the office's files.
func officePKI(t *testing.T) (*pki.PKI, sdktest.Client) {
	t.Helper()
	p := sdktest.NewPKI(t)
	for _, id := range []struct {
		role pki.Role
		name string
	}{{pki.RoleDispatch, "office"}, {pki.RoleBroker, "office-api"}} {
		if _, err := p.Issue(id.role, id.name, pki.IssueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return p, sdktest.Client{Name: "office", CAFile: p.CAPath(), CertFile: p.CertPath("office"), KeyFile: p.KeyPath("office")}
}

// openEmbedded opens an embedded store in a temporary directory, closed when the test ends.
func openEmbedded(t *testing.T, cl sdktest.Client) storage.Store {
	t.Helper()
	cert, key := cl.CertKey(t)
	st, err := embedded.Open(embedded.Options{Dir: t.TempDir(), Outbox: dispatch.OutboxConfig{Certificate: cert, Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// startBareOffice runs a service on st whose broker is unreachable (the HTTP side does not need it) until
// the test ends, and returns its base URL ("http://" or, with Config.TLS or TLSCertFile, "https://").
func startBareOffice(t *testing.T, office sdktest.Client, st storage.Store, change func(*service.Config)) string {
	t.Helper()
	cfg := service.Config{Store: st, Token: token, Listen: "127.0.0.1:0",
		Dispatch: dispatch.Config{Transport: transport.Config{Brokers: []string{"mqtts://127.0.0.1:1"}, CertFile: office.CertFile,
			KeyFile: office.KeyFile, CAFile: office.CAFile, BackoffMin: time.Second, BackoffMax: time.Second}}}
	var err error
	if cfg.Dispatch.CA, err = pki.LoadCertificates(office.CAFile); err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(&cfg)
	}
	svc, err := service.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("service Run: %v", err)
		}
	})
	scheme := "http://"
	if cfg.TLS != nil || cfg.TLSCertFile != "" {
		scheme = "https://"
	}
	return scheme + svc.Addr()
}

// fetch GETs url with headers ("Name: value") and returns the code, the body and Retry-After.
func fetch(t *testing.T, url string, headers ...string) (code int, body, retry string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Retry-After")
}

// TestPublicRateLimit: the tracking pages and their files share one token bucket per client: right and
// wrong tokens alike cost a request, beyond the burst they get 429 with Retry-After until the bucket
// refills; the API and requests with the token are not limited; /metrics counts the refusals. Behind a
// trusted proxy each customer (X-Forwarded-For) has their own bucket, and a forged header does not help.
func TestPublicRateLimit(t *testing.T) {
	_, officeCl := officePKI(t)
	clk := &testClock{t: time.Now()}
	logs := &sdktest.SyncBuffer{}
	st := openEmbedded(t, officeCl)
	base := startBareOffice(t, officeCl, st, func(c *service.Config) {
		c.TrackingRate, c.TrackingBurst, c.Clock, c.Logger = service.Rate{N: 6, Per: time.Minute}, 4, clk.Now,
			logger(logs)
	})
	var created struct{ Tracking struct{ URL string } }
	json.Unmarshal(sdktest.DoJSON(t, "POST", base+"/api/orders", token, map[string]any{"truck": "truck-1", "id": "o-1",
		"address": "1 Quay St", "lat": 51.5, "lon": -0.1}, http.StatusCreated), &created)
	wrong := base + "/t/AAAAAAAAAAAAAAAAAAAAAA"
	for i, c := range []struct {
		url  string
		want int
	}{{base + created.Tracking.URL, 200}, {base + created.Tracking.URL + "/status", 200}, {base + "/console/track.js", 200},
		{wrong, 404}, {wrong, 429}, {base + created.Tracking.URL + "/status", 429}, {base + "/console/map.js", 429}} {
		code, body, retry := fetch(t, c.url)
		if code != c.want {
			t.Fatalf("request %d, %s: %d %s, want %d", i+1, c.url, code, body, c.want)
		}
		if code == 429 && retry != "10" {
			t.Fatalf("429 with Retry-After %q, want 10 (one request per 10 s)", retry)
		}
	}
	// The office's own requests are not limited, nor is the API.
	for _, p := range []string{"/console/map.js", created.Tracking.URL + "/status"} {
		if code, body, _ := fetch(t, base+p, "Authorization: Bearer "+token); code != 200 {
			t.Fatalf("%s with the token: %d %s", p, code, body)
		}
	}
	for range 20 {
		sdktest.DoJSON(t, "GET", base+"/api/orders", token, nil, 200)
	}
	metrics := string(sdktest.DoJSON(t, "GET", base+"/metrics", token, nil, 200))
	for _, m := range []string{"waybill_dispatch_public_limited_total 3\n", "waybill_dispatch_public_clients 1\n"} {
		if !strings.Contains(metrics, m) {
			t.Fatalf("metrics lack %q:\n%s", m, metrics)
		}
	}
	if n := strings.Count(logs.String(), "over the rate limit"); n != 1 {
		t.Fatalf("%d log lines for one run of refusals, want 1:\n%s", n, logs)
	}
	clk.Add(10 * time.Second)
	if code, _, _ := fetch(t, wrong); code != 404 {
		t.Fatalf("after 10 s: %d, want 404 (one token back)", code)
	}
	if code, _, _ := fetch(t, wrong); code != 429 {
		t.Fatalf("the request after: %d, want 429", code)
	}
	if code, _, _ := fetch(t, wrong, "X-Forwarded-For: 198.51.100.1"); code != 429 {
		t.Fatal("X-Forwarded-For from a client that is not a trusted proxy bought a fresh bucket")
	}
	if !strings.Contains(logs.String(), "trusted_proxies") {
		t.Fatalf("no warning about X-Forwarded-For from an untrusted address:\n%s", logs)
	}

	// Behind a trusted proxy (loopback here) the customers' addresses count, each on its own.
	base = startBareOffice(t, officeCl, openEmbedded(t, officeCl), func(c *service.Config) {
		c.TrackingRate, c.TrackingBurst = service.Rate{N: 1, Per: time.Hour}, 2
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	for _, c := range []struct {
		xff  string
		want int
	}{{"198.51.100.1", 404}, {"198.51.100.1", 404}, {"198.51.100.1", 429}, {"198.51.100.2", 404},
		{"203.0.113.9, 198.51.100.1", 429}, // what the client wrote itself is not believed
		{"198.51.100.2", 404}, {"198.51.100.2", 429}} {
		if code, _, _ := fetch(t, base+"/t/AAAAAAAAAAAAAAAAAAAAAA", "X-Forwarded-For: "+c.xff); code != c.want {
			t.Fatalf("from %s: %d, want %d", c.xff, code, c.want)
		}
	}
}
