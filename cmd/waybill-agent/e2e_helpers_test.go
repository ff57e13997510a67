package main

// Shared helpers of the end-to-end tests: real Mosquitto (configured by sdktest as `waybill broker config`
// does), the real waybill-agent binary (built once per test binary), and the real dispatch side: a
// dispatch.Client whose Record is an archive.Archive in a temporary directory, as an office runs it. The
// tests count at dispatch's durable record, the archive file read after the run.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps/gpssim"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/archive"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/sdktest/officetest"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/store"
)

// The agent binary is built once per test binary, not per test.
var (
	agentBinOnce sync.Once
	agentBinDir  string
	agentBinPath string
	agentBinErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if agentBinDir != "" {
		os.RemoveAll(agentBinDir)
	}
	os.Exit(code)
}

// buildAgent returns the waybill-agent binary, building it on first use.
func buildAgent(t testing.TB) string {
	t.Helper()
	agentBinOnce.Do(func() {
		agentBinDir, agentBinErr = os.MkdirTemp("", "waybill-agent-e2e-")
		if agentBinErr != nil {
			return
		}
		agentBinPath = filepath.Join(agentBinDir, "waybill-agent")
		out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", agentBinPath, ".").CombinedOutput()
		if err != nil {
			agentBinErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if agentBinErr != nil {
		t.Fatal(agentBinErr)
	}
	return agentBinPath
}

// recKey identifies a record for good: (truck, store epoch, record seq).
type recKey struct {
	Truck string
	Epoch sdk.Epoch
	Seq   uint64
}

func (k recKey) String() string { return fmt.Sprintf("%s/%x/%d", k.Truck, k.Epoch[:], k.Seq) }

// handled counts what dispatch's Handle received, per record and in all, across dispatch restarts.
type handled struct {
	mu       sync.Mutex
	fixes    map[recKey]int
	events   map[recKey]int
	statuses []dispatch.Status
	rejected map[sdk.Reason]int
}

func newHandled() *handled {
	return &handled{fixes: map[recKey]int{}, events: map[recKey]int{}, rejected: map[sdk.Reason]int{}}
}

func (h *handled) handle(_ context.Context, u dispatch.Update) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case len(u.Fixes) > 0:
		for _, f := range u.Fixes {
			h.fixes[recKey{f.Truck, f.Epoch, f.Seq}]++
		}
	case u.Event != nil:
		h.events[recKey{u.Event.Truck, u.Event.Event.Epoch, u.Event.Event.RecordSeq}]++
	case u.Status != nil:
		h.statuses = append(h.statuses, *u.Status)
	case u.Rejection != nil:
		h.rejected[u.Rejection.Reason]++
	}
	return nil
}

// lastStatus returns the last status handled for truck.
func (h *handled) lastStatus(truck string) (dispatch.Status, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	var last dispatch.Status
	for _, s := range h.statuses {
		if s.Truck == truck {
			last = s
			n++
		}
	}
	return last, n
}

func (h *handled) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprintf("handled %d fixes, %d events, %d statuses; rejected %v", len(h.fixes), len(h.events),
		len(h.statuses), h.rejected)
}

// rig is one test's fleet: Mosquitto, the PKI with the dispatch identity "office", the office's data
// directory (archive and outbox), and what dispatch's Handle saw.
type rig struct {
	t       *testing.T
	b       *sdktest.Broker
	dir     string
	archive string // dispatch's durable record
	outbox  string
	handled *handled
	office  *office // the running dispatch process, if any
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

const officeName = "office"

func newRig(t *testing.T, opts sdktest.Options) *rig {
	t.Helper()
	buildAgent(t)
	opts.Dispatch = append(opts.Dispatch, officeName)
	r := &rig{t: t, b: sdktest.StartMosquitto(t, opts), dir: t.TempDir(), handled: newHandled()}
	r.archive = filepath.Join(r.dir, "office", archive.File)
	r.outbox = filepath.Join(r.dir, "office", "outbox.db")
	r.ctx, r.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() { // a running office is stopped by its own cleanup, registered later: before this
		r.cancel()
		r.wg.Wait()
	})
	return r
}

// stallRecord wraps the archive: while stalled, Commit blocks (dispatch's disk or database is slow).
type stallRecord struct {
	rec     dispatch.Record
	mu      sync.Mutex
	stalled chan struct{} // closed when the stall ends; nil: not stalled
	commits int
}

