package archive_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/archive"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// TestArchiveIdempotentAndReads (f): commits of the same fixes, events and an older status change nothing;
// the reads return what was committed, in record order; a second open waits at most its timeout.
func TestArchiveIdempotentAndReads(t *testing.T) {
	path := archivePath(t)
	a := openArchive(t, path)
	ctx := context.Background()
	e1, e2 := sdk.Epoch{2}, sdk.Epoch{1}
	fix := func(e sdk.Epoch, q uint64) dispatch.Fix {
		return dispatch.Fix{Truck: "truck-1", Epoch: e, Seq: q, Fix: sdk.Fix{Time: time.Unix(1700000000+int64(q), 0).UTC(),
			Lat: 51.5, Lon: -0.1, Mode: 3, Sats: 9, Has: sdk.FixSats}}
	}
	batch := []dispatch.Fix{fix(e1, 3), fix(e1, 1), fix(e2, 7)}
	ev := &dispatch.Event{Truck: "truck-1", ID: sdk.MsgID{1}, Sent: time.Unix(1700000100, 0).UTC(),
		Event: sdk.Event{Kind: sdk.EventDelivered, Epoch: e1, RecordSeq: 2, Time: time.Unix(1700000090, 0).UTC(),
			OrderID: "o-1", Revision: 1, Via: sdk.ViaButton}}
	newer := &dispatch.Status{Truck: "truck-1", Status: sdk.Status{State: sdk.StateOnline, Time: time.Unix(1700000200, 0).UTC()}}
	older := &dispatch.Status{Truck: "truck-1", Status: sdk.Status{State: sdk.StateOffline, Time: time.Unix(1700000000, 0).UTC()}}
	for range 2 {
		for _, u := range []dispatch.Update{{Fixes: batch}, {Event: ev}, {Status: newer}, {Status: older},
			{Rejection: &dispatch.Rejection{Topic: "x"}}} {
			if err := a.Commit(ctx, u); err != nil {
				t.Fatal(err)
			}
		}
	}
	later := *ev
	later.Sent = later.Sent.Add(time.Hour) // a re-sent copy: the first one stays
	if err := a.Commit(ctx, dispatch.Update{Event: &later}); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(ctx, dispatch.Update{Fixes: []dispatch.Fix{fix(e1, 1), {Truck: "truck-2", Epoch: e1, Seq: 1}}}); err == nil {
		t.Error("one update with two trucks' fixes was accepted")
	}
	c, err := a.Counts("truck-1")
	if err != nil || c != (archive.Counts{Fixes: 3, Events: 1, Status: true}) {
		t.Fatalf("counts %+v, %v; want 3 fixes, 1 event, a status", c, err)
	}
	fixes, err := a.Fixes("truck-1")
	if err != nil {
		t.Fatal(err)
	}
	want := []dispatch.Fix{fix(e2, 7), fix(e1, 1), fix(e1, 3)} // epoch bytes, then seq
	if len(fixes) != 3 {
		t.Fatalf("fixes %+v", fixes)
	}
	for i := range want {
		if fixes[i].Epoch != want[i].Epoch || fixes[i].Seq != want[i].Seq || !fixes[i].Fix.Time.Equal(want[i].Fix.Time) ||
			fixes[i].Fix.Sats != 9 || fixes[i].Fix.Has != sdk.FixSats {
			t.Errorf("fix %d: %+v, want %+v", i, fixes[i], want[i])
		}
	}
	evs, err := a.Events("truck-1")
	if err != nil || len(evs) != 1 || !evs[0].Sent.Equal(ev.Sent) || evs[0].Event.OrderID != "o-1" ||
		evs[0].Event.Kind != sdk.EventDelivered || evs[0].ID != ev.ID {
		t.Fatalf("events %+v, %v", evs, err)
	}
	st, ok, err := a.Status("truck-1")
	if err != nil || !ok || st.Status.State != sdk.StateOnline || !st.Status.Time.Equal(newer.Status.Time) {
		t.Fatalf("status %+v %v %v: want the newer online one", st, ok, err)
	}
	if trucks, _ := a.Trucks(); len(trucks) != 1 || trucks[0] != "truck-1" {
		t.Fatalf("trucks %v", trucks)
	}
	if c, _ := a.Counts("nobody"); c != (archive.Counts{}) {
		t.Fatalf("counts of an unknown truck: %+v", c)
	}

	start := time.Now()
	if _, err := archive.Open(path, archive.Options{Timeout: 200 * time.Millisecond}); err == nil {
		t.Fatal("a second open of a locked archive succeeded")
	} else if time.Since(start) > 5*time.Second {
		t.Fatalf("the second open waited %v", time.Since(start))
	} else {
		t.Logf("second open: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := archive.Open(path, archive.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if c, _ := ro.Counts("truck-1"); c.Fixes != 3 {
		t.Fatalf("read-only reopen: %+v", c)
	}
	if _, err := archive.Open(path+".missing", archive.Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only open of a missing file succeeded")
	}
}

// TestReceiptsForCommittedRecords (a): records committed to the archive are receipted; the truck verifies
// the receipts with the fleet CA; a re-published batch (a lost receipt) is receipted again; the first
// A truck whose link is cut is offline in the archive: the broker's will arrives after the connection's
// refreshes although it was signed at connect (its Time is older), and it names their session. A late
// refresh of that connection does not bring the truck back online; the next connection's status does.
func TestArchiveWillEndsItsConnection(t *testing.T) {
	a := openArchive(t, archivePath(t))
	ctx := context.Background()
	t0 := time.Unix(1700000000, 0).UTC()
	status := func(state sdk.State, at, session time.Duration) *dispatch.Status {
		return &dispatch.Status{Truck: "truck-1", Status: sdk.Status{State: state, Time: t0.Add(at), Session: t0.Add(session)}}
	}
	for _, c := range []struct {
		name string
		st   *dispatch.Status
		want sdk.State
	}{
		{"online after connecting", status(sdk.StateOnline, time.Second, 0), sdk.StateOnline},
		{"a refresh", status(sdk.StateOnline, 10*time.Minute, 0), sdk.StateOnline},
		{"the will (signed at connect)", status(sdk.StateOffline, 0, 0), sdk.StateOffline},
		{"a late refresh of the dead connection", status(sdk.StateOnline, 9*time.Minute, 0), sdk.StateOffline},
		{"the next connection", status(sdk.StateOnline, 12*time.Minute, 11*time.Minute), sdk.StateOnline},
		{"the first connection's will again", status(sdk.StateOffline, 0, 0), sdk.StateOnline},
	} {
		if err := a.Commit(ctx, dispatch.Update{Status: c.st}); err != nil {
			t.Fatal(err)
		}
		st, ok, err := a.Status("truck-1")
		if err != nil || !ok || st.Status.State != c.want {
			t.Errorf("after %s: %v %v %v, want %v", c.name, st.Status.State, ok, err, c.want)
		}
	}
}

// receipt carries dispatch's certificate, later ones do not.
func TestReceiptsForCommittedRecords(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	tr := startTruck(t, b)
	a := openArchive(t, archivePath(t))
	defer a.Close()
	o := startOffice(t, b, "office", dispatch.Config{Record: a}, nil)

	tr.fixes(1, 10)
	tr.fixes(11, 20)
	tr.event(21)
	sdktest.WaitFor(t, 20*time.Second, "receipts for 1..21", func() bool { return covers(tr.receipted(), 1, 21, 1) })
	c, err := a.Counts("truck-1")
	if err != nil || c.Fixes != 20 || c.Events != 1 {
		t.Fatalf("archive counts %+v, %v", c, err)
	}
	n := tr.nReceipts()
	tr.fixes(1, 10) // the same records again, signed anew: the truck did not get the receipt
	sdktest.WaitFor(t, 20*time.Second, "a second receipt for 1..10", func() bool { return covers(tr.receipted(), 1, 10, 2) })
	got := tr.receipted()
	for q, k := range got {
		if q < 1 || q > 21 {
			t.Errorf("record %d was receipted but never published", q)
		}
		if q > 10 && k != 1 {
			t.Errorf("record %d receipted %d times", q, k)
		}
	}
	tr.mu.Lock()
	first, last := tr.receipts[0], tr.receipts[len(tr.receipts)-1]
	rejected := len(tr.rejected)
	tr.mu.Unlock()
	if len(first.Cert) == 0 || len(last.Cert) != 0 {
		t.Errorf("certificate in the first receipt: %v, in the last: %v; want only the first", len(first.Cert) > 0, len(last.Cert) > 0)
	}
	if first.Signer.Name != "office" {
		t.Errorf("receipt signed by %q", first.Signer.Name)
	}
	if rejected != 0 {
		t.Errorf("the truck refused %d messages", rejected)
	}
	if c, _ := a.Counts("truck-1"); c.Fixes != 20 {
		t.Errorf("the duplicate changed the archive: %+v", c)
	}
	t.Logf("%d receipts for 2 batches and an event, %d for the duplicate batch; consumer %+v", n, tr.nReceipts()-n,
		o.c.Consumer().Stats())
}

// TestNoReceiptsWithoutRecord (b): a client without a Record sends no receipts and no dispatch status.
func TestNoReceiptsWithoutRecord(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	tr := startTruck(t, b)
	o := startOffice(t, b, "office", dispatch.Config{}, nil)
	tr.fixes(1, 10)
	tr.event(11)
	sdktest.WaitFor(t, 20*time.Second, "the consumer to get them", func() bool {
		s := o.c.Consumer().Stats()
		return s.Fixes == 10 && s.Events == 1
	})
	time.Sleep(time.Second) // several receipt delays
	if n := tr.nReceipts(); n != 0 || o.c.ReceiptsSent() != 0 {
		t.Fatalf("%d receipts arrived without a Record", n)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.statuses) != 0 {
		t.Fatalf("a dispatch status without a Record: %v", tr.statuses)
	}
}

// TestDispatchDownKeepsSession (c): dispatch stops; the truck publishes telemetry and events meanwhile;
// dispatch starts again with the same identity and data directory and finds everything in the archive
// (its persistent session), and receipts it.
func TestDispatchDownKeepsSession(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	tr := startTruck(t, b)
	path := archivePath(t)
	a := openArchive(t, path)
	o := startOffice(t, b, "office", dispatch.Config{Record: a}, nil)
	tr.fixes(1, 5)
	sdktest.WaitFor(t, 20*time.Second, "receipts for 1..5", func() bool { return covers(tr.receipted(), 1, 5, 1) })
	o.stop(t)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	for q := uint64(6); q <= 200; q += 5 {
		tr.fixes(q, q+3)
		tr.event(q + 4)
	}
	a = openArchive(t, path)
	defer a.Close()
	startOffice(t, b, "office", dispatch.Config{Record: a}, nil)
	sdktest.WaitFor(t, 30*time.Second, "everything in the archive", func() bool {
		c, _ := a.Counts("truck-1")
		return c.Fixes == 5+39*4 && c.Events == 39
	})
	sdktest.WaitFor(t, 20*time.Second, "receipts for 1..200", func() bool { return covers(tr.receipted(), 1, 200, 1) })
}

// failing is a Record whose Commit fails while fail is set.
type failing struct {
	dispatch.Record
	fail  atomic.Bool
	tried atomic.Int64
}

func (f *failing) Commit(ctx context.Context, u dispatch.Update) error {
	if f.fail.Load() && u.Status == nil {
		f.tried.Add(1)
		return errors.New("disk full")
	}
	return f.Record.Commit(ctx, u)
}

// TestCommitFailureLeavesUnacknowledged (d): while Commit fails nothing is receipted and the message is not
// acknowledged; once Commit works, the broker delivers it again and it is committed and receipted.
func TestCommitFailureLeavesUnacknowledged(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	tr := startTruck(t, b)
	a := openArchive(t, archivePath(t))
	defer a.Close()
	rec := &failing{Record: a}
	rec.fail.Store(true)
	o := startOffice(t, b, "office", dispatch.Config{Record: rec}, nil)
	tr.fixes(1, 10)
	tr.event(11)
	sdktest.WaitFor(t, 20*time.Second, "commits tried and failing, twice", func() bool { return rec.tried.Load() >= 2 })
	time.Sleep(300 * time.Millisecond)
	if n := tr.nReceipts(); n != 0 {
		t.Fatalf("%d receipts while Commit fails", n)
	}
	if c, _ := a.Counts("truck-1"); c.Fixes != 0 || c.Events != 0 {
		t.Fatalf("archive while failing: %+v", c)
	}
	if s := o.c.Consumer().Stats(); s.CommitErrors == 0 || s.Fixes != 0 {
		t.Fatalf("consumer stats %+v", s)
	}
	rec.fail.Store(false)
	sdktest.WaitFor(t, 30*time.Second, "the messages again, committed", func() bool {
		c, _ := a.Counts("truck-1")
		return c.Fixes == 10 && c.Events == 1
	})
	sdktest.WaitFor(t, 20*time.Second, "receipts for 1..11", func() bool { return covers(tr.receipted(), 1, 11, 1) })
	t.Logf("failed commits %d; consumer %+v", rec.tried.Load(), o.c.Consumer().Stats())
}

// TestDispatchStatusRetained (e): with a Record the client's signed status is retained online while it
// runs, and turns offline (the will) when its connection dies without a DISCONNECT, and after a clean stop.
func TestDispatchStatusRetained(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	a := openArchive(t, archivePath(t))
	defer a.Close()
	p := startProxy(t, b.Addr)
	o := startOffice(t, b, "office", dispatch.Config{Record: a}, func(tc *transport.Config) {
		tc.Brokers = []string{"mqtts://" + p.addr()}
	})
	_ = o
	// A truck connecting later gets the retained status, verified, with dispatch's certificate in it.
	state := func(tr *truck) sdk.State {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if m := tr.statuses["office"]; m != nil {
			return m.Status.State
		}
		return 0
	}
	tr := startTruck(t, b)
	sdktest.WaitFor(t, 20*time.Second, "the retained online status", func() bool { return state(tr) == sdk.StateOnline })
	tr.mu.Lock()
	if m := tr.statuses["office"]; len(m.Cert) == 0 || m.Signer.Name != "office" {
		t.Errorf("dispatch status without the certificate, or signed by %q", m.Signer.Name)
	}
	tr.mu.Unlock()

	p.cut() // the link dies without DISCONNECT and stays down: the broker publishes the will
	sdktest.WaitFor(t, 30*time.Second, "the offline will", func() bool { return state(tr) == sdk.StateOffline })
	p.restore()
	sdktest.WaitFor(t, 30*time.Second, "online again after reconnecting", func() bool { return state(tr) == sdk.StateOnline })
	o.stop(t) // clean stop: DISCONNECT with the will (reason 0x04)
	sdktest.WaitFor(t, 20*time.Second, "offline after a clean stop", func() bool { return state(tr) == sdk.StateOffline })
}

// proxy forwards TCP connections to the broker; cut closes them all and refuses new ones until restore.
type proxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	down   bool
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.cut(); p.wg.Wait() })
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		for _, pair := range [][2]net.Conn{{c, u}, {u, c}} {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				buf := make([]byte, 32<<10)
				for {
					n, err := pair[0].Read(buf)
					if n > 0 {
						if _, werr := pair[1].Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				pair[0].Close()
				pair[1].Close()
			}()
		}
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}
