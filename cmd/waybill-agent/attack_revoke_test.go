package main

// The revocation attacks of the attack suite (issue 10; the whole table is in attack_test.go):
//
//	attack                                                      test
//	12 a revoked truck keeps its live connection                TestAttackRevokedTruck
//	13 a running truck accepts orders of a revoked dispatch key TestAttackRevokedDispatchKey
//	14 a truck certificate joins dispatch's share group         TestAttackShareGroupJoin
//	15 the local HTTP listener exhausted (idle, stalled bodies, TestListenerFlood (agent/listener_test.go: the
//	   event streams)                                           agent's real listener under a bounded flood)
//
// Revocation here is what `waybill pki revoke NAME --broker URL` does (sdktest.Broker.Revoke): the PKI
// revokes, the new CRL is published retained on fleet/crl, the identity is deleted from the broker's
// dynamic security plugin (which closes its sessions), and the broker's CRL copy is reloaded.

import (
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
)

// TestAttackRevokedTruck: truck-a's agent is connected and uploading; truck-a is revoked. Its connection is
// closed by the broker and it cannot come back (the TLS listener refuses the certificate); truck-b, not
// revoked, keeps publishing.
func TestAttackRevokedTruck(t *testing.T) {
	f := newFleet(t)
	other := f.connectPeer(t, f.b.ClientFiles(truckB), "")
	start := time.Now()
	f.b.Revoke(truckA)
	h := f.a.waitHealth(10*time.Second, "the revoked truck's connection closed", func(h health) bool { return !h.Connected })
	t.Logf("revoke to the revoked agent's connection closed: at most %v (link %q)", time.Since(start).Round(time.Millisecond), h.Link)
	time.Sleep(2 * time.Second) // the agent retries within its backoff: it must stay out
	if h, err := f.a.healthz(); err != nil || h.Connected {
		t.Errorf("the revoked truck is connected again: %+v (%v)\n%s", h, err, f.a.logs.Tail(20))
	}
	topic, err := sdk.Topics{}.Telemetry(truckB)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.publish(topic, []byte("x")); err != nil { // the broker accepts it; dispatch drops the garbage
		t.Errorf("truck-b after truck-a's revocation: %v", err)
	}
}

// TestAttackRevokedDispatchKey: orders signed by dispatch identity "office-2" are accepted by the running
// truck; office-2 is revoked. From the moment the new CRL reaches the truck (no restart, no reconnect) an
// order signed by office-2's key is refused as revoked, while the relay's own orders are still accepted;
// office-2's own connection is closed by the broker and cannot publish.
func TestAttackRevokedDispatchKey(t *testing.T) {
	f := newFleet(t)
	stolen := f.b.Dispatch("office-2")
	thief := f.connectPeer(t, stolen, "")
	key := stolen.Signer(t)
	o := newOrder(truckA, "before-revoke")
	thief.mustPublish(t, orderTopic(t, truckA, o.ID), signOrder(t, key, o))
	f.a.waitOrder(t, o.ID, 1)

	crlBefore := f.a.metric(t, "waybill_crl_number")
	start := time.Now()
	f.b.Revoke("office-2")
	told := time.Since(start)
	waitFor(t, 10*time.Second, "the truck applying the new CRL", func() bool { return f.a.metric(t, "waybill_crl_number") > crlBefore },
		func() string { return f.a.logs.Tail(20) })
	t.Logf("revoke (PKI, CRL published, broker told: %v) to the running truck applying the CRL: at most %v",
		told.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	// The thief's own session is over: it may publish nothing.
	if err := thief.publish(orderTopic(t, truckA, "thief"), signOrder(t, key, newOrder(truckA, "thief"))); err == nil {
		t.Error("the revoked dispatch identity published an order")
	}
	// Its key, relayed by another dispatch connection, is refused by the truck.
	f.refused(t, orderTopic(t, truckA, "after-revoke"), signOrder(t, key, newOrder(truckA, "after-revoke")), sdk.ReasonRevoked)
	f.notOnPage(t, "after-revoke", "order signed by the revoked key")
	f.accepted(t, newOrder(truckA, "genuine")) // the relay's key is still good
}

// TestAttackShareGroupJoin: truck-b subscribes to dispatch's share group for events and telemetry and is
// refused (SUBACK 135); dispatch, in its group, gets truck-a's delivery. (TestForeignMemberOfDispatchShareGroup
// checks that every record then reaches dispatch the first time.)
func TestAttackShareGroupJoin(t *testing.T) {
	f := newFleet(t)
	var topics sdk.Topics
	for _, filter := range []string{
		"$share/" + officeName + "/" + topics.FleetFilter(sdk.KindEvents),
		"$share/" + officeName + "/" + topics.FleetFilter(sdk.KindTelemetry),
		"$share/anything/" + topics.FleetFilter(sdk.KindEvents),
	} {
		p := f.connectPeer(t, f.b.ClientFiles(truckB), "", filter)
		if err := p.subscribeErr(); err == nil || !strings.Contains(err.Error(), "reason code 135") {
			t.Errorf("%s as truck-b: %v, want refused with reason code 135", filter, err)
		}
		p.close()
	}
	o := newOrder(truckA, "proof")
	f.accepted(t, o)
	f.atDispatch(t, hashOf(t, o))
}