func (s *stallRecord) Commit(ctx context.Context, u dispatch.Update) error {
	s.mu.Lock()
	ch := s.stalled
	s.commits++
	s.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.rec.Commit(ctx, u)
}

func (s *stallRecord) stall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled == nil {
		s.stalled = make(chan struct{})
	}
}

func (s *stallRecord) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled != nil {
		close(s.stalled)
		s.stalled = nil
	}
}

// office is a running dispatch process (officetest) with the rig's archive and outbox.
type office struct {
	*officetest.Office
	stall *stallRecord // with officeOptions.Stall
}

type officeOptions struct {
	ShareGroup string
	Stall      bool // wrap the archive in a stallRecord
}

// startOffice starts dispatch with the office identity, the rig's archive and outbox, and every truck
// certificate issued so far (telemetry carries none after a connection's first message). It is stopped
// when the test ends if the test does not stop it.
func (r *rig) startOffice(o officeOptions) *office {
	t := r.t
	t.Helper()
	if r.office != nil {
		t.Fatal("an office is running already")
	}
	of := &office{}
	opts := officetest.Options{Name: officeName, ArchivePath: r.archive, OutboxPath: r.outbox, ShareGroup: o.ShareGroup,
		Handle: r.handled.handle}
	if o.Stall {
		opts.Wrap = func(rec dispatch.Record) dispatch.Record {
			of.stall = &stallRecord{rec: rec}
			return of.stall
		}
	}
	of.Office = officetest.Start(t, r.b, opts)
	if of.stall != nil {
		// Runs before officetest's Stop at the test's end: a held commit then ends with its data, not with
		// the cancel.
		t.Cleanup(of.stall.release)
	}
	r.office = of
	return of
}

// stop ends the dispatch process (a clean DISCONNECT; its session stays) and closes its archive.
func (o *office) stop() {
	if o.stall != nil {
		o.stall.release()
	}
	o.Stop()
}

func (r *rig) stopOffice() {
	r.t.Helper()
	if r.office != nil {
		r.office.stop()
		r.office = nil
	}
}

// createOrders creates orders for truck in the outbox; the dispatch client sends them until confirmed.
func (r *rig) createOrders(truck string, ids ...string) {
	r.t.Helper()
	for _, id := range ids {
		_, err := r.office.Outbox.Create(context.Background(), sdk.Order{ID: id, Truck: truck, Expires: time.Now().Add(time.Hour),
			Recipient: "R. " + id, Address: "1 Quay St", Lat: 52.5, Lon: 13.4, RadiusM: 50})
		if err != nil {
			r.t.Fatal(err)
		}
	}
}

// startGPS runs the GPS simulator on a pseudo-terminal until the test ends and returns its device. It runs
// at 10x with one fix per simulated second, and starts 5 minutes in the past so that GPS time stays within
// the agent's 10-minute plausibility bound of the system clock for over a minute of wall time.
func (r *rig) startGPS(seed uint64) string {
	r.t.Helper()
	pty, err := gpssim.OpenPTY()
	if err != nil {
		r.t.Fatal(err)
	}
	sim := gpssim.New(gpssim.Config{Route: gpssim.RouteConfig{Seed: seed, LostFixRate: -1, TunnelLen: -1}, Speedup: 10,
		Start: time.Now().Add(-5 * time.Minute)})
	done := make(chan struct{})
	r.wg.Add(1)
	go func() { defer r.wg.Done(); defer close(done); sim.Run(r.ctx, pty.Master) }()
	// A write to a pseudo-terminal nobody reads blocks once its buffer is full, and neither ctx nor Close
	// interrupts it: at the end, read the device until the simulator has seen ctx end.
	r.t.Cleanup(func() {
		r.cancel()
		if f, err := os.OpenFile(pty.Path, os.O_RDONLY|syscall.O_NOCTTY|syscall.O_NONBLOCK, 0); err == nil {
			go io.Copy(io.Discard, f) // ends when f is closed (a pollable file: Close wakes the Read)
			defer f.Close()
		}
		<-done
		pty.Close()
	})
	return pty.Path
}

