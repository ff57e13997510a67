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

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
)

// Config is one simulation. Zero values are documented per field; Dir is required.
type Config struct {
	// Dir holds everything the simulation makes: pki/ (a fleet CA and one certificate per truck, kept and
	// reused by the next run; not with Broker), trucks/NAME/queue.db, broker/ (not with Broker) and
	// dispatch/. Required.
	Dir string
	// Broker is an existing broker to run against, mqtts://HOST:PORT, configured by `waybill broker config`
	// from the PKI in PKIDir. The simulation issues what it lacks into that PKI (trucks and, with Dispatch,
	// a dispatch identity, named with NamePrefix; a later run reuses them) and tells the running broker
	// about them as `waybill broker sync` does (its dynamic security plugin). Empty: the simulation
	// configures and starts its own Mosquitto, with its own PKI in Dir/pki.
	Broker string
	// PKIDir is the fleet PKI the external Broker was configured from. Required with Broker, refused
	// without it.
	PKIDir string
	// NamePrefix starts the simulation's identity names, as `waybill pki issue --name-prefix` does: trucks
	// PREFIX00001, PREFIX00002 ..., dispatch PREFIXdispatch. In a real fleet's PKI (Broker) it keeps them
	// apart from the real identities: pick one no real name starts with. Zero: "sim-".
	NamePrefix string
	// Prefix is the topic prefix of the broker's access rules (`waybill broker config --prefix`). Zero:
	// "fleet", the default.
	Prefix string
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
	// again (its persistence kept). Zero: no restart. Refused with Broker: the simulation cannot restart a
	// broker it did not start.
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
	if c.NamePrefix == "" {
		c.NamePrefix = "sim-"
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
	case c.Broker == "" && c.PKIDir != "":
		return c, errors.New("fleetsim: a PKI directory (Config.PKIDir, --pki) is for an external broker (Config.Broker, --broker): without one the simulation makes its own in Dir/pki")
	case c.Broker != "" && c.PKIDir == "":
		return c, errors.New("fleetsim: an external broker (Config.Broker, --broker) needs the PKI it was configured from (Config.PKIDir, --pki DIR)")
	case c.Broker != "" && c.RestartBrokerAt > 0:
		return c, fmt.Errorf("fleetsim: a broker restart (Config.RestartBrokerAt, --restart-broker-at) needs a broker the simulation started; it cannot restart %s: restart it yourself during the run", c.Broker)
	}
	if c.Broker != "" {
		if _, err := brokerAddr(c.Broker); err != nil {
			return c, err
		}
	}
	for _, n := range []string{truckName(c.NamePrefix, c.Trucks-1), dispatchName(c.NamePrefix)} {
		if err := pki.ValidateName(n); err != nil {
			return c, fmt.Errorf("fleetsim: name prefix %q: %w", c.NamePrefix, err)
		}
	}
	if err := (sdk.Topics{Prefix: c.Prefix}).Validate(); err != nil {
		return c, fmt.Errorf("fleetsim: %w", err)
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
	SimRSS uint64 `json:"sim_rss"`
	// DispatchRSS is this process's peak: the dispatch side, the broker's supervision and the faults. With
	// worker processes that is all it holds; with every truck in this process (Workers 1) it holds them
	// too, and DispatchRSS equals SimRSS.
	DispatchRSS uint64 `json:"dispatch_rss"`
	// BrokerRSS is the peak of the Mosquitto the simulation started, over its restarts. Absent with an
	// external broker (Config.Broker): the simulation does not measure it.
	BrokerRSS uint64 `json:"broker_rss,omitempty"`
	// CPU time, user plus system, in seconds (utime+stime of /proc/PID/stat): the broker's (every run of
	// the Mosquitto the simulation started; absent with an external broker), this process's from the
	// moment its PKI and broker were ready (the dispatch side, as for DispatchRSS; issuing certificates is
	// not counted), and the trucks' (the worker processes', summed; with every truck in this process,
	// Workers 1, this process's: TrucksCPU then equals DispatchCPU).
	BrokerCPU   float64 `json:"broker_cpu_s,omitempty"`
	DispatchCPU float64 `json:"dispatch_cpu_s"`
	TrucksCPU   float64 `json:"trucks_cpu_s"`
	Elapsed     float64 `json:"elapsed"`
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

// Run sets the fleet up (reusing the certificates of an earlier run), drives it for Config.Duration with
// the faults asked for, drains, stops everything it started and returns what it measured. It raises this
// process's soft open-file limit to the hard one first, which Mosquitto and the workers inherit. It
// returns early, with what it has, when ctx ends (the trucks' side gets finishGrace to report).
func Run(ctx context.Context, cfg Config) (Summary, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Summary{}, err
	}
	s := &sim{cfg: cfg, c: newCounters(), failed: make(chan struct{}), began: time.Now()}
	limit, err := raiseFileLimit()
	if err != nil {
		return Summary{}, err
	}
	if s.workers, err = workersFor(cfg, limit); err != nil {
		return Summary{}, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return Summary{}, fmt.Errorf("fleetsim: %w", err)
	}
	p, names, err := fleetPKI(cfg)
	if err != nil {
		return Summary{}, err
	}
	s.pki = p
	if cfg.Broker == "" {
		b, err := startBroker(ctx, p, filepath.Join(cfg.Dir, "broker"), cfg)
		if err != nil {
			return Summary{}, err
		}
		defer b.stop()
		s.broker, s.brokerAddr = b, b.addr
	} else {
		s.brokerAddr, _ = brokerAddr(cfg.Broker) // checked by withDefaults
		if err := tellBroker(ctx, p, cfg); err != nil {
			return Summary{}, err
		}
	}
	cfg.Logger.Info("fleetsim: starting", "trucks", cfg.Trucks, "workers", s.workers, "open_files", limit, "broker", s.brokerAddr)
	return s.run(ctx, names)
}

// pkiDir is where the fleet's PKI is: Config.PKIDir, or the simulation's own in Dir/pki.
func (c Config) pkiDir() string {
	if c.PKIDir != "" {
		return c.PKIDir
	}
	return filepath.Join(c.Dir, "pki")
}

// fleetPKI opens the fleet's PKI (Config.PKIDir, or Dir/pki, created on the first run) and issues what
// the simulation lacks, one batch per role: a certificate per truck (PREFIX00001 ...), a dispatch one
// with Config.Dispatch, and a broker one for the Mosquitto it starts.
func fleetPKI(cfg Config) (*pki.PKI, []string, error) {
	p, err := pki.Open(pki.Config{Dir: cfg.pkiDir()})
	if cfg.Broker == "" && errors.Is(err, os.ErrNotExist) {
		p, err = pki.Init(pki.Config{Dir: cfg.pkiDir()}, pki.CAOptions{Fleet: "fleetsim"})
	}
	if err != nil {
		return nil, nil, fmt.Errorf("fleetsim: %w", err)
	}
	roles := []pki.Role{pki.RoleTruck, pki.RoleDispatch, pki.RoleBroker}
	have := map[pki.Identity]bool{} // valid ones: a revoked or expired name is issued again
	for _, role := range roles {
		ns, err := p.Names(role)
		if err != nil {
			return nil, nil, err
		}
		if role == pki.RoleTruck && cfg.Broker != "" && cfg.Dispatch {
			if err := onlySimulatedTrucks(p, ns, cfg.NamePrefix); err != nil {
				return nil, nil, err
			}
		}
		for _, n := range ns {
			have[pki.Identity{Name: n, Role: role}] = true
		}
	}
	names := make([]string, cfg.Trucks)
	for i := range names {
		names[i] = truckName(cfg.NamePrefix, i)
	}
	want := map[pki.Role][]string{pki.RoleTruck: names}
	if cfg.Dispatch {
		want[pki.RoleDispatch] = []string{dispatchName(cfg.NamePrefix)}
	}
	if cfg.Broker == "" {
		want[pki.RoleBroker] = []string{brokerName}
	}
	for _, role := range roles {
		var missing []string
		for _, n := range want[role] {
			if !have[pki.Identity{Name: n, Role: role}] {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			continue
		}
		if _, err := p.IssueMany(role, missing, pki.IssueOptions{}); err != nil {
			return nil, nil, fmt.Errorf("fleetsim: %w", err)
		}
	}
	return p, names, nil
}

// brokerName is the certificate of the Mosquitto the simulation starts, in its own PKI.
const brokerName = "sim-broker"

// truckName is the name of the fleet's i-th truck (from 0): PREFIX00001 ..., as `waybill pki issue
// --count N --name-prefix PREFIX` names them.
func truckName(prefix string, i int) string { return fmt.Sprintf("%s%05d", prefix, i+1) }

// dispatchName is the simulation's dispatch identity.
func dispatchName(prefix string) string { return prefix + "dispatch" }
