package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/waybill-iot/waybill/gps/gpssim"
	"github.com/waybill-iot/waybill/sdk/brokerconf"
	"github.com/waybill-iot/waybill/sdk/devbroker"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest/faultproxy"
)

const demoUsage = `Usage: waybill demo [--dir DIR] [--agent PATH] [--keep] [--timeout D]

Runs the whole system on this machine: a fleet PKI, a broker (Mosquitto when installed, else the embedded
development broker), three waybill-agent processes whose GPS receivers are simulators on pseudo-terminals,
and the dispatch office (the process of ` + "`waybill dispatch run`" + `, inside this one: embedded storage in
DIR/dispatch, its console and API on a free loopback port, a random token in DIR/dispatch.token).
The demo creates an order for each truck and one more that it cancels, through the office's HTTP API; each
driver confirms the delivery through the agent's HTTP hook when the truck arrives; one truck's link is cut
for 30 s. The office commits what the trucks send to its storage and receipts it; a truck deletes a record
only on that signed receipt. It prints the console's address, a live log and a summary, and exits 0 when
everything was delivered, every proof verified by the office, every fix a truck stored is in the office's
archive and every truck's queue is empty with nothing waiting for a receipt.
--keep (or DEMO_KEEP=1) keeps everything running after the summary, with the console's and the driver
pages' addresses, until Ctrl-C.
`

// demoTruck is one simulated truck.
type demoTruck struct {
	name     string
	start    gpssim.LatLon
	seed     uint64
	route    *gpssim.Route
	pty      *gpssim.PTY
	httpAddr string
	cmd      *exec.Cmd
	exited   chan struct{}
	order    string // its order id
	arriveAt time.Duration
}

type demo struct {
	s       streams
	dir     string
	t0      time.Time
	office  *demoOffice // dispatch: the office process's service, and the demo's client for its API
	stopGPS func()      // stops the GPS simulators: the trucks park

	mu          sync.Mutex        // guards the fields below and output
	proof       map[string]bool   // order id -> proof verified
	proofFailed map[string]string // order id -> why a proof did not check out (kept even if a later one did)
	acted       map[string]bool   // order id -> driver acted
	notes       []string          // problems for the summary
	// The cut truck while its link is down: records that waited on its disk for their receipt (the most at
	// once), and of them those already sent and waiting for a receipt when the link went.
	cutHeld, cutUnreceipted int

	quiet bool // the summary is being printed
}

func (d *demo) logf(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.quiet {
		return
	}
	fmt.Fprintf(d.s.out, "[%5.1fs] %s\n", time.Since(d.t0).Seconds(), fmt.Sprintf(format, args...))
}

