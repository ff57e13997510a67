package main

// End to end: nothing a truck accepted is lost between the truck and dispatch's own record. Each test runs
// real Mosquitto, the real agent binary and the real dispatch side (dispatch.Client committing to an
// archive), and counts at the archive file after the run (rig.verify): every record of every store epoch,
// every driver action answered 200, each handed to dispatch's Handle exactly once, and the agent's store
// empty with /healthz queue.unreceipted 0 (agentProc.finish).

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/brokerconf"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/sdktest/faultproxy"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/sdk/truck"
	"github.com/waybill-iot/waybill/store"
)

func orderIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i+1)
	}
	return ids
}

// TestDispatchDownWhileDriversConfirm: orders reach the truck, dispatch stops, drivers confirm (delivered
// and failed) while fixes keep flowing, dispatch stays down for several receipt timeouts (2 s, doubling),
// then starts again with the same identity and archive. While it is down the truck's store never empties
// (records stay until receipted, the driver's proofs at least); afterwards everything arrives exactly once.
func TestDispatchDownWhileDriversConfirm(t *testing.T) {
	r := newRig(t, sdktest.Options{})
	const name = "truck-0001"
	r.b.Truck(name)
	r.startOffice(officeOptions{})
	a := r.newAgent(name, agentOptions{GPS: r.startGPS(5)})
	a.start(false)
	ids := orderIDs("o", 6)
	r.createOrders(name, ids...)
	a.waitOrders(20*time.Second, ids...)
	a.waitHealth(20*time.Second, "receipts from dispatch", func(h health) bool { return h.Queue.Receipted > 0 })

	r.stopOffice()
	for _, id := range ids[:4] {
		a.act(id, "delivered", "")
	}
	a.act(ids[4], "failed", "nobody home")
	a.act(ids[5], "failed", "address not found")
	down := time.Now()
	minQueued, samples := int64(1<<62), 0
	for time.Since(down) < 9*time.Second { // 2 s + 4 s + 8 s of receipt timeouts begin in here
		h, err := a.healthz()
		if err != nil {
			t.Fatal(err)
		}
		samples++
		minQueued = min(minQueued, h.Queue.Critical+h.Queue.Normal)
		if h.Queue.Critical < int64(len(ids)) {
			t.Fatalf("the truck's store dropped a driver's proof while dispatch was down: %v", h)
		}
		time.Sleep(200 * time.Millisecond)
	}
	hDown := a.waitHealth(time.Second, "healthz", func(health) bool { return true })
	if hDown.Queue.Resent == 0 {
		t.Errorf("no record was sent again while dispatch was down: %v", hDown)
	}

	r.startOffice(officeOptions{})
	h := a.finish(60 * time.Second)
	r.stopOffice()
	res := r.verify([]*agentProc{a}, nil)[name]
	t.Logf("dispatch down %.1f s: the store held at least %d records in all %d samples (%d driver proofs); "+
		"%d resent while it was down, %d in all; archive: %v; %s", time.Since(down).Seconds(), minQueued, samples,
		len(a.actions), hDown.Queue.Resent, a.resent+h.Queue.Resent, res, r.handled.summary())
}

// TestBrokerKilledMidFlow: Mosquitto is SIGKILLed while the truck uploads and drivers confirm, and restarted
// (its persistence is a periodic snapshot); drivers confirm while it is down too. Everything arrives once.
func TestBrokerKilledMidFlow(t *testing.T) {
	r := newRig(t, sdktest.Options{})
	const name = "truck-0001"
	r.b.Truck(name)
	r.startOffice(officeOptions{})
	a := r.newAgent(name, agentOptions{GPS: r.startGPS(6)})
	a.start(false)
	ids := orderIDs("o", 6)
	r.createOrders(name, ids...)
	a.waitOrders(20*time.Second, ids...)
	a.act(ids[0], "delivered", "")
	time.Sleep(1500 * time.Millisecond)
	a.act(ids[1], "delivered", "")
	r.b.Kill() // mid flow: fixes are being uploaded, the last proof may be in flight
	a.act(ids[2], "failed", "closed")
	time.Sleep(3 * time.Second)
	a.act(ids[3], "delivered", "")
	r.b.Start()
	a.waitHealth(30*time.Second, "reconnect after the broker restart", func(h health) bool { return h.Connected })
	a.act(ids[4], "delivered", "")
	a.act(ids[5], "delivered", "")
	time.Sleep(2 * time.Second)
	h := a.finish(60 * time.Second)
	r.stopOffice()
	res := r.verify([]*agentProc{a}, nil)[name]
	t.Logf("broker SIGKILLed and restarted: archive: %v; %d resent; %s", res, a.resent+h.Queue.Resent, r.handled.summary())
}

