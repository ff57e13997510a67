package fleetsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// Config is one simulation. Zero values are documented per field; Dir is required.
type Config struct {
	// Dir holds everything the simulation makes: pki/ (a fleet CA and one certificate per truck, kept and
	// reused by the next run), trucks/NAME/queue.db, broker/ and dispatch/. Required.
	Dir string
	// Trucks is the fleet size. Zero: 10.
	Trucks int
	// Duration is how long the trucks drive. Zero: 1 minute.
	Duration time.Duration
	// Drain bounds the wait, after driving, for every truck's store to empty. Zero: 2 minutes.
	Drain time.Duration
	// StartRate is how many trucks start per second (a fleet does not switch on in one millisecond; a
	// broker restart is the storm, see RestartBrokerAt). Zero: 500; negative: all at once.
	StartRate int
	// ReconnectWindow is the trucks' (transport.Config.ReconnectWindow): after a drop each waits a random
	// time up to it before reconnecting. Zero: 30 s, the agent's default.
	ReconnectWindow time.Duration
	// Dispatch runs the dispatch side: the verified consumer with a durable archive, receipting what it
	// committed. Without it nothing receipts the trucks' records and their stores only grow.
	Dispatch bool
	// ReceiptDelay is dispatch's (dispatch.Config.ReceiptDelay). Zero: dispatch's default (30 s).
	ReceiptDelay time.Duration
	// Confirm makes each truck confirm a delivery at every stop of its route (a delivered event in the
	// critical lane).
	Confirm bool
	// StallDispatch makes dispatch stop reading for this long, from StallDispatchAt (zero: a quarter of
	// Duration). Zero: no stall.
	StallDispatch, StallDispatchAt time.Duration
	// RestartBrokerAt stops the broker the simulation started at this point of the drive and starts it
	// again (its persistence kept). Zero: no restart. Refused with an external broker.
	RestartBrokerAt time.Duration
	// DropLink is the share of trucks (0..1) whose link is cut at DropLinkAt (zero: half of Duration) for
	// DropLinkFor (zero: 1 minute): they reach the broker through a proxy that resets their connections
	// and then accepts none.
	DropLink                float64
	DropLinkAt, DropLinkFor time.Duration
	// Seed varies the routes. Zero is a seed too.
	Seed uint64
	// Workers spreads the trucks over this many worker processes (this program started again, see
	// WorkerArgs), each running every Workers-th truck; this process keeps the broker, dispatch and the
	// fault schedule. One process cannot hold a fleet that needs more open files than its RLIMIT_NOFILE
	// (each truck holds a socket and its store file). Zero: automatic, as few as keep each process under
	// about half its limit (Run raises the soft limit to the hard one first): every truck in this process
	// up to about 6,500 trucks at a 20,000 limit. One: every truck in this process.
	Workers int
	// WorkerArgs are the arguments that make this program (os.Executable) a worker, which then calls
	// RunWorker: waybill passes its hidden `fleet sim-worker`. Nil: none, for a program that checks
	// IsWorker first thing (this package's tests do, in TestMain).
	WorkerArgs []string
	// Progress receives a line a second while the simulation runs. Nil: none.
	Progress io.Writer
	// Logger receives the clients' logs. Nil: discard (10,000 trucks log a lot).
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Dir == "" {
		return c, errors.New("fleetsim: Config.Dir is required")
	}
	if c.Trucks == 0 {
		c.Trucks = 10
	}
	if c.Duration == 0 {
		c.Duration = time.Minute
	}
	if c.Drain == 0 {
		c.Drain = 2 * time.Minute
	}
	if c.StartRate == 0 {
		c.StartRate = 500
	}
	if c.ReconnectWindow == 0 {
		c.ReconnectWindow = 30 * time.Second
	}
	if c.StallDispatchAt == 0 {
		c.StallDispatchAt = c.Duration / 4
	}
	if c.DropLinkAt == 0 {
		c.DropLinkAt = c.Duration / 2
	}
	if c.DropLinkFor == 0 {
		c.DropLinkFor = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Trucks < 1 || c.Trucks > 100_000:
		return c, fmt.Errorf("fleetsim: %d trucks: want 1 to 100000", c.Trucks)
	case c.Duration < 0 || c.Drain < 0 || c.StallDispatch < 0 || c.StallDispatchAt < 0 || c.RestartBrokerAt < 0 ||
		c.DropLinkAt < 0 || c.DropLinkFor < 0 || c.ReceiptDelay < 0 || c.ReconnectWindow < 0:
		return c, errors.New("fleetsim: durations must not be negative")
	case !(c.DropLink >= 0 && c.DropLink <= 1):
		return c, fmt.Errorf("fleetsim: drop-link share %v: want 0 to 1 (0.1 is 10 %% of the trucks)", c.DropLink)
	case c.StallDispatch > 0 && !c.Dispatch:
		return c, errors.New("fleetsim: a dispatch stall needs the dispatch side (Config.Dispatch, --dispatch)")
	case c.Workers < 0 || c.Workers > c.Trucks:
		return c, fmt.Errorf("fleetsim: %d workers for %d trucks: want 0 (automatic) to one per truck", c.Workers, c.Trucks)
	}
	return c, nil
}

