package fleetsim

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/archive"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// finishGrace is how long the trucks' side has, once ctx has ended, to report what it has before its
// workers are killed.
const finishGrace = 30 * time.Second

// sim is one run's state: the parent's side (broker, dispatch, the fault schedule) and its shares of the
// fleet, each a worker process or the trucks in this process.
type sim struct {
	cfg        Config
	pki        *pki.PKI
	broker     *broker // the Mosquitto the simulation started; nil with Config.Broker
	brokerAddr string  // host:port the trucks and dispatch connect to
	c          *counters
	workers    int
	began      time.Time
	cpuAtStart float64 // this process's CPU seconds when the run began, its PKI and broker set up

	shares  []*share
	killCtx context.Context // the trucks' side's life: ends with the run, or finishGrace after ctx

	failOnce sync.Once
	failed   chan struct{} // closed at a share's first failure
	failErr  error

	stallEnd atomic.Int64 // Unix ns until which dispatch does not read; 0: reading
	stalled  atomic.Int64 // ns dispatch spent stalled
}

func (s *sim) run(ctx context.Context, names []string) (Summary, error) {
	cfg := s.cfg
	var err error
	if s.cpuAtStart, err = procCPU(0); err != nil {
		return Summary{}, err
	}
	// Fresh stores and archive each run: only the PKI is reused.
	for _, d := range []string{"trucks", "dispatch"} {
		if err := os.RemoveAll(filepath.Join(cfg.Dir, d)); err != nil {
			return Summary{}, fmt.Errorf("fleetsim: %w", err)
		}
	}
	var wg sync.WaitGroup // every goroutine of the run: dispatch, faults, progress, the shares' readers
	defer wg.Wait()
	killCtx, kill := context.WithCancel(context.WithoutCancel(ctx))
	s.killCtx = killCtx
	defer kill() // the workers still running, and the in-process trucks
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() { // the trucks' side outlives ctx by finishGrace, to report what it has
		defer wg.Done()
		select {
		case <-killCtx.Done():
		case <-ctx.Done():
			select {
			case <-killCtx.Done():
			case <-time.After(finishGrace):
				kill()
			}
		}
	}()

	var dc *dispatch.Client
	if cfg.Dispatch {
		var arch *archive.Archive
		var err error
		dc, arch, err = s.dispatchSide(names)
		if err != nil {
			return Summary{}, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer arch.Close() // once dispatch has stopped committing to it
			if err := dc.Run(runCtx); err != nil {
				cfg.Logger.Error("fleetsim: dispatch stopped", "err", err)
			}
		}()
	}

	for k := range s.workers {
		sh, err := s.startShare(k, &wg)
		if err != nil {
			return Summary{}, err
		}
		s.shares = append(s.shares, sh)
	}
	for _, sh := range s.shares {
		if err := s.await(sh.ready); err != nil {
			return Summary{}, err
		}
	}
	driveStart := time.Now()
	s.tell(order{Start: driveStart.UnixNano()})
	drive, stopDrive := context.WithDeadline(runCtx, driveStart.Add(cfg.Duration))
	var faults sync.WaitGroup
	defer func() {
		stopDrive()
		faults.Wait()
	}()
	var restartMu sync.Mutex
	var restartedAt time.Time
	at := func(d time.Duration, f func()) {
		faults.Add(1)
		go func() {
			defer faults.Done()
			select {
			case <-drive.Done():
			case <-time.After(time.Until(driveStart.Add(d))):
				f()
			}
		}()
	}
	if cfg.StallDispatch > 0 {
		at(cfg.StallDispatchAt, func() { s.stallEnd.Store(time.Now().Add(cfg.StallDispatch).UnixNano()) })
	}
	if cfg.RestartBrokerAt > 0 {
		at(cfg.RestartBrokerAt, func() {
			restartMu.Lock()
			restartedAt = time.Now()
			restartMu.Unlock()
			if err := s.broker.restart(runCtx); err != nil {
				cfg.Logger.Error("fleetsim: broker restart", "err", err)
			}
		})
	}
	progressCtx, stopProgress := context.WithCancel(runCtx)
	defer stopProgress()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.progress(progressCtx, driveStart)
	}()

	select {
	case <-drive.Done():
	case <-s.failed:
		return Summary{}, s.failErr
	}
	s.tell(order{EndDrive: true})
	for _, sh := range s.shares {
		if err := s.await(sh.driven); err != nil {
			return Summary{}, err
		}
	}
	stopDrive()
	faults.Wait()
	s.stallEnd.Store(0) // a stall still running ends with the drive: the drain is for what was sent
	if cfg.Dispatch {
		if err := s.drain(runCtx); err != nil {
			return Summary{}, err
		}
	}
	stopProgress()
	s.tell(order{Finish: true})
	for _, sh := range s.shares {
		sh.orders.Close()
		if err := s.await(sh.done); err != nil {
			return Summary{}, err
		}
	}
	select {
	case <-s.failed: // a worker that reported, then exited badly (a race report, say)
		return Summary{}, s.failErr
	default:
	}

	sum := Summary{Trucks: len(names)}
	restartMu.Lock()
	restart := restartedAt
	restartMu.Unlock()
	if !restart.IsZero() {
		sum.ReconnectAll = -1
	}
	var firsts []time.Duration
	var latest time.Time
	allBack := true
	var slow uint64
	var commitMax time.Duration
	for _, sh := range s.shares {
		f := sh.final // set before done was closed
		slow, commitMax = slow+f.SlowCommits, max(commitMax, time.Duration(f.CommitMax))
		sum.Connected += sh.connectedAtEnd
		sum.FixesStored += f.FixesStored
		sum.EventsConfirmed += f.EventsConfirmed
		sum.SimRSS += f.RSS
		sum.TrucksCPU += f.CPU
		for _, t := range f.Trucks {
			if t.First > 0 {
				firsts = append(firsts, time.Duration(t.First))
			} else {
				sum.NeverConnected++
			}
			sum.ConnectFailures += t.Failures
			sum.StillQueued += t.Queued
			if !restart.IsZero() {
				last := time.Unix(0, t.Last)
				if last.Before(restart) {
					allBack = false
				} else if last.After(latest) {
					latest = last
				}
			}
		}
	}
	if slow > 0 {
		cfg.Logger.Warn("fleetsim: store commits slower than "+slowCommit.String()+": the disk did not keep up",
			"commits", slow, "slowest", commitMax)
	}
	if !restart.IsZero() && allBack {
		sum.ReconnectAll = latest.Sub(restart).Seconds()
	}
	sum.ConnectP50, sum.ConnectP99 = percentile(firsts, 0.5), percentile(firsts, 0.99)
	sum.FixesReceived, sum.EventsReceived = s.c.fixesReceived.Load(), s.c.eventsRecv.Load()
	sum.Lost = int64(sum.FixesStored+sum.EventsConfirmed) - int64(sum.FixesReceived+sum.EventsReceived) - int64(sum.StillQueued)
	if dc != nil {
		st := dc.Consumer().Stats()
		sum.DuplicatesDropped = st.DuplicateFixes + st.DuplicateEvents
	}
	sum.NewestFixLatencyP50, sum.NewestFixLatencyP99 = s.c.percentiles()
	sum.DispatchStalled = time.Duration(s.stalled.Load()).Seconds()
	own, _ := procStatus(0, "VmHWM")
	sum.SimRSS += own
	sum.DispatchRSS = own
	if cpu, err := procCPU(0); err == nil {
		sum.DispatchCPU = roundCPU(cpu - s.cpuAtStart)
	}
	if s.workers == 1 { // the trucks ran in this process
		sum.TrucksCPU = sum.DispatchCPU
	}
	sum.TrucksCPU = roundCPU(sum.TrucksCPU)
	if s.broker != nil {
		sum.BrokerRSS, sum.BrokerCPU = s.broker.peak(), roundCPU(s.broker.cpu())
	}
	sum.Elapsed = time.Since(s.began).Seconds()
	return sum, nil
}

