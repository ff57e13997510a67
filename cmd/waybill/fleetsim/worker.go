package fleetsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest/faultproxy"
)

// WorkerEnv is set ("1") in the environment of the worker processes Run starts. A program Run may start
// as a worker checks IsWorker and then calls RunWorker: this package's tests do in TestMain, waybill in
// its hidden `fleet sim-worker` subcommand (Config.WorkerArgs).
const WorkerEnv = "WAYBILL_FLEETSIM_WORKER"

// IsWorker reports whether Run started this process as a worker.
func IsWorker() bool { return os.Getenv(WorkerEnv) == "1" }

// RunWorker is a worker process's life: it reads its share of the fleet and its orders from the parent
// on stdin, runs those trucks (each its own client, store, certificate and connection, and its own
// drop-link proxy), and writes its counts as JSON lines on stdout, which nothing else may write to;
// its logs go to stderr. It returns when the parent has its final counts, when stdin ends (the parent is
// gone) or when ctx does.
func RunWorker(ctx context.Context) error {
	if !IsWorker() {
		return errors.New("fleetsim: not a worker: Run starts its workers itself, with " + WorkerEnv + "=1")
	}
	if _, err := raiseFileLimit(); err != nil {
		return err
	}
	// A non-blocking stdin is one the runtime's poller can interrupt: closing it ends a pending read of
	// the parent's orders when ctx ends.
	if err := syscall.SetNonblock(0, true); err != nil {
		return fmt.Errorf("fleetsim worker: stdin: %w", err)
	}
	return work(ctx, os.NewFile(0, "stdin"), os.Stdout, nil, true)
}

// spec is the first line a worker reads: its share of the fleet.
type spec struct {
	Config        Config      // Progress, Logger and WorkerArgs left out
	Share, Shares int         // the worker's trucks are those whose index i has i % Shares == Share
	BrokerAddr    string      // host:port of the broker
	LogLevel      *slog.Level // what the parent's logger takes; nil: nothing
}

// order is a line from the parent after the spec: Start, then EndDrive, then Finish (with ctx ended
// early, the parent may send Finish at once).
type order struct {
	Start    int64 `json:",omitempty"` // Unix ns: the fleet's start; truck i starts i/StartRate later
	EndDrive bool  `json:",omitempty"` // stop driving, commit what is pending, report Driven
	Finish   bool  `json:",omitempty"` // report Final and stop
}

// report is a worker's line to the parent: Ready once, then counts every second, Driven once, Final last;
// or Err. The counts are the worker's totals when the report was made.
type report struct {
	Ready  bool        `json:",omitempty"`
	Driven bool        `json:",omitempty"` // the drive is over, every fix committed; Connected is at its end
	Final  bool        `json:",omitempty"` // the last report: Trucks and RSS are set
	Err    string      `json:",omitempty"`
	Trucks []truckStat `json:",omitempty"`
	RSS    uint64      `json:",omitempty"` // the worker process's peak resident memory
	CPU    float64     `json:",omitempty"` // the CPU seconds the worker process used, user and system
	// SlowCommits counts the trucks' store commits that took longer than slowCommit; CommitMax is the
	// longest, in ns.
	SlowCommits uint64 `json:",omitempty"`
	CommitMax   int64  `json:",omitempty"`

	Started, Connected           int
	FixesStored, EventsConfirmed uint64
	Queued                       uint64
	Commits                      []commit `json:",omitempty"` // since the last report
}

// commit is a truck's commit of fixes: its key (commitKey) and when, in Unix ns.
type commit struct {
	Key string
	At  int64
}

// truckStat is one truck at the end, what the summary needs of it.
type truckStat struct {
	First    int64  // ns from its start to its first connection; 0: never connected
	Last     int64  // Unix ns of its last connection
	Failures uint64 // failed connection attempts
	Queued   uint64 // records its store still holds
}

var errParentGone = errors.New("fleetsim worker: the parent's orders ended before Finish")