// agentProc is one truck's agent: its configuration, data directory and the runs of the binary.
type agentProc struct {
	t      *testing.T
	r      *rig
	name   string
	dir    string
	cfg    string // the configuration with GPS
	drain  string // the same without GPS (replay of /dev/null)
	http   string
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *sdktest.SyncBuffer
	runs   int
	epochs []sdk.Epoch // every store epoch seen in /healthz, in order
	// actions answered 200 by the agent's HTTP hook: the proofs that must reach dispatch.
	actions []recKey
	resent  uint64 // records the agent sent again (no receipt in time), summed over its runs
	sent    uint64 // records in messages the broker acknowledged (resends included), summed over its runs
	// next: per store epoch, the seq the store would hand out next, learnt after a drain (finish) or set by
	// the test: every seq below it was handed out, so dispatch must hold them all (a lost tail shows).
	next map[sdk.Epoch]uint64
	// token is the listener's token (http.token), sent as a Bearer token by the helpers that call the agent.
	token string
}

// noteRun adds the running agent's counters to the totals, just before it stops.
func (a *agentProc) noteRun() {
	if h, err := a.healthz(); err == nil {
		a.resent += h.Queue.Resent
	}
	if m, err := a.metrics(); err == nil {
		a.sent += uint64(m["waybill_upload_fixes_total"] + m["waybill_upload_events_total"])
	}
}

type agentOptions struct {
	Broker         string // broker URL; zero: the rig's Mosquitto
	GPS            string // the GPS device; zero: no GPS (replay of /dev/null)
	ReceiptTimeout string // zero: "2s"
	StatusInterval string // zero: the default (5 minutes)
	Token          string // http.token; zero: none (the listener then answers loopback names only)
}

// newAgent issues nothing: the truck certificate name must be issued (rig.b.Truck) before the office starts.
func (r *rig) newAgent(name string, o agentOptions) *agentProc {
	t := r.t
	t.Helper()
	cl := r.b.ClientFiles(name)
	if cl.Role != pki.RoleTruck {
		t.Fatalf("%s is not an issued truck certificate", name)
	}
	a := &agentProc{t: t, r: r, name: name, dir: filepath.Join(r.dir, name), http: freeAddr(t), logs: &sdktest.SyncBuffer{},
		next: map[sdk.Epoch]uint64{}, token: o.Token}
	if o.Broker == "" {
		o.Broker = "mqtts://" + r.b.Addr
	}
	if o.ReceiptTimeout == "" {
		o.ReceiptTimeout = "2s"
	}
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(path, gps string) {
		var b strings.Builder
		fmt.Fprintf(&b, "data_dir = %q\nallow_test_timings = true\n[identity]\ncert = %q\nkey = %q\nca = %q\n", filepath.Join(a.dir, "data"),
			cl.CertFile, cl.KeyFile, cl.CAFile)
		fmt.Fprintf(&b, "[broker]\nurls = [%q]\nkeep_alive = \"3s\"\nbackoff_max = \"1s\"\nreconnect_window = \"1s\"\nreceipt_timeout = %q\n",
			o.Broker, o.ReceiptTimeout)
		if gps == "" {
			fmt.Fprintf(&b, "[gps]\nsource = \"replay\"\nreplay_file = \"/dev/null\"\n")
		} else {
			fmt.Fprintf(&b, "[gps]\ndevice = %q\nbaud = \"9600\"\n", gps)
		}
		fmt.Fprintf(&b, "[gps.filter]\nmode = \"thresholds\"\nperiod = \"1s\"\nmin_interval = \"1s\"\n[store]\nfix_batch = 3\nfix_delay = \"500ms\"\n")
		fmt.Fprintf(&b, "[http]\nlisten = %q\n", a.http)
		if o.Token != "" {
			fmt.Fprintf(&b, "token = %q\n", o.Token)
		}
		if o.StatusInterval != "" {
			fmt.Fprintf(&b, "[status]\ninterval = %q\n", o.StatusInterval)
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a.cfg, a.drain = filepath.Join(a.dir, "agent.toml"), filepath.Join(a.dir, "drain.toml")
	write(a.cfg, o.GPS)
	write(a.drain, "")
	t.Cleanup(func() {
		if a.cmd != nil {
			a.cmd.Process.Kill()
			<-a.exited
		}
	})
	return a
}

func (a *agentProc) queueDB() string { return filepath.Join(a.dir, "data", "queue.db") }

// loseStore deletes the stopped agent's queue file, as a swapped SD card would; withSeq also its envelope
// sequence side file.
func (a *agentProc) loseStore(withSeq bool) {
	a.t.Helper()
	rm := []string{a.queueDB()}
	if withSeq {
		rm = append(rm, a.queueDB()+".seq")
	}
	for _, p := range rm {
		if err := os.Remove(p); err != nil {
			a.t.Fatal(err)
		}
	}
}

// start runs the agent (with GPS unless drain) and waits for its /healthz, noting its store epoch.
func (a *agentProc) start(drain bool) {
	a.t.Helper()
	if a.cmd != nil {
		a.t.Fatalf("%s: agent already running", a.name)
	}
	cfg := a.cfg
	if drain {
		cfg = a.drain
	}
	a.runs++
	fmt.Fprintf(a.logs, "--- run %d (%s) ---\n", a.runs, filepath.Base(cfg))
	cmd := exec.Command(buildAgent(a.t), "run", "--config", cfg)
	cmd.Stderr, cmd.Stdout = a.logs, a.logs
	if err := cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	a.cmd, a.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(a.exited) }()
	var h health
	a.waitHealth(15*time.Second, "its /healthz to answer", func(x health) bool { h = x; return true })
	if len(a.epochs) == 0 || a.epochs[len(a.epochs)-1] != h.Store.Epoch {
		a.epochs = append(a.epochs, h.Store.Epoch)
	}
}

// kill9 kills the agent with SIGKILL.
func (a *agentProc) kill9() {
	a.t.Helper()
	a.noteRun()
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		a.t.Fatal(err)
	}
	<-a.exited
	a.cmd = nil
	if strings.Contains(a.logs.String(), "panic") {
		a.t.Fatalf("%s panicked:\n%s", a.name, a.logs.Tail(60))
	}
}

