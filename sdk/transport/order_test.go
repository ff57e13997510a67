package transport

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// TestSubmitKeepsOrderWithManyInFlight submits 2,000 messages one after the other through a 20 ms round
// trip, waiting for each PUBACK only at the end, so hundreds are in flight at once: the subscriber receives
// them in submission order.
func TestSubmitKeepsOrderWithManyInFlight(t *testing.T) {
	p := newPKI(t)
	b := startMosquitto(t, p, brokerOpts{maxInflight: 1000})
	proxy := startProxy(t, b.addr())
	proxy.SetLatency(10 * time.Millisecond)
	const topic, n = "fleet/trucks/truck-1/telemetry", 2000

	in := make(inbox, n)
	dcfg := clientConfig(t, p, p.valid(t, "dispatch-1", "dispatch-1", "dispatch", false), "dispatch-1", b.url())
	dcfg.Subscriptions = []Subscription{{Topic: "fleet/trucks/+/telemetry", QoS: 1}}
	dcfg.OnPublish = in.handler
	disp := newConn(t, dcfg)
	running(t, disp)
	waitUp(t, disp)

	truck := newConn(t, clientConfig(t, p, p.valid(t, "truck-1", "truck-1", "truck", false), "truck-1", "mqtts://"+proxy.Addr()))
	running(t, truck)
	waitUp(t, truck)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pending := make([]*Pending, 0, n)
	for i := range n {
		p, err := truck.Submit(ctx, topic, []byte(strconv.Itoa(i)), PublishOptions{QoS: 1})
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		pending = append(pending, p)
	}
	for i, p := range pending {
		if err := p.Wait(ctx); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	for i := range n {
		select {
		case m := <-in:
			if got, _ := strconv.Atoi(string(m.Payload)); got != i {
				t.Fatalf("message %d arrived in position %d", got, i)
			}
		case <-ctx.Done():
			t.Fatalf("only %d of %d messages arrived", i, n)
		}
	}
}