func runDemo(ctx context.Context, s streams, args []string) error {
	fs := pkiFlagSet("demo")
	dir := fs.String("dir", filepath.Join("dist", "demo"), "working directory (removed and created afresh)")
	agentBin := fs.String("agent", "", "the waybill-agent binary (default: next to this one, else on PATH)")
	keep := fs.Bool("keep", os.Getenv("DEMO_KEEP") == "1", "keep running until Ctrl-C")
	timeout := fs.Duration("timeout", 110*time.Second, "give up after this long")
	if _, err := parseSubcommandFlags(s, fs, demoUsage, args); err != nil {
		return err
	}
	bin, err := findAgent(*agentBin)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(*dir); err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	d := &demo{s: s, dir: abs, t0: time.Now(), proof: map[string]bool{}, proofFailed: map[string]string{}, acted: map[string]bool{}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	return d.run(ctx, &wg, bin, *keep, *timeout)
}

func findAgent(flagged string) (string, error) {
	if flagged != "" {
		return flagged, nil
	}
	if self, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(self), "waybill-agent"); fileExists(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath("waybill-agent"); err == nil {
		return p, nil
	}
	return "", errors.New("waybill-agent not found next to waybill or on PATH: run `make build` (or pass --agent)")
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func (d *demo) run(ctx context.Context, wg *sync.WaitGroup, bin string, keep bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	// 1. The fleet PKI.
	p, err := pki.Init(pki.Config{Dir: filepath.Join(d.dir, "pki")}, pki.CAOptions{Fleet: "demo"})
	if err != nil {
		return err
	}
	trucks := []*demoTruck{
		{name: "truck-01", start: gpssim.LatLon{Lat: 52.5200, Lon: 13.4050}, seed: 1},
		{name: "truck-02", start: gpssim.LatLon{Lat: 52.5050, Lon: 13.3700}, seed: 2},
		{name: "truck-03", start: gpssim.LatLon{Lat: 52.5350, Lon: 13.4300}, seed: 3},
	}
	for _, issue := range []struct {
		role pki.Role
		name string
	}{{pki.RoleBroker, "mqtt"}, {pki.RoleDispatch, "office"}} {
		if _, err := p.Issue(issue.role, issue.name, pki.IssueOptions{}); err != nil {
			return err
		}
	}
	for _, t := range trucks {
		if _, err := p.Issue(pki.RoleTruck, t.name, pki.IssueOptions{}); err != nil {
			return err
		}
	}
	d.logf("fleet PKI in %s: CA, broker, dispatch office, %d trucks (ECDSA P-256)", filepath.Join(d.dir, "pki"), len(trucks))

	// 2. The broker.
	brokerAddr, err := d.startBroker(ctx, wg, p)
	if err != nil {
		return err
	}
	// truck-03 reaches the broker through a proxy that can cut its link.
	proxy, err := faultproxy.Start(faultproxy.Config{Target: brokerAddr})
	if err != nil {
		return err
	}
	defer proxy.Close(context.Background())

	// 3. GPS simulators and agents.
	now := time.Now()
	gpsCtx, stopGPS := context.WithCancel(ctx)
	defer stopGPS()
	d.stopGPS = stopGPS
	for i, t := range trucks {
		t.route = gpssim.NewRoute(gpssim.RouteConfig{Start: t.start, Seed: t.seed, TunnelLen: -1})
		if t.pty, err = gpssim.OpenPTY(); err != nil {
			return err
		}
		sim := gpssim.New(gpssim.Config{Route: gpssim.RouteConfig{Start: t.start, Seed: t.seed, TunnelLen: -1}, Start: now})
		wg.Add(1)
		go func(t *demoTruck) {
			defer wg.Done()
			_ = sim.Run(gpsCtx, t.pty.Master)
		}(t)
		t.httpAddr = freeAddr()
		// truck-03 arrives while its link is cut (12 s to 42 s): its driver confirms offline, and the proof
		// reaches dispatch once the link is back.
		t.arriveAt = []time.Duration{30 * time.Second, 40 * time.Second, 25 * time.Second}[i]
		broker := brokerAddr
		if t.name == "truck-03" {
			broker = proxy.Addr()
		}
		if err := d.startAgent(ctx, wg, bin, p, t, broker); err != nil {
			return err
		}
		d.logf("%s: GPS simulator on %s, agent pid %d, driver page http://%s/", t.name, t.pty.Path, t.cmd.Process.Pid, t.httpAddr)
	}
	defer d.stopAgents(trucks) // on errors and after --keep; the summary stops them first otherwise

	// 4. Dispatch: the office process (sdk/dispatch/office), connected to the broker directly.
	office, stopOffice, err := d.startOffice(ctx, p, brokerAddr, trucks)
	if err != nil {
		return err
	}
	defer stopOffice()
	d.office = office
	// The live log's watcher and the drivers end before the office stops (defers run last in, first out).
	loopCtx, stopLoops := context.WithCancel(ctx)
	var loops sync.WaitGroup
	defer func() { stopLoops(); loops.Wait() }()
	loops.Add(2)
	go func() { defer loops.Done(); d.watchOffice(loopCtx, trucks) }()
	go func() { defer loops.Done(); d.actOnArrival(loopCtx, trucks) }()

	// 5. Orders, through the office's HTTP JSON API with its token (POST /api/orders), as a dispatcher's
	// tool or the console does: one per truck, to a point on its route, and one for truck-02 that is
	// cancelled.
	expires := time.Now().Add(2 * time.Hour)
	for i, t := range trucks {
		dest := t.route.At(t.arriveAt).Pos
		t.order = fmt.Sprintf("o-100%d", i+1)
		req := demoOrderRequest{ID: t.order, Truck: t.name, Expires: expires,
			Recipient: []string{"Ada Lovelace", "Alan Turing", "Grace Hopper"}[i],
			Address:   []string{"Unter den Linden 1", "Friedrichstraße 43", "Alexanderplatz 7"}[i],
			Lat:       dest.Lat, Lon: dest.Lon, RadiusM: 60, Notes: "demo parcel, leave with the concierge"}
		var created officeOrder
		if err := office.api(ctx, http.MethodPost, "/api/orders", req, &created, http.StatusCreated); err != nil {
			return err
		}
		d.logf("dispatch: POST /api/orders: %s for %s (%s), destination %.5f,%.5f, about %s down the road", req.ID, t.name,
			req.Recipient, req.Lat, req.Lon, t.arriveAt)
		if i == 0 && created.Tracking != nil {
			office.mu.Lock()
			office.tracking = fmt.Sprintf("%s%s   %s's page for %s (no token: the link is the key)", office.base,
				created.Tracking.URL, req.Recipient, req.ID)
			office.mu.Unlock()
		}
	}
	extra := demoOrderRequest{ID: "o-1004", Truck: "truck-02", Expires: expires, Recipient: "Edsger Dijkstra",
		Address: "Karl-Marx-Allee 90", Lat: 52.5170, Lon: 13.4400, RadiusM: 60}
	if err := office.api(ctx, http.MethodPost, "/api/orders", extra, nil, http.StatusCreated); err != nil {
		return err
	}
	d.logf("dispatch: POST /api/orders: o-1004 for truck-02 (to be cancelled)")
	d.printOffice("The dispatch office (open the console in a browser while the orders run):", trucks, keep)

	// 6. The script: cancel o-1004 once confirmed; cut truck-03's link for 30 s; wait for the deliveries.
	cancelled, cutDone := false, false
	var cutAt time.Time
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	lastTally := time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if !cancelled {
			var e officeOrder
			if err := office.api(ctx, http.MethodGet, "/api/orders/truck-02/o-1004", nil, &e, http.StatusOK); err == nil && e.Confirmed >= 1 {
				q := url.Values{"reason": {"customer not at home today"}}
				if err := office.api(ctx, http.MethodDelete, "/api/orders/truck-02/o-1004?"+q.Encode(), nil, nil, http.StatusOK); err != nil {
					return err
				}
				cancelled = true
				d.logf("dispatch: DELETE /api/orders/truck-02/o-1004: cancels it (truck-02 had confirmed it)")
			}
		}
		if cutAt.IsZero() && time.Since(d.t0) > 12*time.Second {
			proxy.SetFailFraction(1)
			n := proxy.DropAll()
			cutAt = time.Now()
			var h agentHealth
			if getJSON(ctx, "http://"+trucks[2].httpAddr+"/healthz", &h) {
				d.mu.Lock()
				d.cutUnreceipted, d.cutHeld = h.Queue.Unreceipted, int(h.Queue.Critical+h.Queue.Normal)
				d.mu.Unlock()
			}
			d.logf("truck-03: cellular link CUT for 30 s (%d connection dropped; reconnects refused). It keeps queueing on disk.", n)
		}
		if !cutAt.IsZero() && !cutDone {
			var h agentHealth
			if getJSON(ctx, "http://"+trucks[2].httpAddr+"/healthz", &h) {
				d.mu.Lock()
				d.cutHeld = max(d.cutHeld, int(h.Queue.Critical+h.Queue.Normal))
				d.mu.Unlock()
			}
		}
		if !cutDone && !cutAt.IsZero() && time.Since(cutAt) > 30*time.Second {
			proxy.SetFailFraction(0)
			cutDone = true
			d.mu.Lock()
			held := d.cutHeld
			d.mu.Unlock()
			d.logf("truck-03: link RESTORED; its queue (%d records at most during the cut) drains, newest fix first", held)
		}
		if time.Since(lastTally) > 10*time.Second {
			lastTally = time.Now()
			d.logf("%s", d.tally(ctx, trucks))
		}
		if cancelled && cutDone && d.finished(ctx, trucks) {
			break
		}
		if time.Now().After(deadline) {
			d.note("gave up after %s: not every order was delivered", time.Since(d.t0).Round(time.Second))
			break
		}
	}
	if !keep {
		return d.summary(ctx, trucks, proxy, func() { d.stopAgents(trucks) })
	}
	// --keep: the summary now, then everything stays up (the trucks parked) for the console and the driver
	// pages; the live log goes on (orders made in the console show in it) until Ctrl-C.
	err = d.summary(ctx, trucks, proxy, nil)
	if ctx.Err() == nil {
		d.printOffice("\nDEMO_KEEP: everything keeps running (the trucks are parked). The dispatch office:", trucks, true)
		fmt.Fprintln(d.s.out, "Ctrl-C to stop.")
		<-ctx.Done()
	}
	d.mu.Lock()
	d.quiet = true // the agents' offline wills as they stop
	d.mu.Unlock()
	return err
}

func (d *demo) note(format string, args ...any) {
	d.mu.Lock()
	d.notes = append(d.notes, fmt.Sprintf(format, args...))
	d.mu.Unlock()
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startBroker runs Mosquitto with our configuration when it is installed, else the development broker.
func (d *demo) startBroker(ctx context.Context, wg *sync.WaitGroup, p *pki.PKI) (string, error) {
	addr := freeAddr()
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	mosq, err := exec.LookPath("mosquitto")
	if err != nil && fileExists("/usr/sbin/mosquitto") {
		mosq, err = "/usr/sbin/mosquitto", nil
	}
	if err == nil {
		cfg := brokerconf.Config{Port: port, Bind: "127.0.0.1"}
		if os.Geteuid() == 0 {
			cfg.User = "root" // Mosquitto would drop to "mosquitto", which may not read the demo directory
		}
		res, err := brokerconf.Write(p, filepath.Join(d.dir, "broker"), cfg)
		if err != nil {
			return "", err
		}
		logf, err := os.Create(filepath.Join(d.dir, "broker.log"))
		if err != nil {
			return "", err
		}
		cmd := exec.Command(mosq, "-c", res.ConfPath)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return "", err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ctx.Done()
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			logf.Close()
		}()
		if err := waitTCP(addr, 10*time.Second); err != nil {
			return "", fmt.Errorf("mosquitto did not start (see %s): %w", logf.Name(), err)
		}
		d.logf("broker: Mosquitto on %s with our hardened config and ACL (%s)", addr, res.ConfPath)
		return addr, nil
	}
	cfg, err := devbroker.FromPKI(p, "mqtt")
	if err != nil {
		return "", err
	}
	cfg.Addr = addr
	b, err := devbroker.New(cfg)
	if err != nil {
		return "", err
	}
	if err := b.Listen(); err != nil {
		return "", err
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = b.Serve(ctx) }()
	d.logf("broker: Mosquitto not installed; the embedded development broker on %s (same mutual TLS and ACL)", addr)
	return addr, nil
}

func waitTCP(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *demo) startAgent(ctx context.Context, wg *sync.WaitGroup, bin string, p *pki.PKI, t *demoTruck, broker string) error {
	dir := filepath.Join(d.dir, t.name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`data_dir = %q
# The demo runs minutes, not days: its timings are below the floors a real truck must respect.
allow_test_timings = true
[identity]
cert = %q
key = %q
ca = %q
[broker]
urls = ["mqtts://%s"]
keep_alive = "5s"
backoff_max = "4s"
reconnect_window = "1s"
# Dispatch receipts within a second here (its receipt delay is 500 ms): a record sent whose receipt is
# lost (the link cut just after the PUBACK) goes out again after 10 s, not the 5 minutes of a real truck.
receipt_timeout = "10s"
[gps]
device = %q
baud = "9600"
[gps.filter]
# Curve logging (the default) sends the fixes that redraw the drive within 5 m and 5 km/h, in one burst at
# least every max_delay (60 s on a truck); a one-minute demo wants the map to move every 5 s.
max_delay = "5s"
[store]
fix_batch = 5
fix_delay = "2s"
[http]
listen = %q
[status]
interval = "10s"
`, filepath.Join(dir, "data"), p.CertPath(t.name), p.KeyPath(t.name), p.CAPath(), broker, t.pty.Path, t.httpAddr)
	path := filepath.Join(dir, "agent.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return err
	}
	t.cmd = exec.Command(bin, "run", "--config", path)
	t.cmd.Stdout, t.cmd.Stderr = logf, logf
	if err := t.cmd.Start(); err != nil {
		return err
	}
	t.exited = make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer logf.Close()
		t.cmd.Wait()
		close(t.exited)
	}()
	return nil
}

