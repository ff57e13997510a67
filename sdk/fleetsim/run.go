package fleetsim

import (
	"context"
	"crypto/x509"
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
	"github.com/waybill-iot/waybill/sdk/sdktest/faultproxy"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// sim is one run's state.
type sim struct {
	cfg    Config
	pki    *pki.PKI
	broker *broker
	c      *counters

	trucks   []*simTruck // appended by the starter; read after it is done or under mu
	mu       sync.Mutex
	stallEnd atomic.Int64 // Unix ns until which dispatch does not read; 0: reading
	stalled  atomic.Int64 // ns dispatch spent stalled
}

func (s *sim) run(ctx context.Context, names []string, began time.Time) (Summary, error) {
	cfg := s.cfg
	// Fresh stores and archive each run: only the PKI is reused.
	for _, d := range []string{"trucks", "dispatch"} {
		if err := os.RemoveAll(filepath.Join(cfg.Dir, d)); err != nil {
			return Summary{}, fmt.Errorf("fleetsim: %w", err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup // every client, watcher and helper goroutine
	defer wg.Wait()

	var dc *dispatch.Client
	if cfg.Dispatch {
		var arch *archive.Archive
		var err error
		dc, arch, err = s.dispatchSide(names)
		if err != nil {
			return Summary{}, err
		}
		defer arch.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := dc.Run(runCtx); err != nil {
				cfg.Logger.Error("fleetsim: dispatch stopped", "err", err)
			}
		}()
	}

	var proxy *faultproxy.Proxy
	dropped := int(float64(len(names)) * cfg.DropLink)
	if dropped > 0 {
		var err error
		if proxy, err = faultproxy.Start(faultproxy.Config{Target: s.broker.addr}); err != nil {
			return Summary{}, err
		}
		defer func() {
			cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer ccancel()
			proxy.Close(cctx)
		}()
	}

	drive, stopDrive := context.WithTimeout(runCtx, cfg.Duration)
	defer stopDrive()
	driveStart := time.Now()
	var drivers sync.WaitGroup // the trucks' drive loops: over when drive ends and their fixes are committed
	var startErr error
	drivers.Add(1)
	go func() { // the starter: trucks switch on at Config.StartRate
		defer drivers.Done()
		for i, name := range names {
			if cfg.StartRate > 0 {
				at := driveStart.Add(time.Duration(i) * time.Second / time.Duration(cfg.StartRate))
				select {
				case <-drive.Done():
					return
				case <-time.After(time.Until(at)):
				}
			}
			url := s.broker.URL()
			if i < dropped {
				url = "mqtts://" + proxy.Addr()
			}
			t, err := newSimTruck(&s.cfg, s.c, s.files, name, filepath.Join(cfg.Dir, "trucks", name), url, i)
			if err != nil {
				s.mu.Lock()
				startErr = err
				s.mu.Unlock()
				stopDrive()
				return
			}
			s.mu.Lock()
			s.trucks = append(s.trucks, t)
			s.mu.Unlock()
			drivers.Add(1)
			go func() {
				defer drivers.Done()
				t.run(runCtx, drive, &wg)
			}()
		}
	}()

	var restartedAt time.Time
	var faults sync.WaitGroup
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
			s.mu.Lock()
			restartedAt = time.Now()
			s.mu.Unlock()
			if err := s.broker.restart(runCtx); err != nil {
				cfg.Logger.Error("fleetsim: broker restart", "err", err)
			}
		})
	}
	if proxy != nil {
		at(cfg.DropLinkAt, func() {
			proxy.SetBlackHole(true)
			proxy.DropAll()
			select {
			case <-drive.Done():
			case <-time.After(cfg.DropLinkFor):
			}
			proxy.Pass()
		})
	}
	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	go func() { // owned: closed progressDone is waited for below
		defer close(progressDone)
		s.progress(stopProgress, driveStart)
	}()

	<-drive.Done()
	connectedAtEnd := s.countConnected()
	drivers.Wait()
	faults.Wait()
	s.stallEnd.Store(0) // a stall still running ends with the drive: the drain is for what was sent
	if startErr != nil {
		close(stopProgress)
		<-progressDone
		return Summary{}, startErr
	}
	if cfg.Dispatch {
		s.drain(runCtx)
	}
	close(stopProgress)
	<-progressDone

	sum := Summary{Trucks: len(names), Connected: connectedAtEnd}
	var firsts []time.Duration
	s.mu.Lock()
	restart := restartedAt
	s.mu.Unlock()
	sum.ReconnectAll = 0
	if !restart.IsZero() {
		sum.ReconnectAll = -1
	}
	var latest time.Time
	allBack := true
	for _, t := range s.trucks {
		if d := t.firstConn.Load(); d > 0 {
			firsts = append(firsts, time.Duration(d))
		} else {
			sum.NeverConnected++
		}
		sum.ConnectFailures += t.client.Conn().Stats().ConnectFailures
		sum.StillQueued += t.queued()
		if !restart.IsZero() {
			last := time.Unix(0, t.lastConn.Load())
			if last.Before(restart) {
				allBack = false
			} else if last.After(latest) {
				latest = last
			}
		}
	}
	if !restart.IsZero() && allBack {
		sum.ReconnectAll = latest.Sub(restart).Seconds()
	}
	sum.ConnectP50, sum.ConnectP99 = percentile(firsts, 0.5), percentile(firsts, 0.99)
	sum.FixesStored, sum.EventsConfirmed = s.c.fixesStored.Load(), s.c.eventsConfirmed.Load()
	sum.FixesReceived, sum.EventsReceived = s.c.fixesReceived.Load(), s.c.eventsRecv.Load()
	sum.Lost = int64(sum.FixesStored+sum.EventsConfirmed) - int64(sum.FixesReceived+sum.EventsReceived) - int64(sum.StillQueued)
	if dc != nil {
		st := dc.Consumer().Stats()
		sum.DuplicatesDropped = st.DuplicateFixes + st.DuplicateEvents
	}
	sum.NewestFixLatencyP50, sum.NewestFixLatencyP99 = s.c.percentiles()
	sum.DispatchStalled = time.Duration(s.stalled.Load()).Seconds()
	sum.SimRSS, _ = procStatus(0, "VmHWM")
	sum.BrokerRSS = s.broker.peak()

	cancel()
	wg.Wait()
	for _, t := range s.trucks {
		t.st.Close()
	}
	sum.Elapsed = time.Since(began).Seconds()
	return sum, nil
}