// tell sends an order to every share. A share that cannot take it has ended: its reader reports why.
func (s *sim) tell(o order) {
	for _, sh := range s.shares {
		json.NewEncoder(sh.orders).Encode(o)
	}
}

// await waits for ch; or returns a share's failure, or that the trucks' side was given up on.
func (s *sim) await(ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	default:
	}
	select {
	case <-ch:
		return nil
	case <-s.failed:
		return s.failErr
	case <-s.killCtx.Done():
		return fmt.Errorf("fleetsim: the trucks did not report within %v of the end", finishGrace)
	}
}

// fail records the run's first failure and ends the waits for the trucks' side.
func (s *sim) fail(err error) {
	s.failOnce.Do(func() {
		s.failErr = err
		close(s.failed)
	})
}

// totals adds up the shares' latest counts.
func (s *sim) totals() report {
	var t report
	for _, sh := range s.shares {
		sh.mu.Lock()
		t.Started += sh.last.Started
		t.Connected += sh.last.Connected
		t.FixesStored += sh.last.FixesStored
		t.EventsConfirmed += sh.last.EventsConfirmed
		t.Queued += sh.last.Queued
		sh.mu.Unlock()
	}
	return t
}

// drain waits until every truck's store is empty (dispatch received and receipted everything), or
// Config.Drain has passed.
func (s *sim) drain(ctx context.Context) error {
	deadline := time.After(s.cfg.Drain)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for s.totals().Queued > 0 {
		select {
		case <-ctx.Done():
			return nil
		case <-deadline:
			return nil
		case <-s.failed:
			return s.failErr
		case <-tick.C:
		}
	}
	return nil
}