func (d *demo) stopAgents(trucks []*demoTruck) {
	for _, t := range trucks {
		if t.cmd != nil && t.cmd.Process != nil {
			t.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, t := range trucks {
		if t.exited == nil {
			continue
		}
		select {
		case <-t.exited:
		case <-time.After(15 * time.Second):
			t.cmd.Process.Kill()
		}
	}
}

// actOnArrival plays the drivers: each watches its own truck's order on the agent's local API (the cab's
// page works without a link) and confirms the delivery through the HTTP hook as soon as the agent reports
// the truck inside the order's radius. The proof then travels to the office whenever the link allows.
func (d *demo) actOnArrival(ctx context.Context, trucks []*demoTruck) {
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, t := range trucks {
			d.mu.Lock()
			done := d.acted[t.order]
			d.mu.Unlock()
			if done || t.order == "" {
				continue
			}
			var view struct {
				State   string `json:"state"`
				Arrived bool   `json:"arrived"`
			}
			if !getJSON(ctx, "http://"+t.httpAddr+"/api/orders/"+t.order, &view) || !view.Arrived || view.State != "active" {
				continue
			}
			body, status, err := postJSON(ctx, "http://"+t.httpAddr+"/api/orders/"+t.order+"/delivered", `{"via":"http"}`)
			if err != nil || status != http.StatusOK {
				d.logf("driver of %s could not confirm %s: %d %s %v", t.name, t.order, status, body, err)
				continue
			}
			d.mu.Lock()
			d.acted[t.order] = true
			d.mu.Unlock()
			d.logf("driver of %s taps Delivered for %s on arrival (HTTP hook answered 200: the proof is on the truck's disk)", t.name, t.order)
		}
	}
}

func getJSON(ctx context.Context, url string, v any) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	// /healthz answers 503 with its whole body when something is wrong (a parked truck has no fix): the
	// body is what the demo reads.
	ok := resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusServiceUnavailable
	return ok && json.NewDecoder(resp.Body).Decode(v) == nil
}