// sdSwap: the agent runs, its store is drained and receipted (finish), then its queue.db is deleted (and
// the side file queue.db.seq too when noSeq), as when the SD card is swapped. The agent starts a new epoch
// ("created"); its messages are not refused by dispatch as replayed (the envelope sequence survives in the
// side file, or is seeded from the clock), and everything new arrives.
func sdSwap(t *testing.T, noSeq bool) {
	r := newRig(t, sdktest.Options{})
	const name = "truck-0001"
	r.b.Truck(name)
	r.startOffice(officeOptions{})
	a := r.newAgent(name, agentOptions{GPS: r.startGPS(8)})
	a.start(false)
	r.createOrders(name, "o-1", "o-2")
	a.waitOrders(20*time.Second, "o-1", "o-2")
	a.act("o-1", "delivered", "")
	time.Sleep(2 * time.Second)
	a.finish(60 * time.Second) // drained and receipted: nothing dies with the card

	a.loseStore(noSeq)
	a.start(false)
	h := a.waitHealth(5*time.Second, "healthz", func(health) bool { return true })
	if h.Store.Origin != "created" || len(a.epochs) != 2 {
		t.Fatalf("after the swap: origin %q, epochs %x; want a new epoch, created", h.Store.Origin, a.epochs)
	}
	// The order book went with the card; dispatch sees the new store epoch in the status and sends the open
	// o-2 again (e2e_storeloss_test.go checks that); new orders reach the new store.
	r.createOrders(name, "o-3", "o-4")
	a.waitOrders(20*time.Second, "o-3", "o-4")
	a.act("o-3", "delivered", "")
	a.act("o-4", "failed", "refused")
	time.Sleep(2 * time.Second)
	h = a.finish(60 * time.Second)
	stats := r.office.Client.Consumer().Stats()
	r.stopOffice()
	res := r.verify([]*agentProc{a}, nil)[name]
	if n := r.handled.rejected[sdk.ReasonReplayed] + int(stats.Rejected[sdk.ReasonReplayed]); n > 0 {
		t.Errorf("dispatch refused %d messages as replayed after the swap: %v", n, stats.Rejected)
	}
	if len(res.PerEpoch) != 2 {
		t.Errorf("archive holds %d epochs, want 2: %v", len(res.PerEpoch), res)
	}
	t.Logf("SD swap (queue.db deleted, side file %s): epochs %x; archive: %v; dispatch rejected %v; %s",
		map[bool]string{false: "kept", true: "deleted too"}[noSeq], a.epochs, res, stats.Rejected, r.handled.summary())
}

func TestSDSwapStartsNewEpoch(t *testing.T)               { sdSwap(t, false) }
func TestSDSwapWithoutSeqFileStartsNewEpoch(t *testing.T) { sdSwap(t, true) }