// Summary is what a simulation measured. Durations are in seconds, sizes in bytes.
type Summary struct {
	Trucks          int     `json:"trucks"`
	Connected       int     `json:"connected"`        // trucks connected at the end of the drive
	ConnectFailures uint64  `json:"connect_failures"` // failed connection attempts, all trucks (each is retried)
	NeverConnected  int     `json:"never_connected"`  // trucks that never got a connection: must be 0
	ConnectP50      float64 `json:"connect_p50"`      // from a truck's start to its first connection
	ConnectP99      float64 `json:"connect_p99"`
	// ReconnectAll is the time from the broker's restart until every truck was connected again; -1
	// when not every truck came back before the drive ended, 0 without a restart.
	ReconnectAll float64 `json:"reconnect_all"`
	// FixesStored is what the trucks committed to their stores; FixesReceived what dispatch committed
	// (duplicates removed); EventsConfirmed and EventsReceived the same for delivery events.
	FixesStored     uint64 `json:"fixes_stored"`
	FixesReceived   uint64 `json:"fixes_received"`
	EventsConfirmed uint64 `json:"events_confirmed"`
	EventsReceived  uint64 `json:"events_received"`
	// StillQueued is what the trucks' stores hold after the drain (sent again later, not lost); Lost is
	// stored minus received minus still queued: the promise is zero. Without dispatch nothing is received.
	StillQueued       uint64 `json:"still_queued"`
	Lost              int64  `json:"lost"`
	DuplicatesDropped uint64 `json:"duplicates_dropped"` // copies dispatch received again and dropped
	// NewestFixLatency is, for each telemetry message, the time from the truck's commit of its newest fix
	// to dispatch's receipt of it.
	NewestFixLatencyP50 float64 `json:"newest_fix_latency_p50"`
	NewestFixLatencyP99 float64 `json:"newest_fix_latency_p99"`
	DispatchStalled     float64 `json:"dispatch_stalled"` // how long dispatch did not read
	// SimRSS is the simulator's resident memory at its peak: this process's (dispatch, and the trucks
	// when they run in it) plus each worker process's, a sum of peaks (the processes peak at about the
	// same time, at the end of the drive, so it is close to the peak of the sum and never below it).
	// BrokerRSS is the broker's peak, when the simulation started it.
	SimRSS    uint64  `json:"sim_rss"`
	BrokerRSS uint64  `json:"broker_rss"`
	Elapsed   float64 `json:"elapsed"`
}

// counters are dispatch's: what it received, and the newest-fix latency. The trucks' commits arrive with
// their side's reports, so a commit and its receipt are matched in either order.
type counters struct {
	fixesReceived, eventsRecv atomic.Uint64

	latMu     sync.Mutex
	latencies []time.Duration // newest-fix latency samples, bounded by maxSamples
	latSeen   uint64
	commits   map[string]time.Time // commit key -> when the truck committed, not yet received
	early     map[string]time.Time // commit key -> when dispatch received it, the commit not yet reported
	swept     time.Time
}

func newCounters() *counters {
	return &counters{commits: map[string]time.Time{}, early: map[string]time.Time{}}
}

// committed notes a truck's commit whose newest fix is key.
func (c *counters) committed(key string, at time.Time) {
	c.latMu.Lock()
	defer c.latMu.Unlock()
	if got, ok := c.early[key]; ok {
		delete(c.early, key)
		c.sample(got.Sub(at))
		return
	}
	c.commits[key] = at
}

// received notes dispatch's receipt of a message whose newest fix is key.
func (c *counters) received(key string, now time.Time) {
	c.latMu.Lock()
	defer c.latMu.Unlock()
	if at, ok := c.commits[key]; ok {
		delete(c.commits, key)
		c.sample(now.Sub(at))
		return
	}
	c.early[key] = now
	// A receipt whose commit is not reported within seconds never will be (a message that does not end
	// where a commit did): forget those now and then.
	if now.Sub(c.swept) > 10*time.Second {
		c.swept = now
		for k, t := range c.early {
			if now.Sub(t) > 30*time.Second {
				delete(c.early, k)
			}
		}
	}
}

