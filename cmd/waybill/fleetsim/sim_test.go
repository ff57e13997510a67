package fleetsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

func TestMain(m *testing.M) {
	if IsWorker() { // Run started this test binary as one of its workers
		if slices.Contains(os.Args[1:], crashArg) {
			fmt.Fprintln(os.Stderr, "worker: crashing as asked")
			os.Exit(3)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := RunWorker(ctx)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// crashArg makes a worker started from this test binary exit at once, with a line on stderr.
const crashArg = "fleetsim-test-crash"

// 200 real truck clients on real Mosquitto, with dispatch stalled for 10 s and the broker restarted
// mid-drive: every truck comes back, and every fix and delivery a truck stored reaches dispatch.
func TestFleetSurvivesStallAndRestart(t *testing.T) {
	sdktest.MosquittoPath(t) // fails with the install command when Mosquitto is missing
	t.Parallel()
	var progress sdktest.SyncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sum, err := Run(ctx, Config{
		Dir: t.TempDir(), Trucks: 200, Duration: 45 * time.Second, Drain: 90 * time.Second, StartRate: 200,
		Dispatch: true, ReceiptDelay: time.Second, Confirm: true, ReconnectWindow: 3 * time.Second,
		StallDispatch: 10 * time.Second, StallDispatchAt: 5 * time.Second, RestartBrokerAt: 25 * time.Second,
		Progress: &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.MarshalIndent(sum, "", "  ")
	t.Logf("summary:\n%s\nprogress (tail):\n%s", js, progress.Tail(5))
	if sum.NeverConnected != 0 {
		t.Errorf("%d trucks never connected (after retries)", sum.NeverConnected)
	}
	if sum.Connected != 200 {
		t.Errorf("%d of 200 trucks connected at the end", sum.Connected)
	}
	if sum.ReconnectAll <= 0 {
		t.Errorf("reconnect_all %v: every truck should have come back after the restart", sum.ReconnectAll)
	}
	if sum.FixesStored == 0 || sum.EventsConfirmed == 0 {
		t.Fatalf("nothing stored (%d fixes, %d events): the drive did not run", sum.FixesStored, sum.EventsConfirmed)
	}
	if sum.Lost != 0 || sum.StillQueued != 0 || sum.FixesReceived != sum.FixesStored || sum.EventsReceived != sum.EventsConfirmed {
		t.Errorf("lost %d, still queued %d; fixes %d stored / %d received, events %d / %d",
			sum.Lost, sum.StillQueued, sum.FixesStored, sum.FixesReceived, sum.EventsConfirmed, sum.EventsReceived)
	}
	if sum.DispatchStalled < 9 {
		t.Errorf("dispatch stalled %.1f s, want about 10", sum.DispatchStalled)
	}
	if sum.BrokerRSS == 0 || sum.SimRSS == 0 {
		t.Errorf("resident memory not measured: broker %d, sim %d", sum.BrokerRSS, sum.SimRSS)
	}
	// One process holds the trucks and dispatch: its memory and CPU are both.
	if sum.DispatchRSS != sum.SimRSS || sum.TrucksCPU != sum.DispatchCPU {
		t.Errorf("in one process: dispatch_rss %d, sim_rss %d; dispatch_cpu_s %v, trucks_cpu_s %v: want each pair equal",
			sum.DispatchRSS, sum.SimRSS, sum.DispatchCPU, sum.TrucksCPU)
	}
	checkCPU(t, sum, 1)
	if !strings.Contains(progress.String(), "[dispatch stalled]") {
		t.Error("the progress line never showed the stall")
	}
}

func TestConfigRefusals(t *testing.T) {
	for _, c := range []Config{
		{},
		{Dir: "x", Trucks: -1},
		{Dir: "x", DropLink: 1.5},
		{Dir: "x", StallDispatch: time.Second},
		{Dir: "x", Duration: -time.Second},
		{Dir: "x", Workers: -1},
		{Dir: "x", Trucks: 2, Workers: 3},
		{Dir: "x", PKIDir: "p"},
		{Dir: "x", Broker: "mqtts://127.0.0.1:8883"},
		{Dir: "x", Broker: "tcp://127.0.0.1:1883", PKIDir: "p"},
		{Dir: "x", Broker: "mqtts://127.0.0.1", PKIDir: "p"},
		{Dir: "x", NamePrefix: "Sim_"},
		{Dir: "x", Prefix: "a/+"},
	} {
		if _, err := c.withDefaults(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	c := Config{Dir: "x", Broker: "mqtts://127.0.0.1:8883", PKIDir: "p", RestartBrokerAt: time.Second}
	if _, err := c.withDefaults(); err == nil || !strings.Contains(err.Error(), "cannot restart mqtts://127.0.0.1:8883") {
		t.Errorf("a restart of an external broker: %v", err)
	}
	var b bytes.Buffer
	if _, err := Run(context.Background(), Config{Dir: "x", DropLink: 2, Progress: &b}); err == nil || !strings.Contains(err.Error(), "0 to 1") {
		t.Errorf("drop-link 2: %v", err)
	}
}

// 40 trucks in two worker processes (this test binary, see TestMain), with dispatch in the parent
// stalled for a while and the broker restarted: every truck counted once, every fix and delivery a truck
// stored received, the newest-fix latency matched across the processes.
func TestFleetInWorkers(t *testing.T) {
	sdktest.MosquittoPath(t)
	t.Parallel()
	var progress sdktest.SyncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 40
	sum, err := Run(ctx, Config{
		Dir: t.TempDir(), Trucks: n, Workers: 2, Duration: 16 * time.Second, Drain: time.Minute, StartRate: 100,
		Dispatch: true, ReceiptDelay: time.Second, Confirm: true, ReconnectWindow: 2 * time.Second,
		StallDispatch: 3 * time.Second, StallDispatchAt: 2 * time.Second, RestartBrokerAt: 7 * time.Second,
		DropLink: 0.1, DropLinkAt: 3 * time.Second, DropLinkFor: 2 * time.Second,
		Progress: &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	own, _ := procStatus(0, "VmHWM")
	js, _ := json.MarshalIndent(sum, "", "  ")
	t.Logf("summary:\n%s\nprogress (tail):\n%s", js, progress.Tail(5))
	if sum.Trucks != n || sum.Connected != n || sum.NeverConnected != 0 {
		t.Errorf("trucks %d, connected at the end %d, never connected %d: want %d, %d, 0", sum.Trucks, sum.Connected, sum.NeverConnected, n, n)
	}
	if sum.ReconnectAll <= 0 {
		t.Errorf("reconnect_all %v: every truck should have come back after the restart", sum.ReconnectAll)
	}
	if sum.FixesStored == 0 {
		t.Fatal("no fix stored: the drive did not run")
	}
	if sum.Lost != 0 || sum.StillQueued != 0 || sum.FixesReceived != sum.FixesStored || sum.EventsReceived != sum.EventsConfirmed {
		t.Errorf("lost %d, still queued %d; fixes %d stored / %d received, events %d / %d",
			sum.Lost, sum.StillQueued, sum.FixesStored, sum.FixesReceived, sum.EventsConfirmed, sum.EventsReceived)
	}
	if sum.NewestFixLatencyP50 <= 0 {
		t.Error("no newest-fix latency: the workers' commits were not matched to dispatch's receipts")
	}
	if sum.DispatchStalled <= 0 { // from the first delivery in the stall to its end: up to 3 s
		t.Error("dispatch never stalled")
	}
	if sum.SimRSS < own+10<<20 {
		t.Errorf("sim_rss %d MB, this process's peak %d MB: the workers' memory is not in it", sum.SimRSS>>20, own>>20)
	}
	// The parent holds dispatch, not the trucks: sim_rss has the workers' memory on top.
	if sum.DispatchRSS == 0 || sum.DispatchRSS+10<<20 > sum.SimRSS {
		t.Errorf("dispatch_rss %d MB, sim_rss %d MB: want the parent's peak alone", sum.DispatchRSS>>20, sum.SimRSS>>20)
	}
	checkCPU(t, sum, 2)
	if !strings.Contains(progress.String(), fmt.Sprintf("trucks %d/%d", n, n)) {
		t.Errorf("the progress line never counted every truck:\n%s", progress.Tail(5))
	}
}

// checkCPU checks the CPU times are measured, and in seconds: each above zero and below what the
// processes could use in the run (procs of them for the trucks).
func checkCPU(t *testing.T, sum Summary, procs int) {
	t.Helper()
	most := sum.Elapsed * float64(runtime.NumCPU())
	for _, c := range []struct {
		name      string
		got, most float64
	}{{"broker_cpu_s", sum.BrokerCPU, most}, {"dispatch_cpu_s", sum.DispatchCPU, most}, {"trucks_cpu_s", sum.TrucksCPU, most * float64(procs)}} {
		if !(c.got > 0 && c.got <= c.most) {
			t.Errorf("%s %v: want above 0 and at most %.0f s (%.0f s elapsed, %d cores)", c.name, c.got, c.most, sum.Elapsed, runtime.NumCPU())
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and a parenthesis; utime 250 and stime 50 ticks.
	const stat = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194304 1 0 0 0 250 50 0 0 20 0 3 0 100 0 0"
	if got, err := parseStatCPU(stat); err != nil || got != 3 {
		t.Errorf("parseStatCPU: %v, %v; want 3 s", got, err)
	}
	if _, err := parseStatCPU("4242 (x) S 1"); err == nil {
		t.Error("a short line accepted")
	}
	before, err := procCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); { // burn CPU
	}
	if after, _ := procCPU(0); after-before < 0.1 {
		t.Errorf("this process used %v s of CPU in 300 ms of spinning", after-before)
	}
}

// A worker that dies is the run's error, naming the worker and quoting its stderr.
func TestWorkerDeathIsReported(t *testing.T) {
	sdktest.MosquittoPath(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Run(ctx, Config{Dir: t.TempDir(), Trucks: 2, Workers: 2, Duration: time.Second, WorkerArgs: []string{crashArg}})
	if err == nil || !strings.Contains(err.Error(), " of 2 (pid ") || !strings.Contains(err.Error(), "exit status 3") ||
		!strings.Contains(err.Error(), "crashing as asked") {
		t.Fatalf("got %v, want a worker's exit status 3 and its stderr", err)
	}
}

func TestWorkersFor(t *testing.T) {
	for _, c := range []struct {
		cfg   Config
		limit uint64
		want  int
	}{
		{Config{Trucks: 200}, 20_000, 1},
		{Config{Trucks: 5000}, 20_000, 1},
		{Config{Trucks: 10_000}, 20_000, 2},
		{Config{Trucks: 10_000, DropLink: 1}, 20_000, 3},
		{Config{Trucks: 200}, 1024, 2},
		{Config{Trucks: 10_000, Workers: 4}, 20_000, 4},
	} {
		if got, err := workersFor(c.cfg, c.limit); err != nil || got != c.want {
			t.Errorf("%d trucks (drop-link %v, workers %d) at %d open files: %d workers (%v), want %d",
				c.cfg.Trucks, c.cfg.DropLink, c.cfg.Workers, c.limit, got, err, c.want)
		}
	}
	if _, err := workersFor(Config{Trucks: 10_000, Workers: 1}, 20_000); err == nil || !strings.Contains(err.Error(), "more workers") {
		t.Errorf("10,000 trucks in one process at 20,000 open files: %v", err)
	}
}

// A small fleet with dispatch on a Mosquitto the simulation did not start, configured from a fleet PKI
// by the repository's own tools: the simulation issues its identities into that PKI and tells the running
// broker, every truck connects and nothing is lost. A second run, in two workers, reuses them.
func TestFleetOnExternalBroker(t *testing.T) {
	sdktest.MosquittoPath(t)
	t.Parallel()
	p, err := pki.Init(pki.Config{Dir: filepath.Join(t.TempDir(), "pki")}, pki.CAOptions{Fleet: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Issue(pki.RoleBroker, sdktest.BrokerName, pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	b := sdktest.StartMosquitto(t, sdktest.Options{PKI: p})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 20
	run := func(workers int, drive time.Duration) (Summary, string) {
		t.Helper()
		var progress sdktest.SyncBuffer
		sum, err := Run(ctx, Config{
			Dir: t.TempDir(), Broker: "mqtts://" + b.Addr, PKIDir: p.Dir(), Trucks: n, Workers: workers,
			Duration: drive, Drain: 30 * time.Second, StartRate: 100, Dispatch: true, ReceiptDelay: time.Second,
			Confirm: true, Progress: &progress,
		})
		if err != nil {
			t.Fatalf("%v\nprogress:\n%s\nbroker:\n%s", err, progress.String(), b.Logs())
		}
		js, _ := json.Marshal(sum)
		t.Logf("summary: %s\nprogress (tail):\n%s", js, progress.Tail(4))
		if sum.Connected != n || sum.NeverConnected != 0 || sum.FixesStored == 0 || sum.Lost != 0 ||
			sum.StillQueued != 0 || sum.FixesReceived != sum.FixesStored || sum.EventsReceived != sum.EventsConfirmed {
			t.Errorf("connected %d of %d (never %d), fixes %d stored / %d received, events %d / %d, still queued %d, lost %d",
				sum.Connected, n, sum.NeverConnected, sum.FixesStored, sum.FixesReceived, sum.EventsConfirmed,
				sum.EventsReceived, sum.StillQueued, sum.Lost)
		}
		if sum.BrokerRSS != 0 || sum.BrokerCPU != 0 || strings.Contains(string(js), `"broker_`) {
			t.Errorf("an external broker measured: %s", js)
		}
		return sum, progress.String()
	}

	_, progress := run(1, 4*time.Second)
	if !strings.Contains(progress, fmt.Sprintf("%d created", n+1)) {
		t.Errorf("the broker was not told %d trucks and a dispatch:\n%s", n, progress)
	}
	issued, err := p.List()
	if err != nil {
		t.Fatal(err)
	}
	trucks, _ := p.Names(pki.RoleTruck)
	dispatch, _ := p.Names(pki.RoleDispatch)
	brokers, _ := p.Names(pki.RoleBroker)
	if len(trucks) != n || trucks[0] != "sim-00001" || !slices.Equal(dispatch, []string{"sim-dispatch"}) ||
		!slices.Equal(brokers, []string{sdktest.BrokerName}) {
		t.Errorf("the PKI holds trucks %v, dispatch %v, brokers %v", trucks, dispatch, brokers)
	}

	_, progress = run(2, 2*time.Second)
	if again, _ := p.List(); len(again) != len(issued) {
		t.Errorf("the second run issued %d certificates more: want the first run's reused", len(again)-len(issued))
	}
	if !strings.Contains(progress, "0 created") {
		t.Errorf("the second run told the broker something new:\n%s", progress)
	}
}

// With a real truck in the PKI, the dispatch side is refused against an external broker: it would
// receipt that truck's records.
func TestExternalDispatchBesideRealTrucks(t *testing.T) {
	p, err := pki.Init(pki.Config{Dir: filepath.Join(t.TempDir(), "pki")}, pki.CAOptions{Fleet: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Issue(pki.RoleTruck, "truck-7", pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Dir: t.TempDir(), Broker: "mqtts://127.0.0.1:1", PKIDir: p.Dir(), Trucks: 2, Dispatch: true}
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "not the simulation's (truck-7)") {
		t.Fatalf("got %v, want a refusal naming truck-7", err)
	}
	if trucks, _ := p.Names(pki.RoleTruck); len(trucks) != 1 {
		t.Errorf("the refused run issued trucks: %v", trucks)
	}
}
