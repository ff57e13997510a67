package main

// The attack suite (issue 10): each attack tried as an attacker would, against real Mosquitto configured as
// `waybill broker config` configures it (sdktest.StartMosquitto) and, where the attack targets the truck, the
// real waybill-agent binary. Every test asserts that the attack is refused AND that the legitimate path
// works in the same setup (so that no test passes by everything being broken). Each test shares one broker,
// one dispatch office and one agent across its subtests.
//
//	attack                                                      test
//	1  forged order (key not certified by the fleet CA)         TestAttackForgedOrder
//	2  altered order (one byte changed in transit)              TestAttackAlteredOrder
//	3  replayed order (again later, after a newer revision)     TestAttackReplayedOrder
//	4  misaddressed order (signed for truck-b, sent to truck-a) TestAttackMisaddressedOrder
//	5  expired order                                            TestAttackExpiredOrder
//	6  order signed by a truck certificate                      TestAttackTruckSignedOrder
//	7  cross-truck read and write                               TestAttackCrossTruck
//	8  client-id takeover                                       TestAttackClientIDTakeover
//	9  TLS: foreign CA, expired, no client certificate, TLS 1.1 TestIsolation/mosquitto/refused_certificates
//	                                                            (sdk/sdktest/isolation_test.go: real Mosquitto,
//	                                                            each refused at connect, the good certificate
//	                                                            still connects; no agent is involved. No and
//	                                                            expired certificates with mosquitto_pub too:
//	                                                            .../mosquitto_pub_and_mosquitto_sub)
//	10 local HTTP hook: CSRF, DNS rebinding, guarded /healthz   TestAttackHTTPHook
//	   and /metrics
//	11 order created a year ahead                               TestAttackOrderFromFuture
//	   cancel for an unknown order blocking a later order       TestAttackCancelOfUnknownOrder
//	   event reason with invalid UTF-8                          TestAttackInvalidUTF8Reason
//	12 a revoked truck keeps its live connection                TestAttackRevokedTruck (attack_revoke_test.go)
//	13 a running truck accepts orders of a revoked dispatch key TestAttackRevokedDispatchKey
//	14 a truck certificate joins dispatch's share group         TestAttackShareGroupJoin
//	15 the local HTTP listener exhausted                        TestListenerFlood (agent/listener_test.go)
//
// How a refusal is observed: the agent's verifier counts every refused order by reason on /metrics
// (waybill_orders_rejected_total{reason=...}); a test waits for its reason to count one more, so it knows the
// attack reached the truck and was refused for the right reason, not merely lost. Where the truck accepts a
// message and ignores it (a replay after a restart), a legitimate order published after it on the same
// connection is the barrier: MQTT keeps the order of one publisher's messages, so once the later order is on
// the driver's page the replay was handled.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
)

const (
	truckA    = "truck-a" // the truck under attack: a running agent
	truckB    = "truck-b" // another truck of the fleet: the attacker in the cross-truck attacks
	relayName = "relay"   // a second dispatch identity: its connection carries what a test signs or replays
)

// reasonNotAuthorized is MQTT v5's PUBACK 135: the broker's ACL refused the publish.
const reasonNotAuthorized = 135

// fleet is one attack test's setup: the rig (Mosquitto, dispatch's office committing to its archive), truck-a's
// running agent, and the relay: a dispatch identity's connection with its key, which publishes the orders the
// test signs (a genuine dispatch signature) or forges.
type fleet struct {
	*rig
	a      *agentProc
	relay  *peer
	signer *sdk.Signer // relay's key
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	// Every identity is issued before the broker starts: the broker knows them all from its configuration, and
	// nothing is told to it at run time.
	r := newRig(t, sdktest.Options{PKI: sdktest.NewPKI(t, truckA, truckB), Dispatch: []string{relayName}})
	r.startOffice(officeOptions{})
	a := r.newAgent(truckA, agentOptions{})
	a.start(false)
	a.waitHealth(20*time.Second, "a connection", func(h health) bool { return h.Connected })
	relay := r.b.ClientFiles(relayName)
	return &fleet{rig: r, a: a, relay: r.connectPeer(t, relay, ""), signer: relay.Signer(t)}
}

// newOrder is an order valid now and for an hour.
func newOrder(truck, id string) sdk.Order {
	now := time.Now().UTC()
	return sdk.Order{ID: id, Revision: 1, Truck: truck, Created: now, Expires: now.Add(time.Hour),
		Recipient: "R. " + id, Address: "1 Quay St", Lat: 52.5, Lon: 13.4, RadiusM: 50}
}

func orderTopic(t *testing.T, truck, id string) string {
	t.Helper()
	topic, err := sdk.Topics{}.Order(truck, id)
	if err != nil {
		t.Fatal(err)
	}
	return topic
}