// stop stops the agent with SIGTERM (it commits the fixes it holds) and requires a clean exit.
func (a *agentProc) stop() {
	a.t.Helper()
	if a.cmd == nil {
		return
	}
	a.noteRun()
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(15 * time.Second):
		a.cmd.Process.Kill()
		<-a.exited
		a.cmd = nil
		a.t.Fatalf("%s did not stop within 15 s of SIGTERM:\n%s", a.name, a.logs.Tail(60))
	}
	err := a.cmd.ProcessState
	a.cmd = nil
	if !err.Success() {
		a.t.Fatalf("%s stopped with %v:\n%s", a.name, err, a.logs.Tail(60))
	}
}

// health is the part of the agent's /healthz the tests read.
type health struct {
	Connected bool   `json:"connected"`
	Link      string `json:"link"`
	Queue     struct {
		Critical    int64  `json:"critical"`
		Normal      int64  `json:"normal"`
		Unreceipted int    `json:"unreceipted"`
		Receipted   uint64 `json:"receipted"`
		Resent      uint64 `json:"resent"`
	} `json:"queue"`
	Store struct {
		Epoch  sdk.Epoch `json:"epoch"`
		Origin string    `json:"origin"`
	} `json:"store"`
}

func (h health) String() string {
	return fmt.Sprintf("connected=%v critical=%d normal=%d unreceipted=%d receipted=%d resent=%d epoch=%x origin=%s",
		h.Connected, h.Queue.Critical, h.Queue.Normal, h.Queue.Unreceipted, h.Queue.Receipted, h.Queue.Resent,
		h.Store.Epoch[:], h.Store.Origin)
}

func (a *agentProc) healthz() (health, error) {
	var h health
	resp, err := a.request("GET", "/healthz", nil)
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return h, fmt.Errorf("GET /healthz: %s", resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&h)
	return h, err
}

// request sends a request to the agent's local listener, with its token when it has one, and the headers
// given as name, value pairs: a "Host" pair sets the Host header, an empty value removes the header (the
// token's Authorization). The caller closes the body.
func (a *agentProc) request(method, path string, body io.Reader, header ...string) (*http.Response, error) {
	req, err := http.NewRequest(method, "http://"+a.http+path, body)
	if err != nil {
		return nil, err
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		switch {
		case strings.EqualFold(header[i], "Host"):
			req.Host = header[i+1]
		case header[i+1] == "":
			req.Header.Del(header[i])
		default:
			req.Header.Set(header[i], header[i+1])
		}
	}
	c := http.Client{Timeout: 3 * time.Second}
	return c.Do(req)
}

// orderView is the part of the driver page's view of an order (GET /api/orders/{id}) the tests read.
type orderView struct {
	ID        string `json:"id"`
	Revision  uint32 `json:"revision"`
	State     string `json:"state"`
	Recipient string `json:"recipient"`
	Address   string `json:"address"`
	Problems  int    `json:"problems"`
}

