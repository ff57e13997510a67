package sdktest_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor bounds every wait for a message that should arrive; silence checks use quiet.
const (
	waitFor = 5 * time.Second
	quiet   = 300 * time.Millisecond
)

// mqttClient is a plain paho (MQTT v5) client over mutual TLS, with a channel of received messages.
type mqttClient struct {
	*paho.Client
	msgs    chan *paho.Publish
	connack *paho.Connack
}

type connectOpts struct {
	clientID string // "" means the certificate's name
	will     *paho.WillMessage
}

// connect dials and connects; the error is the refusal, if any. The client is disconnected at cleanup.
func connect(t *testing.T, b *sdktest.Broker, tc *tls.Config, name string, o connectOpts) (*mqttClient, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	conn, err := b.Dial(ctx, tc)
	if err != nil {
		return nil, err
	}
	c := &mqttClient{msgs: make(chan *paho.Publish, 100)}
	c.Client = paho.NewClient(paho.ClientConfig{
		// paho writes a packet in several Writes and sends its first PINGREQ from another goroutine at
		// once: without the lock they interleave and the broker sees a malformed packet.
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case c.msgs <- pr.Packet:
			default:
			}
			return true, nil
		}},
	})
	id := o.clientID
	if id == "" {
		id = name
	}
	c.connack, err = c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true, WillMessage: o.will})
	if err != nil {
		<-c.Done()
		return nil, err
	}
	t.Cleanup(func() {
		c.Disconnect(&paho.Disconnect{})
		<-c.Done()
	})
	return c, nil
}

func mustConnect(t *testing.T, b *sdktest.Broker, c sdktest.Client) *mqttClient {
	t.Helper()
	mc, err := connect(t, b, c.TLSConfig(t), c.Name, connectOpts{})
	if err != nil {
		t.Fatalf("%s: connect: %v", c.Name, err)
	}
	return mc
}

func (c *mqttClient) subscribe(t *testing.T, filters ...string) {
	t.Helper()
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := c.Subscribe(ctx, s); err != nil {
		t.Fatalf("subscribe %v: %v", filters, err)
	}
}

// refused asserts that the broker answers each filter with SUBACK 135 (not authorized).
func (c *mqttClient) refused(t *testing.T, filters ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for _, f := range filters {
		sa, _ := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: f, QoS: 1}}})
		if sa == nil || len(sa.Reasons) != 1 || sa.Reasons[0] != reasonNotAuthorized {
			t.Errorf("subscribe %s: SUBACK %+v, want reason %d", f, sa, reasonNotAuthorized)
		}
	}
}

// publish returns the PUBACK reason code (QoS 1).
func (c *mqttClient) publish(t *testing.T, topic, payload string, retain bool) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: retain, Payload: []byte(payload)})
	if pr == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	if (pr.ReasonCode >= 0x80) != (err != nil) {
		t.Fatalf("publish %s: reason %d but error %v", topic, pr.ReasonCode, err)
	}
	return pr.ReasonCode
}

// expect waits for a message on topic with payload, failing on anything else first.
func (c *mqttClient) expect(t *testing.T, who, topic, payload string) {
	t.Helper()
	select {
	case m := <-c.msgs:
		if m.Topic != topic || string(m.Payload) != payload {
			t.Fatalf("%s received %s %q, want %s %q", who, m.Topic, m.Payload, topic, payload)
		}
	case <-time.After(waitFor):
		t.Fatalf("%s did not receive %s", who, topic)
	}
}

func (c *mqttClient) expectNothing(t *testing.T, who string) {
	t.Helper()
	select {
	case m := <-c.msgs:
		t.Fatalf("%s received %s %q, which it may not read", who, m.Topic, m.Payload)
	case <-time.After(quiet):
	}
}

const reasonNotAuthorized = 135

// TestIsolation runs the same cases against real Mosquitto (configured by brokerconf) and the
// development broker.
func TestIsolation(t *testing.T) {
	for _, kind := range sdktest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			b := sdktest.Start(t, kind, sdktest.Options{Dispatch: []string{"office", "office-2"}})
			office := b.ClientFiles("office")
			truckA, truckB := b.Truck("truck-a"), b.Truck("truck-b")
			for _, tc := range isolationCases {
				t.Run(tc.name, func(t *testing.T) { tc.run(t, b, kind, office, truckA, truckB) })
			}
			if t.Failed() {
				t.Logf("broker log:\n%s", b.Logs())
			}
		})
	}
}