func postJSON(ctx context.Context, url, body string) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return string(b), resp.StatusCode, nil
}

// finished reports whether every truck's order is delivered with a proof that was checked (verified, or
// failed: the summary counts it) and the office has o-1004 cancelled, the cancellation confirmed by the
// truck. An office that does not answer is not finished yet.
func (d *demo) finished(ctx context.Context, trucks []*demoTruck) bool {
	d.mu.Lock()
	for _, t := range trucks {
		if !d.proof[t.order] && d.proofFailed[t.order] == "" { // a failed proof is an outcome too: the summary says so
			d.mu.Unlock()
			return false
		}
	}
	d.mu.Unlock()
	var e officeOrder
	if err := d.office.api(ctx, http.MethodGet, "/api/orders/truck-02/o-1004", nil, &e, http.StatusOK); err != nil {
		return false
	}
	return e.State == dispatch.StateCancelled && !e.Unconfirmed()
}

// agentHealth is what the demo reads from an agent's /healthz.
type agentHealth struct {
	Queue struct {
		Critical    int64  `json:"critical"`
		Normal      int64  `json:"normal"`
		Unreceipted int    `json:"unreceipted"` // sent, waiting for dispatch's receipt (still queued)
		Receipted   uint64 `json:"receipted"`
		Resent      uint64 `json:"resent"`
	} `json:"queue"`
}