// order returns the driver page's view of order id, and false when the truck's book does not list it (404).
// It fails t (the test or subtest calling) when the agent does not answer.
func (a *agentProc) order(t testing.TB, id string) (orderView, bool) {
	t.Helper()
	var v orderView
	resp, err := a.request("GET", "/api/orders/"+id, nil)
	if err != nil {
		t.Fatalf("%s: GET /api/orders/%s: %v", a.name, id, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotFound:
		return v, false
	case http.StatusOK:
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatalf("%s: GET /api/orders/%s: %v", a.name, id, err)
		}
		return v, true
	}
	raw, _ := io.ReadAll(resp.Body)
	t.Fatalf("%s: GET /api/orders/%s: %s %s", a.name, id, resp.Status, raw)
	return v, false
}

// waitOrder waits until the driver's page shows order id at revision rev and returns its view.
func (a *agentProc) waitOrder(t testing.TB, id string, rev uint32) orderView {
	t.Helper()
	var v orderView
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ok bool
		if v, ok = a.order(t, id); ok && v.Revision == rev {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: order %s rev %d not on the driver's page within 10 s (it shows %+v)\nagent log tail:\n%s",
				a.name, id, rev, v, a.logs.Tail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitHealth polls /healthz until cond holds, failing after d with the state.
func (a *agentProc) waitHealth(d time.Duration, what string, cond func(health) bool) health {
	a.t.Helper()
	deadline := time.Now().Add(d)
	var h health
	var err error
	for {
		if a.cmd != nil {
			select {
			case <-a.exited:
				a.t.Fatalf("%s exited while waiting for %s:\n%s", a.name, what, a.logs.Tail(60))
			default:
			}
		}
		if h, err = a.healthz(); err == nil && cond(h) {
			return h
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("%s: no %s within %v: healthz %v (err %v); archive: %s; %s\nagent log tail:\n%s", a.name, what, d,
				h, err, a.r.archiveSummary(), a.r.handled.summary(), a.logs.Tail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitOrders waits until the truck's order book holds every id.
func (a *agentProc) waitOrders(d time.Duration, ids ...string) {
	a.t.Helper()
	deadline := time.Now().Add(d)
	for _, id := range ids {
		for {
			resp, err := a.request("GET", "/api/orders/"+id, nil)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				a.t.Fatalf("%s: order %s not in the truck's book within %v (err %v); %s\nagent log tail:\n%s",
					a.name, id, d, err, a.r.handled.summary(), a.logs.Tail(40))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// act posts a driver action on the agent's HTTP hook. A 200 means the proof is on disk: it is recorded as
// a record that must reach dispatch, with the store epoch of the running agent.
func (a *agentProc) act(id, action, reason string) recKey {
	a.t.Helper()
	k, err := a.tryAct(id, action, reason)
	if err != nil {
		a.t.Fatal(err)
	}
	a.actions = append(a.actions, k)
	return k
}

// tryAct posts a driver action and returns the event's record (not yet noted in a.actions), or why not. It
// may run on any goroutine.
func (a *agentProc) tryAct(id, action, reason string) (recKey, error) {
	body := "{}"
	if reason != "" {
		body = fmt.Sprintf(`{"reason": %q}`, reason)
	}
	resp, err := a.request("POST", "/api/orders/"+id+"/"+action, strings.NewReader(body), "Content-Type", "application/json")
	if err != nil {
		return recKey{}, fmt.Errorf("%s: POST %s/%s: %v", a.name, id, action, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return recKey{}, fmt.Errorf("%s: POST %s/%s: %d %s", a.name, id, action, resp.StatusCode, raw)
	}
	var out struct {
		Event struct {
			Seq uint64 `json:"seq"`
		} `json:"event"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Event.Seq == 0 {
		return recKey{}, fmt.Errorf("%s: POST %s/%s: answer %s (%v)", a.name, id, action, raw, err)
	}
	return recKey{a.name, a.epochs[len(a.epochs)-1], out.Event.Seq}, nil
}

// metrics reads the values of the agent's /metrics: an unlabelled series under its name, a labelled one
// under its name and labels as written (waybill_orders_rejected_total{reason="bad signature"}).
func (a *agentProc) metrics() (map[string]float64, error) {
	resp, err := a.request("GET", "/metrics", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, l := range strings.Split(string(raw), "\n") {
		i := strings.LastIndexByte(l, ' ')
		if strings.HasPrefix(l, "#") || i <= 0 {
			continue
		}
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			out[l[:i]] = v
		}
	}
	return out, nil
}

// metric reads one series of /metrics (name, or name and labels as written), failing t (the test or
// subtest calling) when /metrics does not answer; an absent series is 0.
func (a *agentProc) metric(t testing.TB, series string) float64 {
	t.Helper()
	m, err := a.metrics()
	if err != nil {
		t.Fatalf("%s: %v", a.name, err)
	}
	return m[series]
}

// rejectedSeries is the /metrics series counting the orders the agent's verifier refused for reason.
func rejectedSeries(reason sdk.Reason) string {
	return fmt.Sprintf("waybill_orders_rejected_total{reason=%q}", reason.String())
}

// finish stops the agent with SIGTERM, runs it once more without GPS until its store is empty (everything
// receipted by dispatch) and /healthz says unreceipted 0, stops it, and checks the store file is empty.
func (a *agentProc) finish(d time.Duration) health {
	a.t.Helper()
	a.stop()
	a.start(true)
	h := a.waitHealth(d, "empty store (everything receipted)", func(h health) bool {
		return h.Connected && h.Queue.Critical == 0 && h.Queue.Normal == 0 && h.Queue.Unreceipted == 0
	})
	a.stop()
	st, err := store.Open(a.queueDB(), store.Options{LockTimeout: 5 * time.Second})
	if err != nil {
		a.t.Fatal(err)
	}
	defer st.Close()
	stats := st.Stats()
	if stats.Critical.Records != 0 || stats.Normal.Records != 0 || stats.QuarantinedRecords != 0 {
		a.t.Fatalf("%s: store after the drain: %+v", a.name, stats)
	}
	// The next seq the store hands out: every one below it was handed out. The probe record appended to learn
	// it is removed again, and the agent never runs on this store afterwards without a new drain.
	seqs, err := st.Append(context.Background(), store.Entry{Lane: store.Normal, Kind: 0xee, Data: []byte("probe")})
	if err != nil {
		a.t.Fatal(err)
	}
	if err := st.Ack(context.Background(), seqs...); err != nil {
		a.t.Fatal(err)
	}
	a.next[epochOf(st.Epoch())] = seqs[0]
	return h
}

// storeRecords opens the agent's store (the agent must be stopped; a damaged file is salvaged by this Open)
// and returns its records with their lanes.
func (a *agentProc) storeRecords() (map[recKey]store.Lane, store.Stats) {
	a.t.Helper()
	st, err := store.Open(a.queueDB(), store.Options{LockTimeout: 5 * time.Second})
	if err != nil {
		a.t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.Peek(context.Background(), 1_000_000)
	if err != nil {
		a.t.Fatal(err)
	}
	out := map[recKey]store.Lane{}
	for _, r := range recs {
		e := r.Epoch
		if e == 0 {
			e = st.Epoch()
		}
		out[recKey{a.name, epochOf(e), r.Seq}] = r.Lane
	}
	return out, st.Stats()
}

func epochOf(e uint64) sdk.Epoch {
	var out sdk.Epoch
	for i := range 8 {
		out[i] = byte(e >> (56 - 8*i))
	}
	return out
}

// archiveSummary counts what the archive holds now (read while dispatch runs: the archive is safe for
// concurrent use, so the running office's handle is used when there is one).
func (r *rig) archiveSummary() string {
	if r.office == nil {
		return "(dispatch not running)"
	}
	trucks, err := r.office.Archive.Trucks()
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, tr := range trucks {
		c, _ := r.office.Archive.Counts(tr)
		parts = append(parts, fmt.Sprintf("%s: %d fixes, %d events", tr, c.Fixes, c.Events))
	}
	return strings.Join(parts, "; ")
}

// archiveCount is the number of fixes and events the running office's archive holds for truck.
func (r *rig) archiveCount(truck string) int {
	c, err := r.office.Archive.Counts(truck)
	if err != nil {
		r.t.Fatal(err)
	}
	return c.Fixes + c.Events
}

// expect says what dispatch's record must hold for one agent beyond "every seq 1..max of each epoch".
type expect struct {
	// above: epochs that do not start at seq 1 (a salvaged store's new epoch continues above every seq the
	// old file handed out): their seqs must be above the value and run without a gap from the lowest one.
	above map[sdk.Epoch]uint64
	// mayLose: records that may be missing (they were on a damaged page; they reached dispatch only if they
	// were sent before the damage). Any other missing record is a loss.
	mayLose map[recKey]bool
}

// result is what the archive held for one agent.
type result struct {
	Fixes, Events int
	PerEpoch      map[sdk.Epoch][2]uint64 // first, last seq
	Lost          int                     // of expect.mayLose, missing
}

func (r result) String() string {
	var parts []string
	for e, s := range r.PerEpoch {
		parts = append(parts, fmt.Sprintf("epoch %x: seqs %d..%d", e[:], s[0], s[1]))
	}
	slices.Sort(parts)
	return fmt.Sprintf("%d fixes and %d events (%s)", r.Fixes, r.Events, strings.Join(parts, "; "))
}

// verify reads the archive file (dispatch must be stopped) and checks, for each agent: every record of
// every store epoch the agent had (seqs first..max, fixes and events sharing the numbering) is there
// exactly once (the archive is keyed by (truck, epoch, seq); a seq in both fixes and events is an error),
// except the known lost ones; nothing comes from an epoch the agent never had; every driver action answered
// 200 is there as an event; and dispatch's Handle got each record exactly once.
func (r *rig) verify(agents []*agentProc, ex map[string]expect) map[string]result {
	t := r.t
	t.Helper()
	if r.office != nil {
		t.Fatal("verify: stop dispatch first")
	}
	arch, err := archive.Open(r.archive, archive.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer arch.Close()
	out := map[string]result{}
	r.handled.mu.Lock()
	defer r.handled.mu.Unlock()
	for _, a := range agents {
		fixes, err := arch.Fixes(a.name)
		if err != nil {
			t.Fatal(err)
		}
		events, err := arch.Events(a.name)
		if err != nil {
			t.Fatal(err)
		}
		have := map[recKey]string{}
		for _, f := range fixes {
			have[recKey{a.name, f.Epoch, f.Seq}] = "fix"
		}
		for _, e := range events {
			k := recKey{a.name, e.Event.Epoch, e.Event.RecordSeq}
			if have[k] != "" {
				t.Errorf("%s: %v is both a fix and an event in the archive", a.name, k)
			}
			have[k] = "event"
		}
		res := result{Fixes: len(fixes), Events: len(events), PerEpoch: map[sdk.Epoch][2]uint64{}}
		known := map[sdk.Epoch]bool{}
		for _, e := range a.epochs {
			known[e] = true
		}
		byEpoch := map[sdk.Epoch][]uint64{}
		for k := range have {
			if !known[k.Epoch] {
				t.Errorf("%s: record %v from epoch %x, which the agent never reported (epochs %x)", a.name, k, k.Epoch[:], a.epochs)
			}
			byEpoch[k.Epoch] = append(byEpoch[k.Epoch], k.Seq)
		}
		e := ex[a.name]
		for epoch, next := range a.next {
			if _, ok := byEpoch[epoch]; !ok && next > 1 {
				byEpoch[epoch] = nil
			}
		}
		for epoch, seqs := range byEpoch {
			slices.Sort(seqs)
			first, last := uint64(1), uint64(0)
			if len(seqs) > 0 {
				last = seqs[len(seqs)-1]
			}
			if n, ok := a.next[epoch]; ok {
				if last >= n {
					t.Errorf("%s: epoch %x has seq %d, but the store handed out only up to %d", a.name, epoch[:], last, n-1)
				}
				last = n - 1
			}
			if floor, ok := e.above[epoch]; ok && len(seqs) > 0 {
				first = seqs[0]
				if first <= floor {
					t.Errorf("%s: epoch %x has seq %d, not above %d", a.name, epoch[:], first, floor)
				}
			}
			var missing []uint64
			for s := first; s <= last; s++ {
				k := recKey{a.name, epoch, s}
				if have[k] == "" && !e.mayLose[k] {
					missing = append(missing, s)
				}
			}
			if len(missing) > 0 {
				t.Errorf("%s: LOST %d records of epoch %x (seqs %d..%d): %v", a.name, len(missing), epoch[:], first, last,
					head(missing, 50))
			}
			res.PerEpoch[epoch] = [2]uint64{first, last}
		}
		for k := range e.mayLose {
			if have[k] == "" {
				res.Lost++
			}
		}
		for _, k := range a.actions {
			if have[k] != "event" {
				t.Errorf("%s: the driver's action %v (answered 200) is not in dispatch's record (%q)", a.name, k, have[k])
			}
		}
		// Exactly once at Handle, for every record in the archive.
		var twice, never []string
		for k, kind := range have {
			n := r.handled.fixes[k]
			if kind == "event" {
				n = r.handled.events[k]
			}
			switch {
			case n == 0:
				never = append(never, k.String())
			case n > 1:
				twice = append(twice, fmt.Sprintf("%v x%d", k, n))
			}
		}
		for k := range r.handled.fixes {
			if k.Truck == a.name && have[k] != "fix" {
				t.Errorf("%s: Handle got fix %v that is not in the archive as a fix", a.name, k)
			}
		}
		for k := range r.handled.events {
			if k.Truck == a.name && have[k] != "event" {
				t.Errorf("%s: Handle got event %v that is not in the archive as an event", a.name, k)
			}
		}
		slices.Sort(twice)
		slices.Sort(never)
		if len(twice) > 0 || len(never) > 0 {
			t.Errorf("%s: Handle not exactly once: %d records more than once %v; %d never %v", a.name, len(twice),
				head(twice, 20), len(never), head(never, 20))
		}
		out[a.name] = res
	}
	return out
}

func head[T any](s []T, n int) []T {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitFor polls cond until it holds, failing after d with what and the state state() describes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v: %s", what, d, state())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// peer is a plain MQTT v5 client of the fleet (sdk/transport over mutual TLS) besides the agents and the
// office: an attacker, a sniffer, a second dispatch tool. It records every message it receives.
type peer struct {
	name   string
	c      *transport.Conn
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	got    []transport.Message // guarded by mu
}

// connectPeer connects as cl's certificate with clientID (zero: the certificate's name), a clean session
// that ends with the connection, subscribed to filters (QoS 1), and waits until it is connected. The broker
// may refuse a subscription: subscribeErr says so. It disconnects when t (the test or subtest calling) ends,
// or at close.
func (r *rig) connectPeer(t testing.TB, cl sdktest.Client, clientID string, filters ...string) *peer {
	t.Helper()
	if clientID == "" {
		clientID = cl.Name
	}
	p := &peer{name: clientID, done: make(chan struct{})}
	var subs []transport.Subscription
	for _, f := range filters {
		subs = append(subs, transport.Subscription{Topic: f, QoS: 1})
	}
	c, err := transport.New(transport.Config{Brokers: []string{"mqtts://" + r.b.Addr}, ClientID: clientID,
		CertFile: cl.CertFile, KeyFile: cl.KeyFile, CAFile: cl.CAFile, CleanStart: true, SessionExpiry: -1,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond, Subscriptions: subs,
		OnPublish: func(_ context.Context, m transport.Message) error {
			p.mu.Lock()
			p.got = append(p.got, m)
			p.mu.Unlock()
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	p.c = c
	ctx, cancel := context.WithCancel(r.ctx)
	p.cancel = cancel
	go func() { defer close(p.done); c.Run(ctx) }()
	t.Cleanup(p.close)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := c.Wait(wctx); err != nil {
		t.Fatalf("%s (certificate %s) did not connect: %v (%v)\nbroker log:\n%s", clientID, cl.Name, err,
			c.Current().Err, r.b.Logs())
	}
	return p
}

// publish publishes payload with QoS 1 and returns the broker's answer: nil for a PUBACK below 128, a
// *transport.PublishError with the reason code otherwise.
func (p *peer) publish(topic string, payload []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.c.Publish(ctx, topic, payload, transport.PublishOptions{QoS: 1})
}

// mustPublish publishes and fails t unless the broker accepted.
func (p *peer) mustPublish(t testing.TB, topic string, payload []byte) {
	t.Helper()
	if err := p.publish(topic, payload); err != nil {
		t.Fatalf("%s: publish to %s: %v", p.name, topic, err)
	}
}

// received returns the messages received so far.
func (p *peer) received() []transport.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

// subscribeErr is why the broker refused one of the peer's subscriptions at its connection, or nil.
func (p *peer) subscribeErr() error { return p.c.Current().Info.SubscribeErr }

// close disconnects (a clean DISCONNECT) and waits for the connection to end.
func (p *peer) close() {
	p.cancel()
	<-p.done
}