// work runs a share of the fleet on the orders read from in, reporting to out. It is the same for a
// worker process (RunWorker, log nil: from the spec, to stderr) and for the trucks Run keeps in its own
// process (ownProcess false: its memory is the parent's).
func work(ctx context.Context, in io.ReadCloser, out io.Writer, log *slog.Logger, ownProcess bool) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup // the order reader and its closer
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		in.Close() // ends a pending read of an order
	}()
	dec := json.NewDecoder(in)
	var sp spec
	if err := dec.Decode(&sp); err != nil {
		return fmt.Errorf("fleetsim worker: reading its share: %w", err)
	}
	orders := make(chan order, 4) // the protocol has three
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(orders)
		for {
			var o order
			if dec.Decode(&o) != nil {
				return
			}
			select {
			case orders <- o:
			case <-ctx.Done():
				return
			}
		}
	}()

	rep := &reporter{enc: json.NewEncoder(out)}
	defer func() {
		if err != nil {
			rep.send(func() report { return report{Err: err.Error()} })
		}
	}()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
		if sp.LogLevel != nil {
			log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: *sp.LogLevel}))
		}
	}
	p, err := newPart(sp, log)
	if err != nil {
		return err
	}
	clientsCtx, stopClients := context.WithCancel(ctx)
	var clients sync.WaitGroup // every truck's client and watcher
	defer func() {
		stopClients()
		clients.Wait()
		p.close()
	}()
	if err := rep.send(func() report { return report{Ready: true} }); err != nil {
		return err
	}

	var o order
	select {
	case o = <-orders:
	case <-ctx.Done():
		return ctx.Err()
	}
	if o.Start == 0 {
		return errParentGone
	}
	drive, endDrive := context.WithCancel(ctx)
	driven := p.start(clientsCtx, drive, time.Unix(0, o.Start), &clients)
	defer func() { // the drive loops commit what is pending before the stores close
		endDrive()
		<-driven
	}()
	stopTicks := make(chan struct{})
	var ticks sync.WaitGroup
	ticks.Add(1)
	go func() { // counts every second, for the parent's progress line and drain
		defer ticks.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopTicks:
				return
			case <-tick.C:
				if rep.send(p.counts) != nil {
					cancel() // the parent is gone
				}
			}
		}
	}()
	stopReports := sync.OnceFunc(func() {
		close(stopTicks)
		ticks.Wait()
	})
	defer stopReports()

	finish := false
	select {
	case o, ok := <-orders:
		if !ok {
			return errParentGone
		}
		finish = o.Finish
	case <-driven: // only when a truck could not start, or ctx ended
		if err := p.failure(); err != nil {
			return err
		}
		return ctx.Err()
	}
	endDrive()
	connected := p.connected()
	<-driven
	if err := p.failure(); err != nil {
		return err
	}
	if err := rep.send(func() report {
		r := p.counts()
		r.Driven, r.Connected = true, connected
		return r
	}); err != nil {
		return err
	}
	for !finish {
		select {
		case o, ok := <-orders:
			if !ok {
				return errParentGone
			}
			finish = o.Finish
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	stopReports() // the final report is the last
	return rep.send(func() report {
		r := p.counts()
		r.Final, r.Trucks = true, p.final()
		r.SlowCommits, r.CommitMax = p.slowCommits.Load(), p.commitMax.Load()
		if ownProcess {
			r.RSS, _ = procStatus(0, "VmHWM")
			r.CPU, _ = procCPU(0)
		}
		return r
	})
}

// reporter writes reports in the order they are made: made and written under one lock, counts from a
// tick cannot arrive after a later report's.
type reporter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (r *reporter) send(f func() report) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.enc.Encode(f())
}

// part is a share of the fleet's trucks in one process, with its own drop-link proxy.
type part struct {
	cfg   Config
	share spec
	pki   *pki.PKI
	log   *slog.Logger

	mu       sync.Mutex
	trucks   []*simTruck // appended by the starter; the first len entries never change
	startErr error
	proxy    *faultproxy.Proxy

	fixesStored, eventsConfirmed atomic.Uint64
	slowCommits                  atomic.Uint64
	commitMax                    atomic.Int64 // ns
	cmu                          sync.Mutex
	commits                      []commit // not yet reported
}

func newPart(sp spec, log *slog.Logger) (*part, error) {
	p, err := pki.Open(pki.Config{Dir: sp.Config.pkiDir()})
	if err != nil {
		return nil, fmt.Errorf("fleetsim worker: %w", err)
	}
	return &part{cfg: sp.Config, share: sp, pki: p, log: log}, nil
}

// stored counts n fixes a truck committed, the newest being key's.
func (p *part) stored(n int, key string) {
	p.fixesStored.Add(uint64(n))
	p.cmu.Lock()
	p.commits = append(p.commits, commit{key, time.Now().UnixNano()})
	p.cmu.Unlock()
}