// files returns a truck's certificate, key and the fleet CA.
func (s *sim) files(name string) (cert, key, ca string) {
	return s.pki.CertPath(name), s.pki.KeyPath(name), s.pki.CAPath()
}

func (s *sim) countConnected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.trucks {
		if t.connected.Load() {
			n++
		}
	}
	return n
}

func (s *sim) queued() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n uint64
	for _, t := range s.trucks {
		n += t.queued()
	}
	return n
}

// drain waits until every truck's store is empty (dispatch received and receipted everything), or
// Config.Drain has passed.
func (s *sim) drain(ctx context.Context) {
	deadline := time.After(s.cfg.Drain)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for s.queued() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case <-tick.C:
		}
	}
}

func (s *sim) progress(stop <-chan struct{}, start time.Time) {
	if s.cfg.Progress == nil {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			s.mu.Lock()
			started := len(s.trucks)
			s.mu.Unlock()
			note := ""
			if end := s.stallEnd.Load(); end != 0 && now.UnixNano() < end {
				note = " [dispatch stalled]"
			}
			fmt.Fprintf(s.cfg.Progress, "%4.0fs trucks %d/%d connected %d stored %d received %d queued %d%s\n",
				now.Sub(start).Seconds(), started, s.cfg.Trucks, s.countConnected(),
				s.c.fixesStored.Load()+s.c.eventsConfirmed.Load(), s.c.fixesReceived.Load()+s.c.eventsRecv.Load(),
				s.queued(), note)
		}
	}
}

// dispatchSide is the office: the verified consumer committing to an archive before it acknowledges and
// receipts, and counting what it received.
func (s *sim) dispatchSide(names []string) (*dispatch.Client, *archive.Archive, error) {
	dir := filepath.Join(s.cfg.Dir, "dispatch")
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
		Transport: transport.Config{Brokers: []string{s.broker.URL()}, CertFile: s.pki.CertPath(dispatchName),
			KeyFile: s.pki.KeyPath(dispatchName), CAFile: s.pki.CAPath(), Logger: s.cfg.Logger},
		CA: []*x509.Certificate{s.pki.CACert()}, Certificates: certs, Record: arch,
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
		if at, ok := s.c.commits.LoadAndDelete(commitKey(newest.Truck, newest.Fix.Time)); ok {
			s.c.sample(now.Sub(at.(time.Time)))
		}
	}
	if u.Event != nil && u.Event.Event.Kind == sdk.EventDelivered {
		s.c.eventsRecv.Add(1)
	}
	return nil
}