// tally is the live log's progress line: fixes in the office's archive, and records on each truck's disk
// (those waiting for a receipt among them).
func (d *demo) tally(ctx context.Context, trucks []*demoTruck) string {
	var archived, queued []string
	for _, t := range trucks {
		fixes, _, err := d.officeCounts(ctx, t.name)
		if err != nil {
			return err.Error()
		}
		archived = append(archived, fmt.Sprintf("%s %d", t.name, fixes))
		var h agentHealth
		if getJSON(ctx, "http://"+t.httpAddr+"/healthz", &h) {
			queued = append(queued, fmt.Sprintf("%d (%d awaiting receipt)", h.Queue.Critical+h.Queue.Normal, h.Queue.Unreceipted))
		} else {
			queued = append(queued, "?")
		}
	}
	return fmt.Sprintf("fixes in the office's archive: %s; records on the trucks' disks: %s", strings.Join(archived, ", "),
		strings.Join(queued, ", "))
}

// truckCount is one truck's end-to-end count for the summary.
type truckCount struct {
	stored    int // fixes the agent committed to its store
	pending   int // fixes the agent kept but has not stored yet (waiting for a batch) or could not store
	failed    int // fixes the agent could not store
	archived  int // distinct fixes, by (epoch, seq), in the office's archive
	events    int // events in the office's archive
	receipts  int // receipts the agent applied
	health    agentHealth
	healthErr bool // /healthz did not answer
}