func (s *sim) progress(ctx context.Context, start time.Time) {
	if s.cfg.Progress == nil {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t := s.totals()
			note := ""
			if end := s.stallEnd.Load(); end != 0 && now.UnixNano() < end {
				note = " [dispatch stalled]"
			}
			fmt.Fprintf(s.cfg.Progress, "%4.0fs trucks %d/%d connected %d stored %d received %d queued %d%s\n",
				now.Sub(start).Seconds(), t.Started, s.cfg.Trucks, t.Connected, t.FixesStored+t.EventsConfirmed,
				s.c.fixesReceived.Load()+s.c.eventsRecv.Load(), t.Queued, note)
		}
	}
}

// dispatchSide is the office: the verified consumer committing to an archive before it acknowledges and
// receipts, and counting what it received.
func (s *sim) dispatchSide(names []string) (*dispatch.Client, *archive.Archive, error) {
	dir, name := filepath.Join(s.cfg.Dir, "dispatch"), dispatchName(s.cfg.NamePrefix)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("fleetsim: %w", err)
	}
	arch, err := archive.Open(filepath.Join(dir, archive.File), archive.Options{})
	if err != nil {
		return nil, nil, err
	}
	certs := make([]*x509.Certificate, 0, len(names))
	for _, n := range names {
		c, err := pki.LoadCertificate(s.pki.CertPath(n))
		if err != nil {
			arch.Close()
			return nil, nil, err
		}
		certs = append(certs, c)
	}
	dc, err := dispatch.New(dispatch.Config{
		Transport: transport.Config{Brokers: []string{"mqtts://" + s.brokerAddr}, CertFile: s.pki.CertPath(name),
			KeyFile: s.pki.KeyPath(name), CAFile: s.pki.CAPath(), Logger: s.cfg.Logger},
		Topics: sdk.Topics{Prefix: s.cfg.Prefix}, CA: []*x509.Certificate{s.pki.CACert()}, Certificates: certs, Record: arch,
		ReceiptDelay: s.cfg.ReceiptDelay, Handle: s.handle, Logger: s.cfg.Logger,
	})
	if err != nil {
		arch.Close()
		return nil, nil, err
	}
	return dc, arch, nil
}

// handle counts what dispatch committed. While stalled it blocks: dispatch reads nothing more and the
// broker queues for its session.
func (s *sim) handle(ctx context.Context, u dispatch.Update) error {
	if end := s.stallEnd.Load(); end != 0 {
		if wait := time.Until(time.Unix(0, end)); wait > 0 {
			t0 := time.Now()
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			s.stalled.Add(int64(time.Since(t0)))
		}
	}
	now := time.Now()
	if len(u.Fixes) > 0 {
		s.c.fixesReceived.Add(uint64(len(u.Fixes)))
		newest := u.Fixes[0]
		for _, f := range u.Fixes[1:] {
			if f.Fix.Time.After(newest.Fix.Time) {
				newest = f
			}
		}
		s.c.received(commitKey(newest.Truck, newest.Fix.Time), now)
	}
	if u.Event != nil && u.Event.Event.Kind == sdk.EventDelivered {
		s.c.eventsRecv.Add(1)
	}
	return nil
}