func signOrder(t *testing.T, s *sdk.Signer, o sdk.Order) []byte {
	t.Helper()
	p, err := s.SignOrder(&o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func hashOf(t *testing.T, o sdk.Order) sdk.OrderHash {
	t.Helper()
	h, err := o.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// refused publishes payload on topic through the relay and waits until the agent's verifier has refused one
// more order for reason.
func (f *fleet) refused(t *testing.T, topic string, payload []byte, reason sdk.Reason) {
	t.Helper()
	series := rejectedSeries(reason)
	before := f.a.metric(t, series)
	f.relay.mustPublish(t, topic, payload)
	waitFor(t, 10*time.Second, "the agent refusing it ("+series+")", func() bool { return f.a.metric(t, series) > before },
		func() string {
			m, err := f.a.metrics()
			return fmt.Sprintf("metrics %v (%v)\n%s", m, err, f.a.logs.Tail(20))
		})
}

// accepted publishes the relay's genuine signature of o on o's topic and waits until the driver's page shows
// that revision; it returns the page's view.
func (f *fleet) accepted(t *testing.T, o sdk.Order) orderView {
	t.Helper()
	f.relay.mustPublish(t, orderTopic(t, o.Truck, o.ID), signOrder(t, f.signer, o))
	return f.a.waitOrder(t, o.ID, o.Revision)
}

// atDispatch waits until dispatch's archive holds truck-a's confirmation ("received" event) of the order
// revision whose body hashes to h, and returns truck-a's events there.
func (f *fleet) atDispatch(t *testing.T, h sdk.OrderHash) []sdk.Event {
	t.Helper()
	return f.waitDispatchEvent(t, "the truck's confirmation of the order", func(e sdk.Event) bool {
		return e.Kind == sdk.EventReceived && e.OrderHash == h
	})
}

// waitDispatchEvent waits until dispatch's archive holds an event of truck-a that match accepts, and returns
// truck-a's events there.
func (f *fleet) waitDispatchEvent(t *testing.T, what string, match func(sdk.Event) bool) []sdk.Event {
	t.Helper()
	var evs []sdk.Event
	waitFor(t, 20*time.Second, what+" at dispatch", func() bool {
		evs = f.dispatchEvents(t, truckA)
		return slices.ContainsFunc(evs, match)
	}, func() string { return fmt.Sprintf("archive: %s; %s", f.archiveSummary(), f.handled.summary()) })
	return evs
}

// dispatchEvents are the events of truck in dispatch's archive now.
func (f *fleet) dispatchEvents(t *testing.T, truck string) []sdk.Event {
	t.Helper()
	evs, err := f.office.Archive.Events(truck)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]sdk.Event, len(evs))
	for i, e := range evs {
		out[i] = e.Event
	}
	return out
}

// neverAtDispatch fails when dispatch's archive holds an event of truck-a answering the order body hashed
// to h: the truck confirmed an order it must have refused.
func neverAtDispatch(t *testing.T, evs []sdk.Event, h sdk.OrderHash, what string) {
	t.Helper()
	for _, e := range evs {
		if e.OrderHash == h {
			t.Errorf("dispatch holds the truck's %s event for the %s: %+v", e.Kind, what, e)
		}
	}
}

// notOnPage fails when the driver's page lists order id.
func (f *fleet) notOnPage(t *testing.T, id, what string) {
	t.Helper()
	if v, ok := f.a.order(t, id); ok {
		t.Errorf("the driver's page shows the %s: %+v", what, v)
	}
}

// TestAttackForgedOrder: an order signed by a key the fleet CA never certified (a certificate of another CA
// naming the relay, carried in the envelope; or no certificate at all) is refused by the truck (untrusted
// certificate, unknown signer), is not on the driver's page and is never confirmed to dispatch; the same
// order signed by the relay's genuine key is accepted. A forged copy of an order in dispatch's outbox, sent
// before dispatch sends it, does not take its place: the driver's page shows dispatch's order and the outbox
// sees it received with its own hash.
func TestAttackForgedOrder(t *testing.T) {
	f := newFleet(t)
	foreign, err := pki.Init(pki.Config{Dir: filepath.Join(t.TempDir(), "evil")}, pki.CAOptions{Fleet: "evil"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := foreign.Issue(pki.RoleDispatch, relayName, pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	forger := sdktest.Client{CertFile: foreign.CertPath(relayName), KeyFile: foreign.KeyPath(relayName)}.Signer(t)
	var forgedHashes []sdk.OrderHash
	var genuine sdk.OrderHash
	for _, c := range []struct {
		name   string
		reason sdk.Reason
		sign   func(o sdk.Order) []byte
	}{
		{"foreign CA certificate carried", sdk.ReasonUntrustedCert, func(o sdk.Order) []byte { return signOrder(t, forger, o) }},
		{"no certificate", sdk.ReasonUnknownSigner, func(o sdk.Order) []byte {
			body, err := o.MarshalBody()
			if err != nil {
				t.Fatal(err)
			}
			p, err := forger.Sign(sdk.MsgOrder, o.MessageID(), body, false)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := "forged-" + strings.ReplaceAll(c.name, " ", "-")
			forged := newOrder(truckA, id)
			forged.Address = "666 Diversion Rd"
			f.refused(t, orderTopic(t, truckA, id), c.sign(forged), c.reason)
			f.notOnPage(t, id, "forged order")
			forgedHashes = append(forgedHashes, hashOf(t, forged))
			legit := newOrder(truckA, id)
			if v := f.accepted(t, legit); v.Address != legit.Address || v.State != "active" {
				t.Errorf("the genuine order after the forged one: %+v", v)
			}
			genuine = hashOf(t, legit)
		})
	}
	t.Run("copy of an order in dispatch's outbox", func(t *testing.T) {
		// The forger races dispatch with its own revision 1 of an order dispatch is about to send.
		const id = "forged-outbox"
		forged := newOrder(truckA, id)
		forged.Address = "666 Diversion Rd"
		f.refused(t, orderTopic(t, truckA, id), signOrder(t, forger, forged), sdk.ReasonUntrustedCert)
		forgedHashes = append(forgedHashes, hashOf(t, forged))
		ctx := context.Background()
		e, err := f.office.Outbox.Create(ctx, newOrder(truckA, id))
		if err != nil {
			t.Fatal(err)
		}
		if v := f.a.waitOrder(t, id, 1); v.Address != e.Order.Address {
			t.Errorf("the driver's page shows %+v, want dispatch's order at %q", v, e.Order.Address)
		}
		waitFor(t, 20*time.Second, "dispatch's outbox to see the order received", func() bool {
			e, err = f.office.Outbox.Get(ctx, truckA, id)
			return err == nil && e.State == dispatch.StateReceived
		}, func() string { return fmt.Sprintf("outbox entry %+v (%v)", e, err) })
		if e.Confirmed != 1 || e.Note != "" {
			t.Errorf("dispatch's outbox entry: confirmed %d, note %q", e.Confirmed, e.Note)
		}
		genuine = e.Hash
	})
	evs := f.atDispatch(t, genuine) // the last genuine order confirmed: the forged ones before it never will be
	for _, h := range forgedHashes {
		neverAtDispatch(t, evs, h, "forged order")
	}
}

// TestAttackAlteredOrder: a genuine signed order changed in transit is refused: one byte of the address
// changed (the package redirected: bad signature), and every single byte of the message flipped in turn
// (each refused for some reason, none accepted); nothing reaches the driver's page or dispatch; the order as
// signed is then accepted.
func TestAttackAlteredOrder(t *testing.T) {
	f := newFleet(t)
	o := newOrder(truckA, "altered-1")
	signed := signOrder(t, f.signer, o)
	topic := orderTopic(t, truckA, o.ID)
	t.Run("address changed", func(t *testing.T) {
		i := bytes.Index(signed, []byte(o.Address))
		if i < 0 {
			t.Fatalf("the address is not in the signed message")
		}
		altered := bytes.Clone(signed)
		altered[i] = '9' // "9 Quay St": another door
		f.refused(t, topic, altered, sdk.ReasonBadSignature)
		f.notOnPage(t, o.ID, "altered order")
	})
	t.Run("every byte flipped", func(t *testing.T) {
		before := f.rejectedTotal(t)
		for i := range signed {
			altered := bytes.Clone(signed)
			altered[i] ^= 0x01
			f.relay.mustPublish(t, topic, altered)
		}
		waitFor(t, 30*time.Second, fmt.Sprintf("%d refusals", len(signed)), func() bool {
			return f.rejectedTotal(t)-before >= float64(len(signed))
		}, func() string { return fmt.Sprintf("%v refused", f.rejectedTotal(t)-before) })
		if n := f.rejectedTotal(t) - before; n != float64(len(signed)) {
			t.Errorf("%v refusals for %d altered messages", n, len(signed))
		}
		f.notOnPage(t, o.ID, "altered order")
	})
	f.relay.mustPublish(t, topic, signed) // as signed
	if v := f.a.waitOrder(t, o.ID, 1); v.Address != o.Address || v.State != "active" {
		t.Errorf("the order as signed: %+v", v)
	}
	f.atDispatch(t, hashOf(t, o))
}

// rejectedTotal is the number of orders the agent's verifier refused, for any reason (duplicates, which are
// acknowledged and not applied twice, are not refusals).
func (f *fleet) rejectedTotal(t *testing.T) float64 {
	t.Helper()
	m, err := f.a.metrics()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, r := range sdk.Reasons() {
		if r != sdk.ReasonDuplicate {
			n += m[rejectedSeries(r)]
		}
	}
	return n
}

// barrier publishes a genuine new order after whatever the relay published before and waits until it is on
// the driver's page: the truck has handled everything before it (one publisher's messages keep their order).
func (f *fleet) barrier(t *testing.T, id string) {
	t.Helper()
	f.accepted(t, newOrder(truckA, id))
}

// TestAttackReplayedOrder: genuine signed envelopes captured on the way and published again. Revision 1 of
// an order replayed after revision 2 does not bring the old address back, and a delivered order's envelope
// replayed does not reopen it: at once (the verifier refuses them as duplicates), and after the agent
// restarted with an empty replay memory (the order book refuses the older revision and applies the same
// revision only once). Nothing is applied (orders applied counts only the genuine barrier orders sent
// since), and dispatch holds the truck's confirmation of revision 2 and the delivery.
func TestAttackReplayedOrder(t *testing.T) {
	f := newFleet(t)
	rev1 := newOrder(truckA, "replayed-1")
	captured := signOrder(t, f.signer, rev1)
	topic := orderTopic(t, truckA, rev1.ID)
	f.relay.mustPublish(t, topic, captured)
	f.a.waitOrder(t, rev1.ID, 1)
	rev2 := rev1
	rev2.Revision, rev2.Address = 2, "2 New Wharf"
	f.accepted(t, rev2)
	done := newOrder(truckA, "replayed-done")
	capturedDone := signOrder(t, f.signer, done)
	doneTopic := orderTopic(t, truckA, done.ID)
	f.relay.mustPublish(t, doneTopic, capturedDone)
	f.a.waitOrder(t, done.ID, 1)
	f.a.act(done.ID, "delivered", "")

	unchanged := func(t *testing.T) {
		t.Helper()
		if v, _ := f.a.order(t, rev1.ID); v.Revision != 2 || v.Address != rev2.Address || v.State != "active" {
			t.Errorf("after the replay of revision 1 the page shows %+v, want revision 2 at %q", v, rev2.Address)
		}
		if v, _ := f.a.order(t, done.ID); v.State != "delivered" || v.Revision != 1 {
			t.Errorf("after the replay of the delivered order the page shows %+v", v)
		}
	}
	t.Run("at once", func(t *testing.T) {
		applied := f.a.metric(t, "waybill_orders_applied_total")
		f.refused(t, topic, captured, sdk.ReasonDuplicate)
		f.refused(t, doneTopic, capturedDone, sdk.ReasonDuplicate)
		f.barrier(t, "replayed-barrier-1")
		unchanged(t)
		if n := f.a.metric(t, "waybill_orders_applied_total") - applied; n != 1 {
			t.Errorf("%v orders applied, want 1 (the barrier)", n)
		}
	})
	f.a.stop()
	f.a.start(false)
	f.a.waitHealth(20*time.Second, "a connection", func(h health) bool { return h.Connected })
	t.Run("after the agent restarted", func(t *testing.T) {
		f.relay.mustPublish(t, topic, captured)
		f.relay.mustPublish(t, doneTopic, capturedDone)
		f.barrier(t, "replayed-barrier-2")
		unchanged(t)
		if n := f.a.metric(t, "waybill_orders_applied_total"); n != 1 {
			t.Errorf("%v orders applied since the restart, want 1 (the barrier)", n)
		}
	})
	f.atDispatch(t, hashOf(t, rev2))
	f.waitDispatchEvent(t, "the delivery", func(e sdk.Event) bool { return e.Kind == sdk.EventDelivered && e.OrderID == done.ID })
}

// TestAttackMisaddressedOrder: orders genuinely signed by dispatch, published by a dispatch identity (only
// dispatch may write order topics) where they do not belong: an order for truck-b on truck-a's topic, and an
// order of truck-a on the topic of another order id. Both are refused as misaddressed and are not on truck-a's
// page; the order on its own topic is accepted.
func TestAttackMisaddressedOrder(t *testing.T) {
	f := newFleet(t)
	t.Run("for another truck", func(t *testing.T) {
		o := newOrder(truckB, "misaddressed-1")
		f.refused(t, orderTopic(t, truckA, o.ID), signOrder(t, f.signer, o), sdk.ReasonMisaddressed)
		f.notOnPage(t, o.ID, "order for truck-b")
	})
	t.Run("for another order id", func(t *testing.T) {
		o := newOrder(truckA, "misaddressed-2")
		f.refused(t, orderTopic(t, truckA, "misaddressed-3"), signOrder(t, f.signer, o), sdk.ReasonMisaddressed)
		f.notOnPage(t, "misaddressed-2", "order published under another id")
		f.notOnPage(t, "misaddressed-3", "order published under another id")
	})
	legit := newOrder(truckA, "misaddressed-2")
	f.accepted(t, legit)
	f.atDispatch(t, hashOf(t, legit))
}

// signerAt is a signer for cl whose clock is off by skew (an envelope signed in the past or future).
func signerAt(t *testing.T, cl sdktest.Client, skew time.Duration) *sdk.Signer {
	t.Helper()
	pair, err := pki.LoadKeyPair(cl.CertFile, cl.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sdk.NewSignerTLS(pair, sdk.SignerConfig{Clock: func() time.Time { return time.Now().Add(skew) }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAttackExpiredOrder: genuine orders past their time are refused as expired: one whose Expires has
// passed, and one signed eight days ago (a stale capture; envelopes older than seven days are refused) though
// its Expires is ahead. Neither is on the page; the same order, current, is accepted.
func TestAttackExpiredOrder(t *testing.T) {
	f := newFleet(t)
	t.Run("past its expiry", func(t *testing.T) {
		o := newOrder(truckA, "expired-1")
		o.Created, o.Expires = o.Created.Add(-2*time.Hour), o.Created.Add(-time.Hour)
		f.refused(t, orderTopic(t, truckA, o.ID), signOrder(t, f.signer, o), sdk.ReasonExpired)
		f.notOnPage(t, o.ID, "expired order")
	})
	t.Run("signed eight days ago", func(t *testing.T) {
		o := newOrder(truckA, "expired-2")
		o.Created = o.Created.Add(-8 * 24 * time.Hour)
		old := signerAt(t, f.b.ClientFiles(relayName), -8*24*time.Hour)
		f.refused(t, orderTopic(t, truckA, o.ID), signOrder(t, old, o), sdk.ReasonExpired)
		f.notOnPage(t, o.ID, "order signed eight days ago")
	})
	legit := newOrder(truckA, "expired-1")
	f.accepted(t, legit)
	f.atDispatch(t, hashOf(t, legit))
}

// TestAttackTruckSignedOrder: a truck posing as dispatch. Truck-b cannot even publish an order, to truck-a or
// to itself: the broker answers PUBACK 135 and truck-a sees nothing. An order signed by a truck's key (truck-b's,
// or truck-a's own) that reaches truck-a anyway (relayed by a dispatch identity) is refused as the wrong role.
// The same order signed by dispatch is accepted.
func TestAttackTruckSignedOrder(t *testing.T) {
	f := newFleet(t)
	b := f.b.ClientFiles(truckB)
	bSigner := b.Signer(t)
	t.Run("broker refuses the publish", func(t *testing.T) {
		tb := f.connectPeer(t, b, "")
		o := newOrder(truckA, "truck-signed-1")
		for _, topic := range []string{orderTopic(t, truckA, o.ID), orderTopic(t, truckB, o.ID)} {
			var pe *transport.PublishError
			if err := tb.publish(topic, signOrder(t, bSigner, o)); !errors.As(err, &pe) || pe.ReasonCode != reasonNotAuthorized {
				t.Errorf("truck-b publishing an order on %s: %v, want PUBACK %d", topic, err, reasonNotAuthorized)
			}
		}
		f.barrier(t, "truck-signed-barrier")
		f.notOnPage(t, o.ID, "order published by truck-b")
	})
	for _, signer := range []string{truckB, truckA} {
		t.Run("relayed, signed by "+signer, func(t *testing.T) {
			o := newOrder(truckA, "truck-signed-by-"+signer)
			f.refused(t, orderTopic(t, truckA, o.ID), signOrder(t, f.b.ClientFiles(signer).Signer(t), o), sdk.ReasonWrongRole)
			f.notOnPage(t, o.ID, "order signed by a truck")
			legit := newOrder(truckA, o.ID)
			f.accepted(t, legit)
			f.atDispatch(t, hashOf(t, legit))
		})
	}
}

// signEvent is a delivery event for order id signed by s (a truck's key), as a truck's uploader sends it.
func signEvent(t *testing.T, s *sdk.Signer, id string) []byte {
	t.Helper()
	var epoch sdk.Epoch
	rand.Read(epoch[:])
	p, err := s.SignEvent(&sdk.Event{Kind: sdk.EventDelivered, Epoch: epoch, RecordSeq: 1, Time: time.Now().UTC(),
		OrderID: id, Revision: 1, Via: sdk.ViaHTTP})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAttackCrossTruck: truck-b against truck-a.
//
// Read: truck-b subscribes to truck-a's orders and receipts (and to every truck's orders); the broker refuses
// the subscriptions or grants them and delivers nothing of truck-a's, while truck-a's agent gets its order and
// its receipts and truck-b gets its own order on the same connection.
//
// Write: truck-b publishes a delivery event it signed on truck-a's telemetry, events and status topics: PUBACK
// 135 each, while the same event on its own events topic is accepted and reaches dispatch's archive. Had it
// got onto truck-a's topic anyway, dispatch refuses it (wrong sender: the signer is not the topic's truck) and
// commits nothing for truck-a, while truck-a's genuine delivery reaches dispatch.
func TestAttackCrossTruck(t *testing.T) {
	f := newFleet(t)
	var topics sdk.Topics
	b := f.b.ClientFiles(truckB)
	aOrders, _ := topics.TruckOrdersFilter(truckA)
	bOrders, _ := topics.TruckOrdersFilter(truckB)
	aReceipts, _ := topics.Receipts(truckA)
	t.Run("read", func(t *testing.T) {
		tb := f.connectPeer(t, b, "", aOrders, aReceipts, topics.FleetFilter(sdk.KindOrders),
			topics.FleetFilter(sdk.KindTelemetry), topics.FleetFilter(sdk.KindEvents), "fleet/trucks/#", bOrders)
		t.Logf("truck-b's subscriptions: %v", tb.subscribeErr())
		receipted := f.a.metric(t, "waybill_upload_receipts_total")
		o := newOrder(truckA, "cross-read-1")
		f.accepted(t, o)
		f.atDispatch(t, hashOf(t, o))
		waitFor(t, 20*time.Second, "a receipt from dispatch at truck-a", func() bool {
			return f.a.metric(t, "waybill_upload_receipts_total") > receipted
		}, func() string { return f.a.logs.Tail(20) })
		ob := newOrder(truckB, "cross-read-2")
		f.relay.mustPublish(t, orderTopic(t, truckB, ob.ID), signOrder(t, f.signer, ob))
		want := orderTopic(t, truckB, ob.ID)
		waitFor(t, 10*time.Second, "truck-b's own order", func() bool {
			for _, m := range tb.received() {
				if m.Topic == want {
					return true
				}
			}
			return false
		}, func() string { return fmt.Sprintf("truck-b received %d messages", len(tb.received())) })
		for _, m := range tb.received() {
			if m.Topic != want {
				t.Errorf("truck-b received %s (%d bytes), which it may not read", m.Topic, len(m.Payload))
			}
		}
	})
	t.Run("write", func(t *testing.T) {
		tb := f.connectPeer(t, b, "")
		forged := signEvent(t, b.Signer(t), "cross-write-1")
		for _, kind := range []func(string) (string, error){topics.Telemetry, topics.Events, topics.Status} {
			topic, _ := kind(truckA)
			var pe *transport.PublishError
			if err := tb.publish(topic, forged); !errors.As(err, &pe) || pe.ReasonCode != reasonNotAuthorized {
				t.Errorf("truck-b publishing on %s: %v, want PUBACK %d", topic, err, reasonNotAuthorized)
			}
		}
		own, _ := topics.Events(truckB)
		tb.mustPublish(t, own, forged)
		waitFor(t, 10*time.Second, "truck-b's own event at dispatch", func() bool {
			return len(f.dispatchEvents(t, truckB)) == 1
		}, func() string { return f.archiveSummary() })
		// Dispatch itself, handed the message as if the broker had delivered it on truck-a's topic.
		aEvents, _ := topics.Events(truckA)
		if err := f.office.Client.Consumer().HandleMessage(context.Background(), transport.Message{Topic: aEvents,
			Payload: signEvent(t, b.Signer(t), "cross-write-2"), QoS: 1}); err != nil {
			t.Fatal(err)
		}
		if n := f.office.Client.Consumer().Stats().Rejected[sdk.ReasonWrongSender]; n != 1 {
			t.Errorf("dispatch refused %d messages as wrong sender, want 1", n)
		}
		o := newOrder(truckA, "cross-write-3")
		f.accepted(t, o)
		if _, err := f.a.tryAct(o.ID, "delivered", ""); err != nil {
			t.Fatal(err)
		}
		evs := f.waitDispatchEvent(t, "truck-a's delivery", func(e sdk.Event) bool {
			return e.Kind == sdk.EventDelivered && e.OrderID == o.ID
		})
		for _, e := range evs {
			if strings.HasPrefix(e.OrderID, "cross-write-") && e.OrderID != o.ID {
				t.Errorf("dispatch holds truck-b's event as truck-a's: %+v", e)
			}
		}
	})
}

// TestAttackClientIDTakeover: truck-b connects with client id "truck-a" (and subscribes to truck-a's orders).
// Truck-a's agent is not disconnected (its connection count stays at one), keeps getting its orders, and the
// impostor receives none of them; the impostor's publish on truck-a's telemetry is refused (it is still
// truck-b to the broker).
func TestAttackClientIDTakeover(t *testing.T) {
	f := newFleet(t)
	aOrders, _ := sdk.Topics{}.TruckOrdersFilter(truckA)
	imp := f.connectPeer(t, f.b.ClientFiles(truckB), truckA, aOrders)
	t.Logf("the impostor's subscription: %v", imp.subscribeErr())
	o := newOrder(truckA, "takeover-1")
	f.accepted(t, o)
	f.atDispatch(t, hashOf(t, o))
	tel, _ := sdk.Topics{}.Telemetry(truckA)
	var pe *transport.PublishError
	if err := imp.publish(tel, []byte("x")); !errors.As(err, &pe) || pe.ReasonCode != reasonNotAuthorized {
		t.Errorf("the impostor publishing on %s: %v, want PUBACK %d", tel, err, reasonNotAuthorized)
	}
	if n := f.a.metric(t, "waybill_link_connects_total"); n != 1 {
		t.Errorf("truck-a's agent connected %v times, want 1: the impostor took its session over\n%s", n, f.a.logs.Tail(30))
	}
	if h, err := f.a.healthz(); err != nil || !h.Connected {
		t.Errorf("truck-a's agent: %v (%v)", h, err)
	}
	if got := imp.received(); len(got) != 0 {
		t.Errorf("the impostor received %d messages of truck-a's, the first on %s", len(got), got[0].Topic)
	}
}

// answer is one HTTP answer of the agent: status and the error code of a JSON error body.
type answer struct {
	status int
	code   string
}

// call sends a request to the agent's listener (see agentProc.request) and reads the answer. A stream
// (/events) is read only up to its headers.
func call(t *testing.T, a *agentProc, method, path, body string, header ...string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	resp, err := a.request(method, path, rd, header...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var eb struct {
		Code string `json:"code"`
	}
	if resp.StatusCode >= 400 {
		raw, _ := io.ReadAll(resp.Body)
		json.Unmarshal(raw, &eb)
	}
	return answer{resp.StatusCode, eb.Code}
}

// TestAttackHTTPHook: the agent's local listener against a web page the cab's browser visits, and against
// anyone on the cab's Wi-Fi.
//
// CSRF: a cross-origin form POST, a JSON POST with a foreign Origin, and one marked cross-site by the browser
// (Sec-Fetch-Site), to confirm a delivery, are refused (403 cross_origin) without and with the token's cookie;
// the order stays active; the page's own same-origin request then confirms it.
//
// DNS rebinding: a foreign Host on the page, the API, the event stream, /healthz and /metrics is refused (403
// host_not_allowed) by an agent without a token; loopback names are answered.
//
// Token: with http.token set, the page, the API, /healthz and /metrics refuse a missing or wrong token (401),
// also under a foreign Host, and answer the right one.
func TestAttackHTTPHook(t *testing.T) {
	f := newFleet(t)
	const token = "cab-s3cret-token"
	tk := f.newAgent(truckB, agentOptions{Token: token})
	tk.start(false)
	tk.waitHealth(20*time.Second, "a connection", func(h health) bool { return h.Connected })
	o := newOrder(truckA, "hook-1")
	f.accepted(t, o)
	ob := newOrder(truckB, "hook-2")
	f.relay.mustPublish(t, orderTopic(t, truckB, ob.ID), signOrder(t, f.signer, ob))
	tk.waitOrder(t, ob.ID, 1)
	const evil = "http://evil.example"

	t.Run("CSRF", func(t *testing.T) {
		for _, c := range []struct {
			name   string
			a      *agentProc
			id     string
			body   string
			header []string
		}{
			{"form POST", f.a, o.ID, "reason=x", []string{"Origin", evil, "Content-Type", "application/x-www-form-urlencoded"}},
			{"text/plain POST", f.a, o.ID, `{}`, []string{"Origin", evil, "Content-Type", "text/plain"}},
			{"JSON POST, foreign Origin", f.a, o.ID, `{}`, []string{"Origin", evil, "Content-Type", "application/json"}},
			{"cross-site", f.a, o.ID, `{}`, []string{"Sec-Fetch-Site", "cross-site", "Content-Type", "application/json"}},
			{"form POST with the token's cookie", tk, ob.ID, "reason=x", []string{"Authorization", "",
				"Cookie", "waybill_token=" + token, "Origin", evil, "Content-Type", "application/x-www-form-urlencoded"}},
			{"cross-site with the token's cookie", tk, ob.ID, `{}`, []string{"Authorization", "",
				"Cookie", "waybill_token=" + token, "Sec-Fetch-Site", "cross-site", "Content-Type", "application/json"}},
		} {
			if got := call(t, c.a, "POST", "/api/orders/"+c.id+"/delivered", c.body, c.header...); got != (answer{403, "cross_origin"}) {
				t.Errorf("%s: %+v, want 403 cross_origin", c.name, got)
			}
		}
		for _, c := range []struct {
			a  *agentProc
			id string
		}{{f.a, o.ID}, {tk, ob.ID}} {
			if v, _ := c.a.order(t, c.id); v.State != "active" {
				t.Fatalf("%s's order after the refused requests: %+v", c.a.name, v)
			}
			// The page's own request (same origin) confirms the delivery.
			if got := call(t, c.a, "POST", "/api/orders/"+c.id+"/delivered", `{"via":"screen"}`, "Origin", "http://"+c.a.http,
				"Sec-Fetch-Site", "same-origin", "Content-Type", "application/json"); got.status != 200 {
				t.Errorf("%s: the page's own request: %+v", c.a.name, got)
			}
			if v, _ := c.a.order(t, c.id); v.State != "delivered" {
				t.Errorf("%s's order after the page's request: %+v", c.a.name, v)
			}
		}
	})

	_, port, _ := strings.Cut(f.a.http, ":")
	// served: the request got its answer; /healthz answers 503 (with its body) while the truck is unhealthy
	// (no fix here), which is an answer too, unlike 401, 403 or 421.
	served := func(path string, a answer) bool {
		return a.status == 200 || (path == "/healthz" && a.status == 503)
	}
	paths := func(id string) []string {
		return []string{"/", "/api/orders", "/api/orders/" + id, "/api/status", "/events", "/healthz", "/metrics"}
	}
	t.Run("DNS rebinding", func(t *testing.T) {
		for _, p := range paths(o.ID) {
			for _, host := range []string{"evil.example:" + port, "evil.example", "192.168.1.5:" + port} {
				if got := call(t, f.a, "GET", p, "", "Host", host); got != (answer{403, "host_not_allowed"}) {
					t.Errorf("GET %s with Host %s: %+v, want 403 host_not_allowed", p, host, got)
				}
			}
			for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port} {
				if got := call(t, f.a, "GET", p, "", "Host", host); !served(p, got) {
					t.Errorf("GET %s with Host %s: %+v, want 200", p, host, got)
				}
			}
		}
		if got := call(t, f.a, "POST", "/api/orders/"+o.ID+"/problem", `{"reason":"x"}`, "Host", "evil.example:"+port,
			"Content-Type", "application/json"); got != (answer{403, "host_not_allowed"}) {
			t.Errorf("POST with a foreign Host: %+v", got)
		}
	})

	t.Run("token", func(t *testing.T) {
		_, tport, _ := strings.Cut(tk.http, ":")
		for _, p := range paths(ob.ID) {
			for _, c := range []struct {
				name   string
				header []string
			}{
				{"no token", []string{"Authorization", ""}},
				{"wrong token", []string{"Authorization", "Bearer wrong"}},
				{"wrong cookie", []string{"Authorization", "", "Cookie", "waybill_token=wrong"}},
				{"no token, foreign Host", []string{"Authorization", "", "Host", "evil.example:" + tport}},
			} {
				if got := call(t, tk, "GET", p, "", c.header...); got != (answer{401, "unauthorized"}) {
					t.Errorf("GET %s, %s: %+v, want 401 unauthorized", p, c.name, got)
				}
			}
			if got := call(t, tk, "GET", p, ""); !served(p, got) {
				t.Errorf("GET %s with the token: %+v", p, got)
			}
			if got := call(t, tk, "GET", p, "", "Authorization", "", "Cookie", "waybill_token="+token); !served(p, got) {
				t.Errorf("GET %s with the token's cookie: %+v", p, got)
			}
		}
	})
	// The truck's confirmations reached dispatch: the hook's delivery is a real one.
	waitFor(t, 20*time.Second, "both deliveries at dispatch", func() bool {
		n := 0
		for truck, id := range map[string]string{truckA: o.ID, truckB: ob.ID} {
			for _, e := range f.dispatchEvents(t, truck) {
				if e.Kind == sdk.EventDelivered && e.OrderID == id {
					n++
				}
			}
		}
		return n == 2
	}, func() string { return f.archiveSummary() })
}

// TestAttackOrderFromFuture: a genuine order whose Created is a year ahead (a mis-set or forged dispatch
// clock dating it so that it outranks everything) is refused as from the future and is not on the page; the
// same order created now is accepted.
func TestAttackOrderFromFuture(t *testing.T) {
	f := newFleet(t)
	o := newOrder(truckA, "future-1")
	o.Created, o.Expires = o.Created.AddDate(1, 0, 0), o.Expires.AddDate(1, 0, 0)
	f.refused(t, orderTopic(t, truckA, o.ID), signOrder(t, f.signer, o), sdk.ReasonFromFuture)
	f.notOnPage(t, o.ID, "order created a year ahead")
	legit := newOrder(truckA, o.ID)
	f.accepted(t, legit)
	evs := f.atDispatch(t, hashOf(t, legit))
	neverAtDispatch(t, evs, hashOf(t, o), "order created a year ahead")
}

// TestAttackCancelOfUnknownOrder: a genuine cancellation (revision 2) of an order truck-a never had is not
// shown to the driver and cannot be acted on; it is confirmed to dispatch (which stops sending it); the late
// revision 1 stays refused; and a later revision 3 of that id is a new, active order the driver delivers.
func TestAttackCancelOfUnknownOrder(t *testing.T) {
	f := newFleet(t)
	o := newOrder(truckA, "ghost-1")
	cancel := o
	cancel.Revision, cancel.Status = 2, sdk.OrderCancelled
	applied := f.a.metric(t, "waybill_orders_applied_total")
	f.relay.mustPublish(t, orderTopic(t, truckA, o.ID), signOrder(t, f.signer, cancel))
	waitFor(t, 10*time.Second, "the cancellation applied", func() bool {
		return f.a.metric(t, "waybill_orders_applied_total") > applied
	}, func() string { return f.a.logs.Tail(20) })
	f.notOnPage(t, o.ID, "cancellation of an order the truck never had")
	if got := call(t, f.a, "POST", "/api/orders/"+o.ID+"/delivered", "{}", "Content-Type", "application/json"); got != (answer{404, "unknown_order"}) {
		t.Errorf("delivering the unseen cancelled order: %+v, want 404 unknown_order", got)
	}
	f.atDispatch(t, hashOf(t, cancel))
	f.relay.mustPublish(t, orderTopic(t, truckA, o.ID), signOrder(t, f.signer, o)) // revision 1, late
	f.barrier(t, "ghost-barrier")
	f.notOnPage(t, o.ID, "late revision 1 after the cancellation")
	later := o
	later.Revision, later.Address = 3, "3 Later Lane"
	if v := f.accepted(t, later); v.State != "active" || v.Address != later.Address {
		t.Errorf("revision 3 after the cancellation: %+v", v)
	}
	f.a.act(o.ID, "delivered", "")
	if v, _ := f.a.order(t, o.ID); v.State != "delivered" {
		t.Errorf("revision 3 after the delivery: %+v", v)
	}
	f.atDispatch(t, hashOf(t, later))
}

// TestAttackInvalidUTF8Reason: a driver action whose reason is not valid UTF-8 (raw bytes, or an escaped
// unpaired surrogate) is refused with 422 bad_reason and records nothing; the order stays active; a valid
// reason is then recorded and reaches dispatch's archive as sent.
func TestAttackInvalidUTF8Reason(t *testing.T) {
	f := newFleet(t)
	o := newOrder(truckA, "utf8-1")
	f.accepted(t, o)
	for _, c := range []struct{ action, body string }{
		{"failed", "{\"reason\":\"nobody home \xff\xfe\"}"},
		{"problem", "{\"reason\":\"Stra\xc3\"}"},
		{"problem", `{"reason":"dog \ud83d"}`},
		{"failed", `{"reason":"\udce6 dog"}`},
	} {
		if got := call(t, f.a, "POST", "/api/orders/"+o.ID+"/"+c.action, c.body, "Content-Type", "application/json"); got != (answer{422, "bad_reason"}) {
			t.Errorf("%s with %q: %+v, want 422 bad_reason", c.action, c.body, got)
		}
	}
	if v, _ := f.a.order(t, o.ID); v.State != "active" || v.Problems != 0 {
		t.Errorf("the order after the refused actions: %+v", v)
	}
	const reason = "Straße gesperrt \U0001F6A7"
	f.a.act(o.ID, "failed", reason)
	var got []string
	for _, e := range f.waitDispatchEvent(t, "the failure", func(e sdk.Event) bool { return e.Kind == sdk.EventFailed && e.OrderID == o.ID }) {
		if e.OrderID == o.ID && e.Kind != sdk.EventReceived {
			got = append(got, e.Kind.String()+": "+e.Reason)
		}
	}
	if len(got) != 1 || got[0] != "failed: "+reason {
		t.Errorf("dispatch holds %q, want only the failure with reason %q", got, reason)
	}
}