// settled: everything the truck stored is in the office's archive, and its queue is empty with nothing
// waiting for a receipt.
func (c truckCount) settled() bool {
	q := c.health.Queue
	return !c.healthErr && c.pending == 0 && c.archived == c.stored && q.Critical == 0 && q.Normal == 0 && q.Unreceipted == 0
}

// count reads one truck's figures: the agent's own first, then the office's, through its API.
func (d *demo) count(ctx context.Context, t *demoTruck) (truckCount, error) {
	var c truckCount
	m := map[string]float64{}
	if req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.httpAddr+"/metrics", nil); err == nil {
		m = scrapeMetrics(http.DefaultClient, req)
	}
	c.stored = int(metricSum(m, "waybill_gps_fixes_stored_total"))
	c.receipts = int(metricSum(m, "waybill_upload_receipts_total"))
	c.failed = int(metricSum(m, "waybill_gps_fixes_store_errors_total"))
	c.pending = int(metricSum(m, "waybill_gps_fixes_reported_total")) - c.stored - c.failed
	c.healthErr = !getJSON(ctx, "http://"+t.httpAddr+"/healthz", &c.health)
	var err error
	c.archived, c.events, err = d.officeCounts(ctx, t.name)
	return c, err
}

// summary parks the trucks (their GPS stops, so no new fixes), waits until every truck's queue is empty and
// nothing waits for a receipt, compares what each agent stored with what the office's archive holds, stops
// the agents cleanly (unless stop is nil: --keep) and prints the result.
func (d *demo) summary(ctx context.Context, trucks []*demoTruck, proxy *faultproxy.Proxy, stop func()) error {
	d.stopGPS()
	d.logf("GPS simulators stopped (the trucks park); waiting for every stored fix to be receipted by the office")
	// An agent may still hold a few fixes in memory (store.fix_delay, 2 s); they are stored, sent, committed
	// and receipted within a few seconds.
	time.Sleep(time.Second) // the agents read what the simulators last wrote to the serial ports
	counts := map[string]truckCount{}
	for _, t := range trucks {
		deadline := time.Now().Add(20 * time.Second)
		for {
			c, err := d.count(ctx, t)
			if err != nil {
				return err
			}
			counts[t.name] = c
			if c.settled() || time.Now().After(deadline) {
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	var orders []officeOrder
	if err := d.office.api(ctx, http.MethodGet, "/api/orders", nil, &orders, http.StatusOK); err != nil {
		return err
	}
	if stop != nil {
		d.logf("stopping the agents (SIGTERM: ignition off)")
		stop()
		d.mu.Lock()
		d.quiet = true // the agents' offline wills would print after the summary
		d.mu.Unlock()
	}
	sort.Slice(orders, func(i, j int) bool { return orders[i].Order.ID < orders[j].Order.ID })
	// Written whole at the end: with --keep the live log goes on and must not cut into it.
	var out bytes.Buffer
	fmt.Fprintf(&out, "\n=== Waybill demo summary (%s) ===\n", time.Since(d.t0).Round(time.Second))
	delivered, cancelledN := 0, 0
	for _, e := range orders {
		fmt.Fprintf(&out, "  order %s  %-9s %-9s %s\n", e.Order.ID, e.Order.Truck, e.State, e.Order.Recipient)
		switch e.State {
		case dispatch.StateDelivered:
			delivered++
		case dispatch.StateCancelled:
			cancelledN++
		}
	}
	d.mu.Lock()
	proofs := 0
	for id, ok := range d.proof {
		if ok && d.proofFailed[id] == "" {
			proofs++
		}
	}
	failedProofs := maps.Clone(d.proofFailed)
	cutHeld, cutUnreceipted := d.cutHeld, d.cutUnreceipted
	d.mu.Unlock()
	fmt.Fprintf(&out, "  orders delivered: %d of %d, cancelled: %d of 1\n", delivered, len(trucks), cancelledN)
	fmt.Fprintf(&out, "  proofs of delivery verified by the office (signature, order hash, fix on site): %d of %d\n", proofs,
		len(trucks))
	for id, why := range failedProofs {
		fmt.Fprintf(&out, "  proof of delivery for %s FAILED verification: %s\n", id, why)
	}
	lost := false
	var receipted []string
	for _, t := range trucks {
		c := counts[t.name]
		q := c.health.Queue
		fmt.Fprintf(&out, "  %s: fixes stored %d, in the office's archive %d; events in the archive %d; left on the truck: "+
			"%d records, %d waiting for a receipt\n", t.name, c.stored, c.archived, c.events, q.Critical+q.Normal, q.Unreceipted)
		receipted = append(receipted, fmt.Sprintf("%s %d records in %d receipts (%d sent again)", t.name, q.Receipted,
			c.receipts, q.Resent))
		switch {
		case c.healthErr:
			d.note("%s: its /healthz did not answer", t.name)
		case c.failed > 0:
			lost = true
			d.note("%s: %d fixes could not be stored", t.name, c.failed)
		case c.pending > 0:
			d.note("%s: %d fixes still waiting in memory to be stored", t.name, c.pending)
		case c.archived < c.stored:
			lost = true
			d.note("%s: %d fixes stored but only %d in the office's archive", t.name, c.stored, c.archived)
		case c.archived > c.stored:
			d.note("%s: the office's archive has %d fixes, the agent stored %d", t.name, c.archived, c.stored)
		case !c.settled():
			d.note("%s: %d records still queued, %d waiting for a receipt", t.name, q.Critical+q.Normal, q.Unreceipted)
		}
	}
	fmt.Fprintf(&out, "  receipts (a truck deletes a record only when the office's signed receipt names it): %s\n",
		strings.Join(receipted, ", "))
	ps := proxy.Stats()
	fmt.Fprintf(&out, "  truck-03's link was cut for 30 s (%d connections dropped, %d reconnects refused): up to %d records "+
		"waited on its disk for their receipt (%d of them already sent when the link went); nothing lost: %v\n",
		ps.Dropped, ps.Failed, cutHeld, cutUnreceipted, !lost)
	fmt.Fprintf(&out, "  logs and data: %s (the office: storage %s, log %s)\n", d.dir, d.office.dataDir, d.office.logPath)
	d.mu.Lock()
	notes := slices.Clone(d.notes)
	d.mu.Unlock()
	var err error
	if delivered != len(trucks) || cancelledN != 1 || proofs != len(trucks) || len(failedProofs) > 0 || lost || len(notes) > 0 {
		for _, n := range notes {
			fmt.Fprintf(&out, "  PROBLEM: %s\n", n)
		}
		err = errors.New("the demo did not complete: see the summary")
	} else {
		fmt.Fprintln(&out, "  everything delivered, every proof verified, nothing lost.")
	}
	d.mu.Lock()
	d.s.out.Write(out.Bytes())
	d.mu.Unlock()
	return err
}

// scrapeMetrics reads the Prometheus text page that req asks for into series ("name" or
// "name{labels}") -> value; an error gives what was read.
func scrapeMetrics(c *http.Client, req *http.Request) map[string]float64 {
	out := map[string]float64{}
	resp, err := c.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		// The value is the last field: a label's value may hold spaces.
		i := strings.LastIndexByte(line, ' ')
		if i <= 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[strings.TrimSpace(line[:i])] += v
		}
	}
	return out
}

// metricSum is the sum of a metric's series in m (every label set).
func metricSum(m map[string]float64, name string) float64 {
	var sum float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			sum += v
		}
	}
	return sum
}