// slowCommit is a store commit worth a warning: the machine's disk is not keeping up.
const slowCommit = 30 * time.Second

// commitTook notes how long a truck's store commit took.
func (p *part) commitTook(d time.Duration) {
	if d > slowCommit {
		p.slowCommits.Add(1)
	}
	for {
		m := p.commitMax.Load()
		if int64(d) <= m || p.commitMax.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// start switches the part's trucks on from the fleet's start at Config.StartRate, each at its place in
// the whole fleet's order, drives them until drive ends and cuts the links of those among the first
// DropLink share of the fleet for a while. The clients run until ctx ends; clients owns them. The
// returned channel is closed when the drive is over and every fix committed, or a truck could not start.
func (p *part) start(ctx, drive context.Context, start time.Time, clients *sync.WaitGroup) <-chan struct{} {
	cfg := p.cfg
	drive, stopDrive := context.WithCancel(drive)
	driven := make(chan struct{})
	var drivers sync.WaitGroup // the starter, the trucks' drive loops and the link fault
	dropped := int(float64(cfg.Trucks) * cfg.DropLink)
	if p.share.Share < dropped {
		proxy, err := faultproxy.Start(faultproxy.Config{Target: p.share.BrokerAddr})
		if err != nil {
			p.fail(err)
			stopDrive()
			close(driven)
			return driven
		}
		p.proxy = proxy
		drivers.Add(1)
		go func() {
			defer drivers.Done()
			select {
			case <-drive.Done():
				return
			case <-time.After(time.Until(start.Add(cfg.DropLinkAt))):
			}
			proxy.SetBlackHole(true)
			proxy.DropAll()
			select {
			case <-drive.Done():
			case <-time.After(cfg.DropLinkFor):
			}
			proxy.Pass()
		}()
	}
	drivers.Add(1)
	go func() { // the starter: trucks switch on at Config.StartRate
		defer drivers.Done()
		for i := p.share.Share; i < cfg.Trucks; i += p.share.Shares {
			if cfg.StartRate > 0 {
				at := start.Add(time.Duration(i) * time.Second / time.Duration(cfg.StartRate))
				select {
				case <-drive.Done():
					return
				case <-time.After(time.Until(at)):
				}
			} else if drive.Err() != nil {
				return
			}
			url := "mqtts://" + p.share.BrokerAddr
			if i < dropped {
				url = "mqtts://" + p.proxy.Addr()
			}
			t, err := newSimTruck(p, i, url)
			if err != nil {
				p.fail(err)
				stopDrive()
				return
			}
			p.mu.Lock()
			p.trucks = append(p.trucks, t)
			p.mu.Unlock()
			drivers.Add(1)
			go func() {
				defer drivers.Done()
				t.run(ctx, drive, clients)
			}()
		}
	}()
	go func() { // owned by the caller, which waits for driven
		drivers.Wait()
		stopDrive()
		close(driven)
	}()
	return driven
}

func (p *part) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.startErr == nil {
		p.startErr = err
	}
}

func (p *part) failure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.startErr
}

func (p *part) started() []*simTruck {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.trucks
}

func (p *part) connected() int {
	n := 0
	for _, t := range p.started() {
		if t.connected.Load() {
			n++
		}
	}
	return n
}

// counts is a report of the part's totals now, with the commits not yet reported.
func (p *part) counts() report {
	ts := p.started()
	r := report{Started: len(ts), FixesStored: p.fixesStored.Load(), EventsConfirmed: p.eventsConfirmed.Load()}
	for _, t := range ts {
		if t.connected.Load() {
			r.Connected++
		}
		r.Queued += t.queued()
	}
	p.cmu.Lock()
	r.Commits, p.commits = p.commits, nil
	p.cmu.Unlock()
	return r
}

func (p *part) final() []truckStat {
	ts := p.started()
	out := make([]truckStat, len(ts))
	for i, t := range ts {
		out[i] = truckStat{First: t.firstConn.Load(), Last: t.lastConn.Load(),
			Failures: t.client.Conn().Stats().ConnectFailures, Queued: t.queued()}
	}
	return out
}

// close closes the stores and the proxy, once the clients have stopped.
func (p *part) close() {
	for _, t := range p.started() {
		t.st.Close()
	}
	if p.proxy != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.proxy.Close(ctx)
	}
}