// maxSamples bounds the latency samples kept (reservoir sampling beyond).
const maxSamples = 100_000

// sample adds a latency; latMu is held.
func (c *counters) sample(d time.Duration) {
	c.latSeen++
	if len(c.latencies) < maxSamples {
		c.latencies = append(c.latencies, d)
		return
	}
	// Reservoir sampling keeps every message equally likely to count, with bounded memory.
	if j := pseudoRand(c.latSeen) % c.latSeen; j < maxSamples {
		c.latencies[j] = d
	}
}

func pseudoRand(x uint64) uint64 { // splitmix64: enough to pick a reservoir slot
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (c *counters) percentiles() (p50, p99 float64) {
	c.latMu.Lock()
	defer c.latMu.Unlock()
	return percentile(c.latencies, 0.5), percentile(c.latencies, 0.99)
}

// percentile returns the q-quantile of ds in seconds (nearest rank); 0 for none. It sorts ds.
func percentile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[min(max(i, 0), len(ds)-1)].Seconds()
}

func commitKey(truck string, newest time.Time) string {
	return truck + "\x00" + newest.UTC().Format(time.RFC3339Nano)
}

// Run sets the fleet up (reusing Dir's PKI from an earlier run), drives it for Config.Duration with the
// faults asked for, drains, stops everything it started and returns what it measured. It raises this
// process's soft open-file limit to the hard one first, which Mosquitto and the workers inherit. It
// returns early, with what it has, when ctx ends (the trucks' side gets finishGrace to report).
func Run(ctx context.Context, cfg Config) (Summary, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Summary{}, err
	}
	began := time.Now()
	limit, err := raiseFileLimit()
	if err != nil {
		return Summary{}, err
	}
	workers, err := workersFor(cfg, limit)
	if err != nil {
		return Summary{}, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return Summary{}, fmt.Errorf("fleetsim: %w", err)
	}
	p, names, err := fleetPKI(cfg.Dir, cfg.Trucks)
	if err != nil {
		return Summary{}, err
	}
	b, err := startBroker(ctx, p, filepath.Join(cfg.Dir, "broker"), cfg.Trucks)
	if err != nil {
		return Summary{}, err
	}
	defer b.stop()
	cfg.Logger.Info("fleetsim: starting", "trucks", cfg.Trucks, "workers", workers, "open_files", limit)
	s := &sim{cfg: cfg, pki: p, broker: b, c: newCounters(), workers: workers, failed: make(chan struct{})}
	return s.run(ctx, names, began)
}

// fleetPKI opens Dir/pki or creates it, and issues what the fleet lacks: a broker, a dispatch and one
// certificate per truck (truck-00001 ...), in one batch.
func fleetPKI(dir string, trucks int) (*pki.PKI, []string, error) {
	pcfg := pki.Config{Dir: filepath.Join(dir, "pki")}
	p, err := pki.Open(pcfg)
	if errors.Is(err, os.ErrNotExist) {
		p, err = pki.Init(pcfg, pki.CAOptions{Fleet: "fleetsim"})
	}
	if err != nil {
		return nil, nil, fmt.Errorf("fleetsim: %w", err)
	}
	have := map[string]bool{}
	for _, role := range []pki.Role{pki.RoleTruck, pki.RoleDispatch, pki.RoleBroker} {
		ns, err := p.Names(role)
		if err != nil {
			return nil, nil, err
		}
		for _, n := range ns {
			have[n] = true
		}
	}
	for _, x := range []struct {
		role pki.Role
		name string
	}{{pki.RoleBroker, brokerName}, {pki.RoleDispatch, dispatchName}} {
		if !have[x.name] {
			if _, err := p.Issue(x.role, x.name, pki.IssueOptions{}); err != nil {
				return nil, nil, err
			}
		}
	}
	names := make([]string, trucks)
	var missing []string
	for i := range names {
		names[i] = truckName(i)
		if !have[names[i]] {
			missing = append(missing, names[i])
		}
	}
	if _, err := p.IssueMany(pki.RoleTruck, missing, pki.IssueOptions{}); err != nil {
		return nil, nil, err
	}
	return p, names, nil
}

const (
	brokerName   = "sim-broker"
	dispatchName = "sim-dispatch"
)

// truckName is the name of the fleet's i-th truck (from 0).
func truckName(i int) string { return fmt.Sprintf("truck-%05d", i+1) }