// TestStatusRefreshesThenKill9: 1,100+ status refreshes on one connection ([status] interval 10ms), then
// the agent is SIGKILLed: dispatch sees it go offline (the MQTT will, signed at connect, is not refused as
// replayed: offline statuses have their own replay window).
func TestStatusRefreshesThenKill9(t *testing.T) {
	r := newRig(t, sdktest.Options{})
	const name = "truck-0001"
	r.b.Truck(name)
	r.startOffice(officeOptions{})
	a := r.newAgent(name, agentOptions{StatusInterval: "10ms"})
	a.start(false)
	a.waitHealth(10*time.Second, "connection", func(h health) bool { return h.Connected })
	const refreshes = 1100
	waitFor(t, 40*time.Second, fmt.Sprintf("%d online statuses at dispatch", refreshes+1), func() bool {
		_, n := r.handled.lastStatus(name)
		return n > refreshes
	}, func() string { return r.handled.summary() + "\n" + a.logs.Tail(20) })
	if m, err := a.metrics(); err != nil || m["waybill_link_connects_total"] != 1 {
		t.Fatalf("the refreshes were not all on one connection: connects %v (%v)", m["waybill_link_connects_total"], err)
	}
	a.kill9()
	waitFor(t, 20*time.Second, "the truck's offline will at dispatch", func() bool {
		st, _ := r.handled.lastStatus(name)
		return st.Status.State == sdk.StateOffline
	}, func() string {
		st, n := r.handled.lastStatus(name)
		return fmt.Sprintf("%d statuses, last %+v; %s; consumer %+v", n, st, r.handled.summary(), r.office.Client.Consumer().Stats())
	})
	_, n := r.handled.lastStatus(name)
	stats := r.office.Client.Consumer().Stats()
	if stats.Rejected[sdk.ReasonReplayed] > 0 {
		t.Errorf("dispatch refused %d messages as replayed: %v", stats.Rejected[sdk.ReasonReplayed], stats.Rejected)
	}
	a.finish(30 * time.Second)
	r.stopOffice()
	r.verify([]*agentProc{a}, nil)
	t.Logf("%d statuses handled by dispatch (the last the offline will after SIGKILL); rejected %v", n, stats.Rejected)
}

