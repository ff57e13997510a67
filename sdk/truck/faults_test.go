package truck

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/sdktest/faultproxy"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/store"
)

// faultRun is one fault scenario in progress: a truck draining its store through the fault proxy to real
// Mosquitto, and a verifying consumer connected to Mosquitto directly.
type faultRun struct {
	t        *testing.T
	proxy    *faultproxy.Proxy
	link     *transport.Conn
	st       *store.Store
	up       *Uploader
	cons     *consumer
	nFixes   int
	deadline time.Time

	// Events appended while the drain runs (critical records queued behind a fix backlog).
	mu       sync.Mutex
	lastFix  uint64            // the newest fix's record seq
	slack    int               // fixes one Peek may take: MaxInFlight x BatchFixes
	midSeqs  map[uint64]uint64 // event seq -> the lowest fix seq certainly not handed out when it was appended
	midAhead []int             // per mid-drain event: such fixes that reached the consumer before it
	downErr  error             // why the link went down, when a scenario waits for it
}

// progress waits until the consumer has frac of the fixes, or the scenario's deadline.
func (r *faultRun) progress(frac float64) bool {
	for time.Now().Before(r.deadline) {
		if fixes, _ := r.cons.counts(); float64(fixes) >= frac*float64(r.nFixes) {
			return true
		}
		select {
		case <-r.cons.changed:
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

// dropAt resets the truck's connection each time the consumer passes one of the fractions.
func (r *faultRun) dropAt(fracs ...float64) {
	for _, f := range fracs {
		if !r.progress(f) {
			return
		}
		// The threshold may pass while the truck is between connections (the last drop's reconnect, slow
		// under emulation): drop the next connection then, so every scenario drop happens.
		n := r.proxy.DropAll()
		for n == 0 && time.Now().Before(r.deadline) {
			time.Sleep(20 * time.Millisecond)
			n = r.proxy.DropAll()
		}
		fixes, _ := r.cons.counts()
		r.t.Logf("dropped %d connection(s) at %d fixes delivered", n, fixes)
	}
}

// blackHole stops the link for d, then lifts it.
func (r *faultRun) blackHole(d time.Duration) {
	r.proxy.SetBlackHole(true)
	time.Sleep(d)
	r.proxy.SetBlackHole(false)
}

// blackHoleUntilDown stops the link until the truck's keep-alive declares it dead, then lifts it.
func (r *faultRun) blackHoleUntilDown() {
	r.proxy.SetBlackHole(true)
	defer r.proxy.SetBlackHole(false)
	start := time.Now()
	for time.Now().Before(r.deadline) {
		if s := r.link.Current(); !s.Connected && s.Err != nil {
			r.mu.Lock()
			r.downErr = s.Err
			r.mu.Unlock()
			r.t.Logf("link declared down %v into the black hole: %v", time.Since(start).Round(10*time.Millisecond), s.Err)
			time.Sleep(500 * time.Millisecond) // a reconnect attempt or two go into the hole as well
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// appendEvents queues n delivery events while fixes are still queued: the critical lane must overtake them.
func (r *faultRun) appendEvents(n int) {
	var entries []store.Entry
	for i := range n {
		ev, err := EncodeEvent(sdk.Event{Kind: sdk.EventDelivered, Time: time.Now().UTC(), OrderID: fmt.Sprintf("mid-%d", i),
			Revision: 1, Via: sdk.ViaHTTP})
		if err != nil {
			r.t.Error(err)
			return
		}
		entries = append(entries, ev)
	}
	// Fixes still stored and never handed out are the newest ones: the stored records not in flight, less
	// those released by a failure (at most one window) and those a Peek racing this append may take (one
	// more window).
	ns := r.st.Stats().Normal
	notTaken := int(ns.Records) - ns.InFlight - 2*r.slack
	seqs, err := r.st.Append(context.Background(), entries...)
	if err != nil {
		r.t.Error(err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range seqs {
		r.midSeqs[s] = r.lastFix + 1 - uint64(max(notTaken, 0))
	}
}

type faultScenario struct {
	name string
	// link configures the truck's transport (KeepAlive for the black hole cases); BackoffMin/Max and the
	// broker address are set by the test.
	link transport.Config
	// batch and inFlight configure the uploader (BatchFixes, MaxInFlight).
	batch, inFlight int
	// setup switches the faults that hold for the whole drain, before the truck connects.
	setup func(p *faultproxy.Proxy)
	// during injects faults while the drain runs.
	during func(r *faultRun)
	// check asserts that the faults really happened.
	check func(t *testing.T, r *faultRun)
}

// TestUploaderFaults drains a backlog of fixes and delivery events from a truck's store through a
// fault-injecting proxy to real Mosquitto with mutual TLS, under each fault, and checks what the uploader
// promises: every record reaches a verifying consumer (duplicates dropped by truck, epoch and record seq),
// no message is rejected, nothing is quarantined and the store ends empty. Ordering is measured and logged
// (see faultOrdering); the uploader promises lane priority when it takes records, not arrival order.
func TestUploaderFaults(t *testing.T) {
	const nFixes, nEvents = 2400, 20
	scenarios := []faultScenario{{
		name:  "drop mid-publish, repeatedly",
		setup: func(p *faultproxy.Proxy) { p.SetLatency(20 * time.Millisecond) },
		during: func(r *faultRun) {
			r.dropAt(0.1, 0.25)
			r.appendEvents(3)
			r.dropAt(0.4, 0.55, 0.7, 0.85)
		},
		check: func(t *testing.T, r *faultRun) {
			if d := r.proxy.Stats().Dropped; d < 6 {
				t.Errorf("%d connections dropped, want 6", d)
			}
			// Dropped mid-publish: messages whose PUBACK was lost came again (or failed and were re-sent).
			if r.cons.dups == 0 && r.up.Stats().Failures == 0 {
				t.Error("no publish was in flight at any of the drops")
			}
		},
	}, {
		name:  "black hole without FIN, lifted before the keep-alive notices",
		link:  transport.Config{KeepAlive: 3 * time.Second},
		setup: func(p *faultproxy.Proxy) { p.SetLatency(10 * time.Millisecond) },
		during: func(r *faultRun) {
			if r.progress(0.3) {
				r.appendEvents(3)
				r.blackHole(time.Second)
			}
		},
		check: func(t *testing.T, r *faultRun) {
			// The held data flowed on when the hole was lifted: the connection survived.
			if c := r.link.Stats().Connects; c != 1 {
				t.Errorf("%d connections, want 1 (the black hole was shorter than the keep-alive)", c)
			}
		},
	}, {
		name: "black hole without FIN, until the keep-alive drops the link",
		link: transport.Config{KeepAlive: time.Second, ConnectTimeout: time.Second},
		during: func(r *faultRun) {
			if r.progress(0.3) {
				r.appendEvents(3)
				r.blackHoleUntilDown()
			}
		},
		check: func(t *testing.T, r *faultRun) {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.downErr == nil || !strings.Contains(r.downErr.Error(), "keep-alive") {
				t.Errorf("the link went down with %v, want a keep-alive timeout", r.downErr)
			}
			if c := r.link.Stats().Connects; c < 2 {
				t.Errorf("%d connections, want a reconnect after the keep-alive timeout", c)
			}
		},
	}, {
		name:     "slow link: 300 ms each way, 16 KiB/s",
		batch:    60,
		inFlight: 16,
		setup: func(p *faultproxy.Proxy) {
			p.SetLatency(300 * time.Millisecond)
			p.SetBandwidth(16 << 10)
		},
		during: func(r *faultRun) {
			if r.progress(0.3) {
				r.appendEvents(3)
			}
		},
		check: func(t *testing.T, r *faultRun) {
			if r.proxy.Stats().Forwarded == 0 {
				t.Error("nothing went through the proxy")
			}
		},
	}, {
		name:  "30 % of connection attempts fail",
		setup: func(p *faultproxy.Proxy) { p.SetFailFraction(0.3) },
		during: func(r *faultRun) {
			r.dropAt(0.1, 0.2, 0.3)
			r.appendEvents(3)
			r.dropAt(0.45, 0.6, 0.75, 0.9)
		},
		check: func(t *testing.T, r *faultRun) {
			s := r.proxy.Stats()
			t.Logf("proxy: %d connection attempts, %d failed", s.Accepted, s.Failed)
			if s.Failed == 0 || r.link.Stats().Connects < 2 {
				t.Errorf("no connection attempt failed (%+v) or too few reconnects (%d)", s, r.link.Stats().Connects)
			}
		},
	}, {
		name: "all together: latency, bandwidth, failing connects, drops, black holes",
		link: transport.Config{KeepAlive: time.Second, ConnectTimeout: time.Second},
		setup: func(p *faultproxy.Proxy) {
			p.SetLatency(40 * time.Millisecond)
			p.SetBandwidth(64 << 10)
			p.SetFailFraction(0.3)
		},
		during: func(r *faultRun) {
			r.dropAt(0.15)
			if r.progress(0.3) {
				r.blackHole(300 * time.Millisecond)
			}
			r.appendEvents(3)
			r.dropAt(0.45)
			if r.progress(0.6) {
				r.blackHoleUntilDown()
			}
			r.dropAt(0.8)
		},
		check: func(t *testing.T, r *faultRun) {
			if s := r.proxy.Stats(); s.Dropped < 3 || r.link.Stats().Connects < 4 {
				t.Errorf("faults did not happen: proxy %+v, %d connections", s, r.link.Stats().Connects)
			}
		},
	}}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { runFaultScenario(t, sc, nFixes, nEvents) })
	}
}

func runFaultScenario(t *testing.T, sc faultScenario, nFixes, nEvents int) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	truckCl, officeCl := b.Truck("truck-0001"), b.ClientFiles("office")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	v := fleetVerifier(t, officeCl)
	cons := newConsumer()
	office := startLink(t, ctx, &wg, b.Addr, officeCl, transport.Config{Subscriptions: fleetSubscriptions(), OnPublish: cons.handle(v)})
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := office.Wait(wctx); err != nil {
		t.Fatalf("consumer never connected: %v", err)
	}
	sendReceipts(t, ctx, &wg, cons, office, officeCl)

	st := openStore(t)
	entries := backlogEntries(t, nFixes, nEvents)
	backlog, err := st.Append(ctx, entries...)
	if err != nil {
		t.Fatal(err)
	}
	inBacklog := func(seq uint64) bool { return seq >= backlog[0] && seq <= backlog[len(backlog)-1] }
	var lastFix uint64
	for i, e := range entries {
		if e.Lane == store.Normal {
			lastFix = backlog[i]
		}
	}

	proxy, err := faultproxy.Start(faultproxy.Config{Target: b.Addr, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close(context.Background())
	if sc.setup != nil {
		sc.setup(proxy)
	}
	lc := sc.link
	lc.BackoffMin, lc.BackoffMax = 50*time.Millisecond, 300*time.Millisecond
	var upRef atomic.Pointer[Uploader]
	link := startLink(t, ctx, &wg, proxy.Addr(), truckCl, merge(lc, receiptsFor(t, truckCl, &upRef)))
	up, err := NewUploader(UploaderConfig{Store: st, Link: link, Signer: signerFor(t, truckCl, st),
		BatchFixes: orDefault(sc.batch, 10), BacklogBatchFixes: orDefault(sc.batch, 10), MaxInFlight: orDefault(sc.inFlight, 16),
		RetryDelay: 100 * time.Millisecond, PublishTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	upRef.Store(up)
	start := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		up.Run(ctx)
	}()

	r := &faultRun{t: t, proxy: proxy, link: link, st: st, up: up, cons: cons, nFixes: nFixes,
		deadline: time.Now().Add(30 * time.Second), midSeqs: map[uint64]uint64{}, lastFix: lastFix,
		slack: orDefault(sc.inFlight, 16) * orDefault(sc.batch, 10)}
	if sc.during != nil {
		sc.during(r)
	}
	// Every record reaches the consumer, the store empties as the last acks land, and the uploader counts
	// them (its counters move just after each ack commits).
	r.mu.Lock()
	wantEvents := nEvents + len(r.midSeqs)
	r.mu.Unlock()
	for {
		fixes, events := cons.counts()
		us := up.Stats()
		if fixes == nFixes && events == wantEvents && storeEmpty(st) && us.Fixes >= uint64(nFixes) && us.Events >= uint64(wantEvents) {
			break
		}
		if time.Now().After(r.deadline) {
			t.Fatalf("after %v: %d of %d fixes, %d of %d events; consumer rejected %d; uploader %+v; store %+v; link %+v",
				time.Since(start).Round(time.Millisecond), fixes, nFixes, events, wantEvents, cons.rejected, up.Stats(), st.Stats(), link.Stats())
		}
		select {
		case <-cons.changed:
		case <-time.After(20 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)

	cons.mu.Lock()
	defer cons.mu.Unlock()
	if cons.rejected != 0 || v.Stats().Rejected() != 0 {
		t.Errorf("the verifier rejected messages: consumer %d, verifier %+v", cons.rejected, v.Stats())
	}
	us := up.Stats()
	if us.Quarantined != 0 || st.Stats().QuarantinedRecords != 0 {
		t.Errorf("records quarantined: uploader %+v", us)
	}
	if us.Fixes < uint64(nFixes) || us.Events < uint64(wantEvents) {
		t.Errorf("uploader acked %d fixes and %d events, want at least %d and %d", us.Fixes, us.Events, nFixes, wantEvents)
	}
	if us.LiveFirst == 0 {
		t.Error("no live fix was sent ahead of the backlog")
	}
	for k, e := range cons.events {
		if e.Kind != sdk.EventDelivered {
			t.Errorf("event %s arrived damaged: %+v", k, e)
		}
	}
	sc.check(t, r)

	// Ordering, measured at the consumer.
	fixOrder, eventOrder := laneOrder(cons.arrivals, false), laneOrder(cons.arrivals, true)
	lateEvents, fixesAhead := criticalFirst(cons.arrivals, inBacklog)
	r.mu.Lock()
	// Critical first, as the uploader takes records: an event appended while fixes are queued overtakes every
	// fix not yet handed out at that moment (live fixes, sent alone on a new connection, aside).
	for i, a := range cons.arrivals {
		from, ok := r.midSeqs[a.seq]
		if !ok || !a.event {
			continue
		}
		ahead := 0
		for _, f := range cons.arrivals[:i] {
			if !f.event && !f.single && f.seq >= from && f.seq <= r.lastFix {
				ahead++
			}
		}
		r.midAhead = append(r.midAhead, ahead)
		if ahead > 0 {
			t.Errorf("event %d, appended mid-drain, arrived after %d fixes (seq >= %d) that were still queued when it was appended", a.seq, ahead, from)
		}
	}
	t.Logf("in %v: delivered %d fixes and %d events in %d messages; %d duplicates dropped; uploader %+v; link %d connections",
		elapsed.Round(time.Millisecond), len(cons.fixes), len(cons.events), cons.msgs, cons.dups, us, link.Stats().Connects)
	t.Logf("order: fixes %v; events %v; backlog events behind a batched fix: %d of %d (%d batched fixes ahead of the last event); "+
		"mid-drain events: queued fixes that overtook them %v (must be 0), fixes taken as queued: seq >= %v of %d",
		fixOrder, eventOrder, lateEvents, nEvents, fixesAhead, r.midAhead, r.midSeqs, r.lastFix)
	r.mu.Unlock()
}

// orDefault returns v, or def when v is zero.
func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}
