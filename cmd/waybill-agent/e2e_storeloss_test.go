package main

// End to end (issue 15): a truck that lost its store gets its open orders back. Real Mosquitto, the real
// agent binary and the real dispatch side (rig: dispatch.Client with the archive as its Record and an
// outbox, OnlineGrace 500 ms).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// activeOrders returns the ids on the driver's page (GET /api/orders?state=active), sorted.
func (a *agentProc) activeOrders() ([]string, error) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + a.http + "/api/orders?state=active")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Orders []struct {
			ID string `json:"id"`
		} `json:"orders"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	var ids []string
	for _, o := range body.Orders {
		ids = append(ids, o.ID)
	}
	slices.Sort(ids)
	return ids, nil
}

// storeLoss: four orders reach the truck, the driver delivers one, the other three are confirmed received;
// the agent stops and its queue.db is deleted (and queue.db.seq when noSeq), as when the SD card is swapped;
// the agent starts again on a new store ("created"). Within one online grace period (plus a little) the
// three open orders are back on the driver's page, confirmed by the new store; the delivered one is not sent
// again and is not in the new book.
func storeLoss(t *testing.T, noSeq bool) {
	r := newRig(t, sdktest.Options{})
	const name = "truck-03"
	r.b.Truck(name)
	of := r.startOffice(officeOptions{})
	a := r.newAgent(name, agentOptions{})
	a.start(true)
	ids := []string{"o-1", "o-2", "o-3", "o-4"}
	open := ids[1:]
	r.createOrders(name, ids...)
	a.waitOrders(20*time.Second, ids...)
	a.act("o-1", "delivered", "")

	ctx := context.Background()
	entry := func(id string) dispatch.Entry {
		t.Helper()
		e, err := of.Outbox.Get(ctx, name, id)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	outbox := func() string {
		var s string
		for _, id := range ids {
			e := entry(id)
			s += fmt.Sprintf(" %s:%s/confirmed %d/sends %d", id, e.State, e.Confirmed, e.Sends)
		}
		return s
	}
	waitFor(t, 20*time.Second, "o-1 delivered and the others received in the outbox", func() bool {
		if entry("o-1").State != dispatch.StateDelivered {
			return false
		}
		for _, id := range open {
			if e := entry(id); e.State != dispatch.StateReceived || e.Unconfirmed() {
				return false
			}
		}
		return true
	}, outbox)
	sendsBefore := map[string]int{}
	for _, id := range ids {
		sendsBefore[id] = entry(id).Sends
	}
	oldEpoch := a.epochs[len(a.epochs)-1]

	a.stop()
	a.loseStore(noSeq)
	started := time.Now() // the agent process starts: connect, status, orders all count
	a.start(true)
	h := a.waitHealth(5*time.Second, "healthz", func(health) bool { return true })
	if h.Store.Origin != "created" || h.Store.Epoch == oldEpoch {
		t.Fatalf("after the swap: origin %q, epoch %x (was %x); want a new epoch, created", h.Store.Origin,
			h.Store.Epoch[:], oldEpoch[:])
	}

	// Within one online grace period (500 ms) after the truck is up, plus the time to connect and deliver.
	const bound = 500*time.Millisecond + 4*time.Second
	var active []string
	for {
		var err error
		if active, err = a.activeOrders(); err == nil && slices.Equal(active, open) {
			break
		}
		if time.Since(started) > bound {
			t.Fatalf("the driver's page shows %q (err %v) %v after the restart, want %q; outbox:%s\n%s\nagent log:\n%s",
				active, err, time.Since(started).Round(time.Millisecond), open, outbox(), r.handled.summary(), a.logs.Tail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
	back := time.Since(started)

	// The new store confirms them; the delivered order was not sent again and is not in the new book.
	waitFor(t, 10*time.Second, "the open orders confirmed by the new store", func() bool {
		for _, id := range open {
			if e := entry(id); e.Unconfirmed() || e.Awaiting != (sdk.Epoch{}) {
				return false
			}
		}
		return true
	}, outbox)
	if e := entry("o-1"); e.State != dispatch.StateDelivered || e.Sends != sendsBefore["o-1"] {
		t.Errorf("the delivered order: %s, sent %d times (before the swap %d): want delivered, not sent again",
			e.State, e.Sends, sendsBefore["o-1"])
	}
	if resp, err := http.Get("http://" + a.http + "/api/orders/o-1"); err != nil {
		t.Error(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("the delivered order is in the new store's book: GET /api/orders/o-1 answered %d", resp.StatusCode)
		}
	}
	// Dispatch's Handle was told the store is new, once.
	var changes []*dispatch.StoreChange
	r.handled.mu.Lock()
	for _, s := range r.handled.statuses {
		if s.Truck == name && s.NewStore != nil {
			changes = append(changes, s.NewStore)
		}
	}
	r.handled.mu.Unlock()
	if len(changes) != 1 || changes[0].Reopened != len(open) || changes[0].Previous != oldEpoch ||
		changes[0].Epoch != h.Store.Epoch || changes[0].Origin != "created" {
		t.Errorf("dispatch saw %d new-store statuses (%+v), want one: %d reopened, created, %x after %x", len(changes),
			changes, len(open), h.Store.Epoch[:], oldEpoch[:])
	}
	sends := map[string]int{} // o-1: since the swap; the open ones: since they were reopened (Sends restarts)
	for _, id := range ids {
		sends[id] = entry(id).Sends
	}
	sends["o-1"] -= sendsBefore["o-1"]
	a.stop()
	t.Logf("store lost (queue.db deleted, side file %s): the %d open orders back on the driver's page %v after the "+
		"agent process started (online grace 500 ms); sends of the delivered order since, and of the reopened ones since reopened: %v; %s",
		map[bool]string{false: "kept", true: "deleted too"}[noSeq], len(open), back.Round(time.Millisecond), sends,
		r.handled.summary())
}

func TestStoreLossResendsOpenOrders(t *testing.T)               { storeLoss(t, false) }
func TestStoreLossWithoutSeqFileResendsOpenOrders(t *testing.T) { storeLoss(t, true) }