// TestForeignMemberOfDispatchShareGroup: dispatch runs with ShareGroup "office"; a client with another
// truck's certificate subscribes $share/office/fleet/trucks/+/events and .../telemetry. With Mosquitto's
// file ACL that was granted, and the broker dropped the messages its round robin handed that member (the
// truck's re-sends made up for them). With the access rules of brokerconf (the dynamic security plugin),
// only dispatch may join a share group: the subscription gets SUBACK 135, and every record reaches
// dispatch the first time: the records the broker acknowledged to the truck minus those dispatch's
// consumer received (new and duplicate) must not be positive.
func TestForeignMemberOfDispatchShareGroup(t *testing.T) {
	r := newRig(t, sdktest.Options{})
	const name = "truck-0001"
	r.b.Truck(name)
	thief := r.b.Truck("truck-0002")
	r.startOffice(officeOptions{ShareGroup: officeName})
	var topics sdk.Topics
	var stolen atomic.Int64
	tc, err := transport.New(transport.Config{Brokers: []string{"mqtts://" + r.b.Addr}, ClientID: thief.Name,
		CertFile: thief.CertFile, KeyFile: thief.KeyFile, CAFile: thief.CAFile, BackoffMin: 50 * time.Millisecond,
		BackoffMax: 500 * time.Millisecond,
		Subscriptions: []transport.Subscription{
			{Topic: "$share/" + officeName + "/" + topics.FleetFilter(sdk.KindEvents), QoS: 1},
			{Topic: "$share/" + officeName + "/" + topics.FleetFilter(sdk.KindTelemetry), QoS: 1}},
		OnPublish: func(context.Context, transport.Message) error { stolen.Add(1); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); tc.Run(r.ctx) }()
	wctx, wcancel := context.WithTimeout(r.ctx, 20*time.Second)
	defer wcancel()
	if err := tc.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	if st := tc.Current(); st.Info.SubscribeErr == nil || !strings.Contains(st.Info.SubscribeErr.Error(), "135") {
		t.Fatalf("the foreign share-group subscription: %v, want refused with reason 135", st.Info.SubscribeErr)
	}

	a := r.newAgent(name, agentOptions{GPS: r.startGPS(9)})
	a.start(false)
	ids := orderIDs("o", 8)
	r.createOrders(name, ids...)
	a.waitOrders(30*time.Second, ids...)
	for i, id := range ids {
		if i%4 == 3 {
			a.act(id, "failed", "damaged goods")
		} else {
			a.act(id, "delivered", "")
		}
		time.Sleep(300 * time.Millisecond)
	}
	h := a.finish(60 * time.Second)
	cs := r.office.Client.Consumer().Stats()
	r.stopOffice()
	res := r.verify([]*agentProc{a}, nil)[name]
	received := cs.Fixes + cs.DuplicateFixes + cs.Events + cs.DuplicateEvents
	lost := int64(a.sent) - int64(received)
	if lost > 0 {
		t.Errorf("%d records went astray with a foreign share-group member refused (%d acknowledged to the truck, %d "+
			"received by dispatch)", lost, a.sent, received)
	}
	if stolen.Load() != 0 {
		t.Errorf("the foreign member received %d messages of another truck", stolen.Load())
	}
	t.Logf("share group with a refused foreign member: archive %v; %d records acknowledged by the broker, %d received by "+
		"dispatch, %d missing at first; %d resent; thief received %d; %s", res, a.sent, received, lost,
		a.resent+h.Queue.Resent, stolen.Load(), r.handled.summary())
}

// damageRecordPages overwrites, with garbage page headers (a bad flash block), every 4 KiB page of a closed
// store file that holds the record with key seq as a fix of the store's own epoch (key, then value format 1
// and kind fix), stale copies in free pages included. It returns how many pages it damaged.
func damageRecordPages(t *testing.T, path string, seq uint64) int {
	t.Helper()
	pat := binary.BigEndian.AppendUint64(nil, seq)
	return sdktest.DamagePages(t, path, append(pat, 1, truck.KindFix), true)
}

// TestSalvagedStoreKeepsRecordIdentity: the agent is cut off from the broker (so what it stores meanwhile is
// nowhere else) and stopped with unreceipted records; a page of its queue.db is damaged; at the next open
// the store is salvaged into a new epoch (healthz store.origin "salvaged"); the salvaged records keep their
// original (epoch, seq) and arrive exactly once; records on the damaged page are the only loss, counted.
func TestSalvagedStoreKeepsRecordIdentity(t *testing.T) {
	r := newRig(t, sdktest.Options{})
	const name = "truck-0001"
	r.b.Truck(name)
	r.startOffice(officeOptions{})
	proxy, err := faultproxy.Start(faultproxy.Config{Target: r.b.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close(context.Background())
	a := r.newAgent(name, agentOptions{Broker: "mqtts://" + proxy.Addr(), GPS: r.startGPS(11)})
	a.start(false)
	ids := orderIDs("o", 4)
	r.createOrders(name, ids...)
	a.waitOrders(20*time.Second, ids...)
	a.act(ids[0], "delivered", "")
	a.waitHealth(20*time.Second, "receipts from dispatch", func(h health) bool { return h.Queue.Receipted > 0 })

	proxy.SetFailFraction(1) // no signal
	proxy.DropAll()
	a.waitHealth(10*time.Second, "the link to go down", func(h health) bool { return !h.Connected })
	a.act(ids[1], "delivered", "")
	a.act(ids[2], "failed", "gate locked")
	a.waitHealth(30*time.Second, "fixes stored while offline", func(h health) bool { return h.Queue.Normal >= 120 })
	a.stop()

	before, st := a.storeRecords()
	old := a.epochs[0]
	var fixes []uint64
	var top uint64
	for k, lane := range before {
		if k.Epoch == old && lane == store.Normal {
			fixes = append(fixes, k.Seq)
		}
		top = max(top, k.Seq)
	}
	slices.Sort(fixes)
	target := fixes[len(fixes)*2/3] // stored while offline: sent nowhere
	pages := damageRecordPages(t, a.queueDB(), target)
	after, st2 := a.storeRecords() // this Open salvages
	if st2.Origin.Kind != store.OriginSalvaged || st2.Epoch == st.Epoch {
		t.Fatalf("after damaging %d pages holding seq %d: origin %+v, epoch %x (was %x)", pages, target, st2.Origin,
			st2.Epoch, st.Epoch)
	}
	gone := map[recKey]bool{}
	for k := range before {
		if _, ok := after[k]; !ok {
			gone[k] = true
		}
	}
	for k := range after {
		if k.Epoch != old {
			t.Errorf("salvaged record %v lost its original epoch %x", k, old[:])
		}
	}
	if len(gone) == 0 {
		t.Fatalf("the damaged page (seq %d) took no record with it", target)
	}
	a.next[old] = top + 1 // the old file handed out seqs up to top: all must be at dispatch, or on the page

	proxy.Pass()
	a.start(false)
	h := a.waitHealth(20*time.Second, "reconnect", func(h health) bool { return h.Connected })
	if h.Store.Origin != "salvaged" || len(a.epochs) != 2 {
		t.Fatalf("healthz after salvage: %v; epochs %x", h, a.epochs)
	}
	a.act(ids[3], "delivered", "")
	time.Sleep(2 * time.Second)
	h = a.finish(60 * time.Second)
	r.stopOffice()
	res := r.verify([]*agentProc{a}, map[string]expect{name: {above: map[sdk.Epoch]uint64{a.epochs[1]: top},
		mayLose: gone}})[name]
	if res.Lost == 0 {
		t.Errorf("none of the %d records of the damaged page is missing at dispatch: they were sent before the damage?", len(gone))
	}
	t.Logf("salvage: %d records in the store before, %d pages damaged (around seq %d), %d salvaged with their "+
		"original epoch, %d gone from the store, of them %d LOST (never reached dispatch: the only loss); archive: %v; %s",
		len(before), pages, target, len(after), len(gone), res.Lost, res, r.handled.summary())
}

// TestDispatchStalledBrokerDrops: dispatch's Record stalls (Commit blocks) while the truck sends 2,000 driver
// problem reports (each its own message) and fixes; the broker's per-client limits are small
// (max_inflight_messages 20, max_queued_messages 50) so Mosquitto drops messages for the stalled dispatch
// as in production at scale ("Outgoing messages are being dropped"). After the stall everything arrives
// exactly once: nothing dropped was receipted, so the truck re-sends it.
func TestDispatchStalledBrokerDrops(t *testing.T) {
	r := newRig(t, sdktest.Options{Config: brokerconf.Config{MaxQueued: 50, MaxInflight: 20}})
	const name = "truck-0001"
	r.b.Truck(name)
	of := r.startOffice(officeOptions{Stall: true})
	a := r.newAgent(name, agentOptions{GPS: r.startGPS(12)})
	a.start(false)
	r.createOrders(name, "o-1", "o-2")
	a.waitOrders(20*time.Second, "o-1", "o-2")
	a.waitHealth(20*time.Second, "receipts from dispatch", func(h health) bool { return h.Queue.Receipted > 0 })

	of.stall.stall()
	stalled := time.Now()
	const reports = 2000
	keys := make(chan recKey, reports)
	errs := make(chan error, reports)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < reports; i += 8 {
				k, err := a.tryAct("o-1", "problem", fmt.Sprintf("report %d", i))
				if err != nil {
					errs <- err
					return
				}
				keys <- k
			}
		}()
	}
	wg.Wait()
	close(keys)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for k := range keys {
		a.actions = append(a.actions, k)
	}
	a.act("o-2", "delivered", "")
	waitFor(t, 30*time.Second, "Mosquitto dropping messages for the stalled dispatch", func() bool {
		return strings.Contains(r.b.Logs(), "Outgoing messages are being dropped")
	}, func() string {
		h, _ := a.healthz()
		return fmt.Sprintf("healthz %v; broker log tail:\n%s", h, tailLines(r.b.Logs(), 10))
	})
	time.Sleep(2 * time.Second)
	of.stall.release()
	stall := time.Since(stalled)
	h := a.finish(90 * time.Second)
	cs := r.office.Client.Consumer().Stats()
	r.stopOffice()
	res := r.verify([]*agentProc{a}, nil)[name]
	t.Logf("dispatch stalled %.1f s with %d problem reports sent: Mosquitto dropped messages (%d NOTICE lines); archive: %v; "+
		"%d records acknowledged by the broker to the truck (%d of them dropped by the broker: not received by "+
		"dispatch), %d resent; dispatch: %d duplicate fixes, %d duplicate "+
		"events, rejected %v; %s", stall.Seconds(), reports, strings.Count(r.b.Logs(), "Outgoing messages are being dropped"), res,
		a.sent, int64(a.sent)-int64(cs.Fixes+cs.DuplicateFixes+cs.Events+cs.DuplicateEvents), a.resent+h.Queue.Resent, cs.DuplicateFixes, cs.DuplicateEvents, cs.Rejected, r.handled.summary())
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
