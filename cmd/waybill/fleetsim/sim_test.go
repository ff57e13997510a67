package fleetsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

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
	} {
		if _, err := c.withDefaults(); err == nil {
			t.Errorf("%+v accepted", c)
		}
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
	if !strings.Contains(progress.String(), fmt.Sprintf("trucks %d/%d", n, n)) {
		t.Errorf("the progress line never counted every truck:\n%s", progress.Tail(5))
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
