package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/sdktest/faultproxy"
)

// inBook reports whether the agent's order book holds order id now (no waiting).
func (a *agentProc) inBook(id string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + a.http + "/api/orders/" + id)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestKillNineLosesNothing is the agent's end-to-end durability test with the real binary: the GPS
// simulator on a pseudo-terminal -> waybill-agent -> a fault proxy -> real Mosquitto (mutual TLS, the ACL
// from our broker configuration) -> dispatch (dispatch.Client committing to an archive, receipting). The link
// is cut several times and the agent is killed with SIGKILL 20 times at random moments and restarted;
// dispatch sends orders meanwhile (the truck's received events) and the driver confirms deliveries on the
// agent's HTTP hook. At the end dispatch's archive holds every record the agent ever stored (seqs 1..max of
// its one store epoch), every confirmed delivery, each handed to Handle exactly once, and the agent's store
// is empty (everything receipted).
func TestKillNineLosesNothing(t *testing.T) {
	const kills = 20
	r := newRig(t, sdktest.Options{})
	const name = "truck-0001"
	r.b.Truck(name)
	r.startOffice(officeOptions{})
	proxy, err := faultproxy.Start(faultproxy.Config{Target: r.b.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close(context.Background())
	a := r.newAgent(name, agentOptions{Broker: "mqtts://" + proxy.Addr(), GPS: r.startGPS(3)})

	rng := rand.New(rand.NewPCG(7, 11))
	orders, cuts, delivered := 0, 0, 0
	for i := 0; i <= kills; i++ {
		a.start(false)
		life := time.Duration(500+rng.IntN(2500)) * time.Millisecond
		if i == kills {
			life = 2 * time.Second // the last run: then drain and stop cleanly
		}
		for deadline := time.Now().Add(life); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			switch rng.IntN(4) {
			case 0: // dispatch sends an order: the agent commits a received event
				orders++
				r.createOrders(name, fmt.Sprintf("o-%d", orders))
			case 1:
				if rng.IntN(3) == 0 {
					proxy.DropAll() // the cellular link drops
					cuts++
				}
			case 2: // the driver confirms the oldest undelivered order, once it is on the truck
				if id := fmt.Sprintf("o-%d", delivered+1); delivered < orders && a.inBook(id) {
					a.act(id, "delivered", "")
					delivered++
				}
			}
		}
		if i < kills {
			a.kill9()
		}
	}
	h := a.finish(60 * time.Second)
	r.stopOffice()
	res := r.verify([]*agentProc{a}, nil)[name]
	if len(a.epochs) != 1 {
		t.Errorf("store epochs %x: SIGKILL must not start a new one", a.epochs)
	}
	t.Logf("%d SIGKILLs, %d link cuts, %d orders, %d deliveries confirmed: dispatch's archive holds %v, each handed "+
		"over once; %d records resent; %s", kills, cuts, orders, delivered, res, a.resent+h.Queue.Resent, r.handled.summary())
}