type isolationCase struct {
	name string
	run  func(t *testing.T, b *sdktest.Broker, kind sdktest.Kind, office, truckA, truckB sdktest.Client)
}

var isolationCases = []isolationCase{
	{"receive maximum is our window", func(t *testing.T, b *sdktest.Broker, _ sdktest.Kind, _, truckA, _ sdktest.Client) {
		c := mustConnect(t, b, truckA)
		if c.connack.Properties == nil || c.connack.Properties.ReceiveMaximum == nil || *c.connack.Properties.ReceiveMaximum != 1000 {
			t.Fatalf("CONNACK receive maximum %+v, want 1000", c.connack.Properties)
		}
	}},
	{"dispatch reads telemetry and events", func(t *testing.T, b *sdktest.Broker, _ sdktest.Kind, office, truckA, _ sdktest.Client) {
		d := mustConnect(t, b, office)
		d.subscribe(t, "fleet/trucks/+/telemetry", "fleet/trucks/+/events")
		a := mustConnect(t, b, truckA)
		if rc := a.publish(t, "fleet/trucks/truck-a/telemetry", "fix", false); rc >= 0x80 {
			t.Fatalf("own telemetry: reason %d", rc)
		}
		d.expect(t, "dispatch", "fleet/trucks/truck-a/telemetry", "fix")
		if rc := a.publish(t, "fleet/trucks/truck-a/events", "delivered", false); rc >= 0x80 {
			t.Fatalf("own events: reason %d", rc)
		}
		d.expect(t, "dispatch", "fleet/trucks/truck-a/events", "delivered")
	}},
	{"truck cannot publish as another truck", func(t *testing.T, b *sdktest.Broker, _ sdktest.Kind, office, truckA, _ sdktest.Client) {
		d := mustConnect(t, b, office)
		d.subscribe(t, "fleet/trucks/#")
		a := mustConnect(t, b, truckA)
		for _, topic := range []string{"fleet/trucks/truck-b/telemetry", "fleet/trucks/truck-b/events", "fleet/trucks/truck-b/status"} {
			if rc := a.publish(t, topic, "forged", false); rc != reasonNotAuthorized {
				t.Errorf("%s: reason %d, want %d", topic, rc, reasonNotAuthorized)
			}
		}
		d.expectNothing(t, "dispatch")
	}},
	{"truck cannot publish orders", func(t *testing.T, b *sdktest.Broker, _ sdktest.Kind, _, truckA, truckB sdktest.Client) {
		tb := mustConnect(t, b, truckB)
		tb.subscribe(t, "fleet/trucks/truck-b/orders/#")
		a := mustConnect(t, b, truckA)
		for _, topic := range []string{"fleet/trucks/truck-b/orders/o1", "fleet/trucks/truck-a/orders/o1"} {
			if rc := a.publish(t, topic, "forged order", false); rc != reasonNotAuthorized {
				t.Errorf("%s: reason %d, want %d", topic, rc, reasonNotAuthorized)
			}
		}
		tb.expectNothing(t, "truck-b")
	}},
	{"dispatch sends orders to any truck, each truck reads only its own", func(t *testing.T, b *sdktest.Broker, _ sdktest.Kind, office, truckA, truckB sdktest.Client) {
		a := mustConnect(t, b, truckA)
		a.refused(t, "fleet/trucks/truck-b/orders/#", "fleet/trucks/+/orders/#", "fleet/#", "#")
		a.subscribe(t, "fleet/trucks/truck-a/orders/#")
		tb := mustConnect(t, b, truckB)
		tb.subscribe(t, "fleet/trucks/truck-b/orders/#")
		d := mustConnect(t, b, office)
		if rc := d.publish(t, "fleet/trucks/truck-b/orders/o1", "order for b", false); rc >= 0x80 {
			t.Fatalf("dispatch order: reason %d", rc)
		}
		tb.expect(t, "truck-b", "fleet/trucks/truck-b/orders/o1", "order for b")
		a.expectNothing(t, "truck-a")
		d.publish(t, "fleet/trucks/truck-a/orders/o2", "order for a", false)
		a.expect(t, "truck-a", "fleet/trucks/truck-a/orders/o2", "order for a")
	}},
	{"truck cannot publish receipts or dispatch status", func(t *testing.T, b *sdktest.Broker, _ sdktest.Kind, office, truckA, truckB sdktest.Client) {
		d := mustConnect(t, b, office)
		d.subscribe(t, "fleet/trucks/#", "fleet/dispatch/+/status")
		tb := mustConnect(t, b, truckB)
		tb.subscribe(t, "fleet/trucks/truck-b/receipts")
		a := mustConnect(t, b, truckA)
		for _, topic := range []string{
			"fleet/trucks/truck-b/receipts", "fleet/trucks/truck-a/receipts", // not even its own
			"fleet/dispatch/office/status", "fleet/dispatch/truck-a/status", // nothing under dispatch/
		} {
			if rc := a.publish(t, topic, "forged", false); rc != reasonNotAuthorized {
				t.Errorf("%s: reason %d, want %d", topic, rc, reasonNotAuthorized)
			}
		}
		d.expectNothing(t, "dispatch")
		tb.expectNothing(t, "truck-b")
	}},
	{"dispatch sends receipts to any truck, each truck reads only its own", func(t *testing.T, b *sdktest.Broker, _ sdktest.Kind, office, truckA, truckB sdktest.Client) {
		a := mustConnect(t, b, truckA)
		a.refused(t, "fleet/trucks/+/receipts", "fleet/trucks/truck-b/receipts/#")
		a.subscribe(t, "fleet/trucks/truck-a/receipts")
		tb := mustConnect(t, b, truckB)
		tb.subscribe(t, "fleet/trucks/truck-b/receipts")
		d := mustConnect(t, b, office)
		if rc := d.publish(t, "fleet/trucks/truck-b/receipts", "receipt for b", false); rc >= 0x80 {
			t.Fatalf("dispatch receipt for b: reason %d", rc)
		}
		tb.expect(t, "truck-b", "fleet/trucks/truck-b/receipts", "receipt for b")
		a.expectNothing(t, "truck-a")
		if rc := d.publish(t, "fleet/trucks/truck-a/receipts", "receipt for a", false); rc >= 0x80 {
			t.Fatalf("dispatch receipt for a: reason %d", rc)
		}
		a.expect(t, "truck-a", "fleet/trucks/truck-a/receipts", "receipt for a")
		tb.expectNothing(t, "truck-b")
	}},
	{"dispatch status: own written (and as will), read by trucks and dispatch; another's refused", func(t *testing.T, b *sdktest.Broker, _ sdktest.Kind, office, truckA, _ sdktest.Client) {
		a := mustConnect(t, b, truckA)
		a.subscribe(t, "fleet/dispatch/+/status")
		d2 := mustConnect(t, b, b.ClientFiles("office-2"))
		d2.subscribe(t, "fleet/dispatch/office/status")
		// office connects with its will on its own status, says online, tries to speak for office-2, and
		// drops the connection without DISCONNECT: the will fires.
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		conn, err := b.Dial(ctx, office.TLSConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn)})
		if _, err := c.Connect(ctx, &paho.Connect{ClientID: "office", KeepAlive: 30, CleanStart: true,
			WillMessage: &paho.WillMessage{Topic: "fleet/dispatch/office/status", Payload: []byte("offline"), QoS: 1, Retain: true}}); err != nil {
			t.Fatal(err)
		}
		pub := func(topic, payload string) byte {
			pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte(payload)})
			if pr == nil {
				t.Fatalf("publish %s: %v", topic, err)
			}
			return pr.ReasonCode
		}
		if rc := pub("fleet/dispatch/office-2/status", "forged offline"); rc != reasonNotAuthorized {
			t.Errorf("office writing office-2's status: reason %d, want %d", rc, reasonNotAuthorized)
		}
		if rc := pub("fleet/dispatch/office/status", "online"); rc >= 0x80 {
			t.Errorf("office writing its own status: reason %d", rc)
		}
		a.expect(t, "truck-a", "fleet/dispatch/office/status", "online")
		d2.expect(t, "office-2", "fleet/dispatch/office/status", "online")
		conn.Close()
		<-c.Done()
		a.expect(t, "truck-a", "fleet/dispatch/office/status", "offline")
		d2.expect(t, "office-2", "fleet/dispatch/office/status", "offline")
		a.expectNothing(t, "truck-a")
		// Clear the retained status, so later cases start clean.
		mustConnect(t, b, office).publish(t, "fleet/dispatch/office/status", "", true)
	}},
	{"truck cannot take over another truck's client id", func(t *testing.T, b *sdktest.Broker, kind sdktest.Kind, office, truckA, truckB sdktest.Client) {
		tb := mustConnect(t, b, truckB)
		tb.subscribe(t, "fleet/trucks/truck-b/orders/#")
		imp, err := connect(t, b, truckA.TLSConfig(t), truckA.Name, connectOpts{clientID: "truck-b"})
		switch kind {
		case sdktest.DevBroker: // refuses a client id that is not the certificate's name
			if err == nil {
				t.Fatal("development broker accepted client id truck-b from truck-a's certificate")
			}
		case sdktest.Mosquitto: // use_username_as_clientid: the client id becomes truck-a
			if err != nil {
				t.Fatalf("mosquitto refused: %v", err)
			}
			imp.refused(t, "fleet/trucks/truck-b/orders/#")
		}
		d := mustConnect(t, b, office)
		d.publish(t, "fleet/trucks/truck-b/orders/o3", "still b", false)
		tb.expect(t, "truck-b", "fleet/trucks/truck-b/orders/o3", "still b")
		select {
		case <-tb.Done():
			t.Fatal("truck-b was disconnected")
		default:
		}
		if imp != nil {
			imp.expectNothing(t, "impostor")
		}
	}},
	{"will: own status retained, another's dropped", func(t *testing.T, b *sdktest.Broker, _ sdktest.Kind, office, truckA, _ sdktest.Client) {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		for _, w := range []struct{ topic, payload string }{
			{"fleet/trucks/truck-b/status", "forged offline"}, // first, so a leak would arrive first
			{"fleet/trucks/truck-a/status", "offline"},
		} {
			conn, err := b.Dial(ctx, truckA.TLSConfig(t))
			if err != nil {
				t.Fatal(err)
			}
			c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn)})
			if _, err := c.Connect(ctx, &paho.Connect{ClientID: "truck-a", KeepAlive: 30, CleanStart: true,
				WillMessage: &paho.WillMessage{Topic: w.topic, Payload: []byte(w.payload), QoS: 1, Retain: true}}); err != nil {
				t.Fatal(err)
			}
			conn.Close() // no DISCONNECT: the will fires
			<-c.Done()
		}
		d := mustConnect(t, b, office) // subscribes after the fact: only retained messages arrive
		d.subscribe(t, "fleet/trucks/+/status")
		d.expect(t, "dispatch", "fleet/trucks/truck-a/status", "offline")
		d.expectNothing(t, "dispatch")
	}},
	{"refused certificates", func(t *testing.T, b *sdktest.Broker, _ sdktest.Kind, _, truckA, _ sdktest.Client) {
		now := time.Now()
		expired := b.Issue(pki.RoleTruck, "truck-old", pki.IssueOptions{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
		revoked := b.Truck("truck-gone")
		if _, err := b.PKI.Revoke("truck-gone"); err != nil {
			t.Fatal(err)
		}
		b.Reload()
		foreignPKI, err := pki.Init(pki.Config{Dir: filepath.Join(t.TempDir(), "foreign")}, pki.CAOptions{Fleet: "evil"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := foreignPKI.Issue(pki.RoleTruck, "truck-a", pki.IssueOptions{}); err != nil {
			t.Fatal(err)
		}
		foreign := sdktest.Client{Name: "truck-a", CAFile: b.PKI.CAPath(), CertFile: foreignPKI.CertPath("truck-a"), KeyFile: foreignPKI.KeyPath("truck-a")}
		noCert := truckA.TLSConfig(t)
		noCert.Certificates = nil
		tls11 := truckA.TLSConfig(t)
		tls11.MinVersion, tls11.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		cases := []struct {
			name, clientID string // the client id is the certificate's name, so only the certificate is wrong
			tc             *tls.Config
		}{
			{"no client certificate", "truck-a", noCert},
			{"foreign CA", "truck-a", foreign.TLSConfig(t)},
			{"expired", "truck-old", expired.TLSConfig(t)},
			{"revoked", "truck-gone", revoked.TLSConfig(t)},
			{"TLS 1.1", "truck-a", tls11},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := connect(t, b, tc.tc, tc.clientID, connectOpts{}); err == nil {
					t.Fatal("connected")
				}
			})
		}
		mustConnect(t, b, truckA) // and the good one still works
	}},
	{"only dispatch joins share groups", func(t *testing.T, b *sdktest.Broker, _ sdktest.Kind, office, truckA, truckB sdktest.Client) {
		a := mustConnect(t, b, truckA)
		a.refused(t, "$share/dispatch/fleet/trucks/+/events", "$share/dispatch/fleet/trucks/truck-a/orders/#",
			"$share/g/fleet/dispatch/+/status", "$share/g/fleet/crl")
		d := mustConnect(t, b, office)
		d.subscribe(t, "$share/dispatch/fleet/trucks/+/events")
		tb := mustConnect(t, b, truckB)
		for i := range 4 { // with the truck out of the group, dispatch gets every one
			payload := fmt.Sprintf("proof %d", i)
			if rc := tb.publish(t, "fleet/trucks/truck-b/events", payload, false); rc >= 0x80 {
				t.Fatalf("event: reason %d", rc)
			}
			d.expect(t, "dispatch", "fleet/trucks/truck-b/events", payload)
		}
		a.expectNothing(t, "truck-a")
	}},
	{"the fleet CRL: only the administrator writes it, everybody reads it", func(t *testing.T, b *sdktest.Broker, kind sdktest.Kind, office, truckA, _ sdktest.Client) {
		a := mustConnect(t, b, truckA)
		d := mustConnect(t, b, office)
		for _, c := range []*mqttClient{a, d} {
			if rc := c.publish(t, "fleet/crl", "forged crl", true); rc != reasonNotAuthorized {
				t.Errorf("CRL from a client: reason %d, want %d", rc, reasonNotAuthorized)
			}
		}
		if kind != sdktest.Mosquitto {
			return // the development broker has no administrator
		}
		a.subscribe(t, "fleet/crl")
		b.PublishCRL()
		crl, err := b.PKI.CRL()
		if err != nil {
			t.Fatal(err)
		}
		a.expect(t, "truck-a", "fleet/crl", string(crl.Raw))
		mustConnect(t, b, office).subscribe(t, "fleet/crl") // retained: a late subscriber gets it too
	}},
	{"an identity the broker was not told about may do nothing", func(t *testing.T, b *sdktest.Broker, kind sdktest.Kind, _, _, _ sdktest.Client) {
		if _, err := b.PKI.Issue(pki.RoleTruck, "truck-unknown", pki.IssueOptions{}); err != nil {
			t.Fatal(err)
		}
		u := mustConnect(t, b, b.ClientFiles("truck-unknown"))
		rc := u.publish(t, "fleet/trucks/truck-unknown/telemetry", "fix", false)
		switch kind {
		case sdktest.Mosquitto: // the dynamic security plugin lists identities: not yet told, nothing allowed
			if rc != reasonNotAuthorized {
				t.Errorf("unknown identity's telemetry: reason %d, want %d", rc, reasonNotAuthorized)
			}
			u.refused(t, "fleet/trucks/truck-unknown/orders/#")
			b.Sync() // now it may
			u = mustConnect(t, b, b.ClientFiles("truck-unknown"))
			if rc := u.publish(t, "fleet/trucks/truck-unknown/telemetry", "fix", false); rc >= 0x80 {
				t.Errorf("after sync: reason %d", rc)
			}
		case sdktest.DevBroker: // reads the role from the certificate
			if rc >= 0x80 {
				t.Errorf("development broker: reason %d", rc)
			}
		}
	}},
	{"a revoked identity's live session ends", func(t *testing.T, b *sdktest.Broker, kind sdktest.Kind, office, _, _ sdktest.Client) {
		r := b.Truck("truck-stolen")
		c := mustConnect(t, b, r)
		if rc := c.publish(t, "fleet/trucks/truck-stolen/telemetry", "fix", false); rc >= 0x80 {
			t.Fatalf("before revocation: reason %d", rc)
		}
		start := time.Now()
		closed := make(chan time.Duration, 1)
		go func() { <-c.Done(); closed <- time.Since(start) }() // ends with the connection, at the latest at cleanup
		b.Revoke("truck-stolen")
		if kind == sdktest.DevBroker { // it notices the new CRL file at the session's next action
			ctx, cancel := context.WithTimeout(context.Background(), quiet) // no PUBACK comes: the session ends
			pr, _ := c.Publish(ctx, &paho.Publish{Topic: "fleet/trucks/truck-stolen/telemetry", QoS: 1, Payload: []byte("fix")})
			cancel()
			if pr != nil && pr.ReasonCode < 0x80 {
				t.Errorf("revoked truck's publish accepted: reason %d", pr.ReasonCode)
			}
		}
		select {
		case d := <-closed:
			t.Logf("%s: from revoke (PKI, CRL, broker told) to the revoked truck's connection closed: %v", kind, d)
		case <-time.After(waitFor):
			t.Fatal("the revoked truck's session is still open")
		}
		if _, err := connect(t, b, r.TLSConfig(t), r.Name, connectOpts{}); err == nil {
			t.Error("the revoked truck connected again")
		}
		mustConnect(t, b, office) // others are untouched
	}},
	{"mosquitto_pub and mosquitto_sub", mosquittoClientsCase},
}

// mosquittoClientsCase drives the same rules with the real command-line clients.
func mosquittoClientsCase(t *testing.T, b *sdktest.Broker, _ sdktest.Kind, office, truckA, truckB sdktest.Client) {
	pub := func(c sdktest.Client, topic string) (string, error) {
		args := append(b.MosquittoArgs(c), "-d", "-q", "1", "-t", topic, "-m", "x")
		out, err := exec.Command(sdktest.ClientTool(t, "mosquitto_pub"), args...).CombinedOutput()
		return string(out), err
	}
	if out, err := pub(truckA, "fleet/trucks/truck-b/telemetry"); err != nil || !strings.Contains(out, "RC:135") {
		t.Errorf("truck-a as truck-b: want PUBACK RC:135, got %v\n%s", err, out)
	}
	if out, err := pub(truckA, "fleet/trucks/truck-a/orders/x"); err != nil || !strings.Contains(out, "RC:135") {
		t.Errorf("truck-a publishing an order: want PUBACK RC:135, got %v\n%s", err, out)
	}
	if out, err := pub(truckA, "fleet/trucks/truck-a/telemetry"); err != nil || strings.Contains(out, "RC:135") || !strings.Contains(out, "PUBACK") {
		t.Errorf("truck-a own telemetry: %v\n%s", err, out)
	}
	if out, err := pub(office, "fleet/trucks/truck-b/orders/o9"); err != nil || strings.Contains(out, "RC:135") {
		t.Errorf("dispatch order for b: %v\n%s", err, out)
	}
	if out, err := pub(office, "fleet/trucks/truck-a/orders/o10"); err != nil || strings.Contains(out, "RC:135") {
		t.Errorf("dispatch order for a: %v\n%s", err, out)
	}
	// mosquitto_sub as truck-a on B's orders and its own: retained orders for both exist, B's filter comes
	// first, and -C 1 prints the first message delivered: it must be A's.
	d := mustConnect(t, b, office)
	d.publish(t, "fleet/trucks/truck-b/orders/r1", "for b", true)
	d.publish(t, "fleet/trucks/truck-a/orders/r2", "for a", true)
	args := append(b.MosquittoArgs(truckA), "-v", "-C", "1", "-W", "5", "-t", "fleet/trucks/truck-b/orders/#", "-t", "fleet/trucks/truck-a/orders/#")
	out, err := exec.Command(sdktest.ClientTool(t, "mosquitto_sub"), args...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "fleet/trucks/truck-a/orders/r2 for a" {
		t.Errorf("mosquitto_sub as truck-a: %v\n%s", err, out)
	}
	// Least privilege at subscription time: truck-a's filters beyond its own topics, and every share
	// group, get SUBACK 135 from mosquitto_sub too; its own orders 0. (-d prints "Subscribed (mid: N): ...")
	args = append(b.MosquittoArgs(truckA), "-d", "-W", "1", "-t", "fleet/trucks/truck-a/orders/#",
		"-t", "fleet/trucks/truck-b/orders/#", "-t", "$share/g/fleet/trucks/+/events", "-t", "fleet/#")
	out, _ = exec.Command(sdktest.ClientTool(t, "mosquitto_sub"), args...).CombinedOutput()
	if !strings.Contains(string(out), "Subscribed (mid: 1): 0, 135, 135, 135") {
		t.Errorf("mosquitto_sub as truck-a: want SUBACK 0, 135, 135, 135:\n%s", out)
	}
	args = append(b.MosquittoArgs(office), "-d", "-W", "1", "-t", "$share/g/fleet/trucks/+/events")
	out, _ = exec.Command(sdktest.ClientTool(t, "mosquitto_sub"), args...).CombinedOutput()
	if !strings.Contains(string(out), "Subscribed (mid: 1): 0") {
		t.Errorf("mosquitto_sub as dispatch in a share group: want SUBACK 0:\n%s", out)
	}
	// and as dispatch it reads B's.
	args = append(b.MosquittoArgs(office), "-v", "-C", "1", "-W", "5", "-t", "fleet/trucks/truck-b/orders/#")
	out, err = exec.Command(sdktest.ClientTool(t, "mosquitto_sub"), args...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "fleet/trucks/truck-b/orders/r1 for b" {
		t.Errorf("mosquitto_sub as dispatch: %v\n%s", err, out)
	}
	for _, topic := range []string{"fleet/trucks/truck-b/orders/r1", "fleet/trucks/truck-a/orders/r2"} { // clear them
		args := append(b.MosquittoArgs(office), "-q", "1", "-r", "-n", "-t", topic)
		if out, err := exec.Command(sdktest.ClientTool(t, "mosquitto_pub"), args...).CombinedOutput(); err != nil {
			t.Errorf("clearing %s: %v\n%s", topic, err, out)
		}
	}
	// Refused: no certificate, and a revoked one (issued and revoked by the case above or now).
	noCert := append([]string{}, b.MosquittoArgs(truckA)...)
	for i := 0; i < len(noCert); i++ {
		if noCert[i] == "--cert" || noCert[i] == "--key" {
			noCert = append(noCert[:i], noCert[i+2:]...)
			i--
		}
	}
	out, err = exec.Command(sdktest.ClientTool(t, "mosquitto_pub"), append(noCert, "-q", "1", "-t", "fleet/trucks/truck-a/telemetry", "-m", "x")...).CombinedOutput()
	if err == nil {
		t.Errorf("mosquitto_pub without a certificate succeeded:\n%s", out)
	}
	if _, err := pub(b.ClientFiles("truck-old"), "fleet/trucks/truck-old/telemetry"); err == nil {
		t.Error("mosquitto_pub with an expired certificate succeeded")
	}
	if _, err := pub(b.ClientFiles("truck-gone"), "fleet/trucks/truck-gone/telemetry"); err == nil {
		t.Error("mosquitto_pub with a revoked certificate succeeded")
	}
	_ = truckB
}

// TestMosquittoConfigStarts checks that the generated configuration passes Mosquitto's own start-up
// checks with every option we set (StartMosquitto fails otherwise), and that the broker accepts TLS.
func TestMosquittoConfigStarts(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{})
	// Mosquitto may accept connections a moment before its start-up lines reach the log pipe.
	deadline := time.Now().Add(waitFor)
	for _, want := range []string{"Config loaded from " + b.ConfPath(), "running"} {
		for !strings.Contains(b.Logs(), want) {
			if time.Now().After(deadline) {
				t.Errorf("log lacks %q:\n%s", want, b.Logs())
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	c := b.Truck("truck-a")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	conn, err := b.Dial(ctx, c.TLSConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if v := conn.(*tls.Conn).ConnectionState().Version; v < tls.VersionTLS12 {
		t.Errorf("TLS version %x", v)
	}
	// kill -9 and start again on the same port with the same persistence directory.
	b.Kill()
	var ne net.Error
	if _, err := net.DialTimeout("tcp", b.Addr, time.Second); err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Errorf("killed broker still accepts: %v", err)
	}
	b.Start()
	mustConnect(t, b, c)
}
