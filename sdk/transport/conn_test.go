package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/sdktest/faultproxy"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConfigValidation(t *testing.T) {
	ok := Config{Brokers: []string{"mqtts://broker.example:8883"}, ClientID: "truck-1", CertFile: "c", KeyFile: "k",
		CAFile: "ca"}
	cases := []struct {
		name   string
		change func(*Config)
		want   string // substring of the error; "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"plaintext refused", func(c *Config) { c.Brokers = []string{"mqtt://localhost:1883"} }, "AllowPlaintext"},
		{"tcp refused", func(c *Config) { c.Brokers = []string{"tcp://localhost"} }, "plaintext"},
		{"plaintext allowed for development", func(c *Config) {
			c.Brokers, c.AllowPlaintext = []string{"mqtt://localhost"}, true
		}, ""},
		{"password never over plaintext", func(c *Config) {
			c.Brokers, c.AllowPlaintext = []string{"mqtts://a", "mqtt://b"}, true
			c.Username, c.Password = "dispatch-tool", []byte("secret")
		}, "only sent over TLS"},
		{"password over TLS", func(c *Config) {
			c.CertFile, c.KeyFile, c.Username, c.Password = "", "", "dispatch-tool", []byte("secret")
		}, ""},
		{"no brokers", func(c *Config) { c.Brokers = nil }, "Brokers is empty"},
		{"unknown scheme", func(c *Config) { c.Brokers = []string{"ws://x"} }, "unsupported scheme"},
		{"no host", func(c *Config) { c.Brokers = []string{"mqtts://:8883"} }, "no host"},
		{"no client id", func(c *Config) { c.ClientID = "" }, "ClientID"},
		{"no CA", func(c *Config) { c.CAFile = "" }, "CAFile"},
		{"no identity", func(c *Config) { c.CertFile, c.KeyFile = "", "" }, "no client identity"},
		{"half a key pair", func(c *Config) { c.KeyFile = "" }, "both"},
		{"will without topic", func(c *Config) { c.Will = &Will{Payload: []byte("offline")} }, "Will"},
		{"bad subscription", func(c *Config) { c.Subscriptions = []Subscription{{Topic: "x", QoS: 3}} }, "subscription"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.change(&cfg)
			c, err := New(cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if c.Connected() || c.Current().Err != nil {
					t.Fatalf("fresh Conn state %+v", c.Current())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestDefaultPortsAndDefaults(t *testing.T) {
	c, err := New(Config{Brokers: []string{"mqtts://a", "tls://b:9999", "mqtt://c"}, AllowPlaintext: true,
		ClientID: "x", CAFile: "ca", CertFile: "c", KeyFile: "k"})
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for _, b := range c.brokers {
		hosts = append(hosts, b.url.Host)
	}
	if got := strings.Join(hosts, " "); got != "a:8883 b:9999 c:1883" {
		t.Fatalf("hosts %q", got)
	}
	if c.cfg.KeepAlive != DefaultKeepAlive || c.cfg.SessionExpiry != DefaultSessionExpiry {
		t.Fatalf("defaults not applied: %+v", c.cfg)
	}
}

func TestPublishBeforeRunIsNotConnected(t *testing.T) {
	c := newConn(t, Config{Brokers: []string{"mqtts://127.0.0.1:1"}, ClientID: "x", CAFile: "ca", CertFile: "c",
		KeyFile: "k"})
	if err := c.Publish(context.Background(), "t", nil, PublishOptions{QoS: 1}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Publish before Run: %v, want ErrNotConnected", err)
	}
	if err := c.Publish(context.Background(), "t", nil, PublishOptions{QoS: 3}); err == nil {
		t.Fatal("QoS 3 accepted")
	}
}

func TestMutualTLSPublishAndReceive(t *testing.T) {
	p := newPKI(t)
	b := startMosquitto(t, p, brokerOpts{})
	truckID := p.valid(t, "truck-1", "truck-1", "truck", false)
	dispID := p.valid(t, "dispatch-1", "dispatch-1", "dispatch", false)

	in := make(inbox, 16)
	dcfg := clientConfig(t, p, dispID, "dispatch-1", b.url())
	dcfg.Subscriptions = []Subscription{{Topic: "fleet/trucks/+/telemetry", QoS: 1}}
	dcfg.OnPublish = in.handler
	disp := newConn(t, dcfg)
	running(t, disp)
	waitUp(t, disp)

	truck := newConn(t, clientConfig(t, p, truckID, "truck-1", b.url()))
	running(t, truck)
	waitUp(t, truck)
	st := truck.Current()
	if !st.Connected || st.Info.Broker != b.url() || st.Info.TLSVersion != tls.VersionTLS13 ||
		st.Info.CertSerial != truckID.serial.String() {
		t.Fatalf("state %+v: want connected to %s over TLS 1.3 with serial %s", st, b.url(), truckID.serial)
	}
	if st.Info.ReceiveMaximum != 20 {
		t.Fatalf("receive maximum %d, want Mosquitto's default max_inflight_messages 20", st.Info.ReceiveMaximum)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := truck.Publish(ctx, "fleet/trucks/truck-1/telemetry", []byte("fix-1"), PublishOptions{QoS: 1}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	in.expect(t, "fleet/trucks/truck-1/telemetry", "fix-1")
	if s := truck.Stats(); s.Connects != 1 || s.WireBytesWritten == 0 || s.WireBytesRead == 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPublishDeniedByACLIsPublishError135(t *testing.T) {
	p := newPKI(t)
	b := startMosquitto(t, p, brokerOpts{})
	truck := newConn(t, clientConfig(t, p, p.valid(t, "truck-1", "truck-1", "truck", false), "truck-1", b.url()))
	running(t, truck)
	waitUp(t, truck)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := truck.Publish(ctx, "fleet/trucks/truck-2/telemetry", []byte("forged"), PublishOptions{QoS: 1})
	var pe *PublishError
	if !errors.As(err, &pe) || pe.ReasonCode != 135 || pe.Topic != "fleet/trucks/truck-2/telemetry" {
		t.Fatalf("Publish to another truck's topic: %v, want *PublishError with reason code 135", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "135") || !strings.Contains(msg, "not authorized") {
		t.Fatalf("error %q does not name the code", msg)
	}
	// The connection survives a refused publish.
	if err := truck.Publish(ctx, "fleet/trucks/truck-1/telemetry", []byte("ok"), PublishOptions{QoS: 1}); err != nil {
		t.Fatalf("Publish after refusal: %v", err)
	}
}

func TestRenewedCertificateUsedAtNextReconnect(t *testing.T) {
	p := newPKI(t)
	b := startMosquitto(t, p, brokerOpts{})
	proxy := startProxy(t, b.addr())
	now := time.Now()
	// The unit was offline while its certificate expired: the broker refuses it.
	expired := p.issue(t, "truck-1", "truck-1", "truck", false, now.AddDate(-1, 0, 0), now.Add(-time.Hour))
	truck := newConn(t, clientConfig(t, p, expired, "truck-1", "mqtts://"+proxy.Addr()))
	running(t, truck)
	st := waitState(t, truck, "refused", func(s State) bool { return s.Err != nil })
	t.Logf("with the expired certificate: %v", st.Err)
	if truck.Connected() {
		t.Fatal("connected with an expired certificate")
	}
	// Renewal writes new files over the old ones; no restart.
	renewed := p.valid(t, "truck-1", "truck-1", "truck", false)
	st = waitState(t, truck, "connected", func(s State) bool { return s.Connected })
	if st.Info.CertSerial != renewed.serial.String() {
		t.Fatalf("connected with serial %s, want the renewed %s", st.Info.CertSerial, renewed.serial)
	}
	// Renewed again while connected: in use after the next reconnect, and not hidden by TLS resumption.
	again := p.valid(t, "truck-1", "truck-1", "truck", false)
	proxy.DropAll()
	st = waitState(t, truck, "reconnected", func(s State) bool { return s.Connected })
	if st.Info.CertSerial != again.serial.String() || st.Info.TLSResumed {
		t.Fatalf("reconnected with serial %s (resumed %v), want %s in a full handshake", st.Info.CertSerial,
			st.Info.TLSResumed, again.serial)
	}
	// Same certificate: the next reconnect resumes the TLS session.
	proxy.DropAll()
	st = waitState(t, truck, "reconnected", func(s State) bool { return s.Connected })
	if !st.Info.TLSResumed || truck.Stats().TLSResumptions == 0 {
		t.Fatalf("reconnect with an unchanged certificate did not resume TLS: %+v", st.Info)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := truck.Publish(ctx, "fleet/trucks/truck-1/telemetry", []byte("x"), PublishOptions{QoS: 1}); err != nil {
		t.Fatalf("Publish over the resumed session: %v", err)
	}
}

func TestReconnectAfterBrokerKilledAndRestarted(t *testing.T) {
	p := newPKI(t)
	b := startMosquitto(t, p, brokerOpts{})
	truck := newConn(t, clientConfig(t, p, p.valid(t, "truck-1", "truck-1", "truck", false), "truck-1", b.url()))
	running(t, truck)
	waitUp(t, truck)
	<-truck.States() // connected
	b.kill()
	st := waitState(t, truck, "disconnected", func(s State) bool { return !s.Connected && s.Err != nil })
	t.Logf("down: %v", st.Err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := truck.Publish(ctx, "fleet/trucks/truck-1/telemetry", []byte("x"), PublishOptions{QoS: 1}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Publish while down: %v, want ErrNotConnected", err)
	}
	b.start()
	st = waitState(t, truck, "reconnected", func(s State) bool { return s.Connected })
	if st.Info.SessionPresent {
		t.Fatal("a broker without persistence claims to have kept our session")
	}
	if err := truck.Publish(ctx, "fleet/trucks/truck-1/telemetry", []byte("y"), PublishOptions{QoS: 1}); err != nil {
		t.Fatalf("Publish after reconnect: %v", err)
	}
}

func TestFailoverToSecondBroker(t *testing.T) {
	p := newPKI(t)
	first := startMosquitto(t, p, brokerOpts{})
	second := startMosquitto(t, p, brokerOpts{})
	truck := newConn(t, clientConfig(t, p, p.valid(t, "truck-1", "truck-1", "truck", false), "truck-1",
		first.url(), second.url()))
	running(t, truck)
	st := waitState(t, truck, "connected", func(s State) bool { return s.Connected })
	if st.Info.Broker != first.url() {
		t.Fatalf("connected to %s, want the first broker %s", st.Info.Broker, first.url())
	}
	first.kill()
	st = waitState(t, truck, "connected", func(s State) bool { return s.Connected })
	if st.Info.Broker != second.url() {
		t.Fatalf("after the first broker died: connected to %s, want %s", st.Info.Broker, second.url())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := truck.Publish(ctx, "fleet/trucks/truck-1/telemetry", []byte("x"), PublishOptions{QoS: 1}); err != nil {
		t.Fatalf("Publish via the second broker: %v", err)
	}
}

func TestWillPublishedOnAbruptDropAndCleanStop(t *testing.T) {
	p := newPKI(t)
	b := startMosquitto(t, p, brokerOpts{})
	proxy := startProxy(t, b.addr())
	const status = "fleet/trucks/truck-1/status"

	in := make(inbox, 16)
	dcfg := clientConfig(t, p, p.valid(t, "dispatch-1", "dispatch-1", "dispatch", false), "dispatch-1", b.url())
	dcfg.Subscriptions = []Subscription{{Topic: "fleet/trucks/+/status", QoS: 1}}
	dcfg.OnPublish = in.handler
	disp := newConn(t, dcfg)
	running(t, disp)
	waitUp(t, disp)

	var truck *Conn
	tcfg := clientConfig(t, p, p.valid(t, "truck-1", "truck-1", "truck", false), "truck-1", "mqtts://"+proxy.Addr())
	// Refresh signs the will anew for each connection: the first connection's will says offline-1, the
	// second's offline-2.
	var refreshes atomic.Int32
	tcfg.Will = &Will{Topic: status, Payload: []byte("stale"), Retain: true, Refresh: func() ([]byte, error) {
		return []byte(fmt.Sprintf("offline-%d", refreshes.Add(1))), nil
	}}
	onlineErr := make(chan error, 4)
	tcfg.OnConnect = func(ctx context.Context, _ ConnectInfo) {
		onlineErr <- truck.Publish(ctx, status, []byte("online"), PublishOptions{QoS: 1, Retain: true})
	}
	truck = newConn(t, tcfg)
	stop := running(t, truck)
	in.expect(t, status, "online")
	if err := <-onlineErr; err != nil {
		t.Fatalf("online status: %v", err)
	}
	proxy.DropAll() // power cut, dead zone: no DISCONNECT
	in.expect(t, status, "offline-1")
	in.expect(t, status, "online") // reconnected, status restored from OnConnect
	stop()                         // clean stop: DISCONNECT with reason 0x04 publishes the will too
	in.expect(t, status, "offline-2")
}

func TestClockHookAcceptsCertificateValidInTheFuture(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	future := p.issue(t, "broker-future", "broker", "broker", true, now.AddDate(0, 6, 0), now.AddDate(2, 0, 0))
	b := startMosquitto(t, p, brokerOpts{serverCert: &future})
	id := p.valid(t, "truck-1", "truck-1", "truck", false)

	cfg := clientConfig(t, p, id, "truck-1", b.url())
	plain := newConn(t, cfg)
	stopPlain := running(t, plain)
	st := waitState(t, plain, "refused", func(s State) bool { return s.Err != nil })
	if !strings.Contains(st.Err.Error(), "not yet valid") && !strings.Contains(st.Err.Error(), "expired") {
		t.Fatalf("broker certificate valid only from %v accepted or refused for another reason: %v",
			future.serial, st.Err)
	}
	stopPlain()

	cfg.Clock = func() time.Time { return time.Now().AddDate(1, 0, 0) } // e.g. GPS time on a unit whose clock is behind
	withClock := newConn(t, cfg)
	running(t, withClock)
	waitUp(t, withClock)
}

func TestHandlerErrorIsNotAcknowledgedAndRedelivered(t *testing.T) {
	p := newPKI(t)
	b := startMosquitto(t, p, brokerOpts{})
	const orders = "fleet/trucks/truck-1/orders/o-1"

	calls := make(chan string, 8)
	tcfg := clientConfig(t, p, p.valid(t, "truck-1", "truck-1", "truck", false), "truck-1", b.url())
	tcfg.Subscriptions = []Subscription{{Topic: "fleet/trucks/truck-1/orders/#", QoS: 1}}
	n := 0
	tcfg.OnPublish = func(ctx context.Context, m Message) error {
		n++ // paho calls the handler from one goroutine
		calls <- string(m.Payload)
		if n == 1 {
			return errors.New("disk full") // not persisted: must not be acknowledged
		}
		return nil
	}
	truck := newConn(t, tcfg)
	running(t, truck)
	waitUp(t, truck)

	disp := newConn(t, clientConfig(t, p, p.valid(t, "dispatch-1", "dispatch-1", "dispatch", false), "dispatch-1", b.url()))
	running(t, disp)
	waitUp(t, disp)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := disp.Publish(ctx, orders, []byte("order-1"), PublishOptions{QoS: 1}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		select {
		case got := <-calls:
			if got != "order-1" {
				t.Fatalf("handler call %d got %q", i+1, got)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("handler called %d times, want 2 (the refused message redelivered)", i)
		}
	}
	// The redelivery can reach the handler a moment before the reconnect is counted.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		s := truck.Stats()
		if s.HandlerErrors == 1 && s.Connects >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want 1 handler error and a reconnect", s)
		}
	}
	select {
	case got := <-calls:
		t.Fatalf("acknowledged message delivered again: %q", got)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestCoalescingSavesWireBytes checks that one PUBLISH goes out as one TLS record: fewer bytes at the socket.
func TestCoalescingSavesWireBytes(t *testing.T) {
	p := newPKI(t)
	b := startMosquitto(t, p, brokerOpts{})
	id := p.valid(t, "truck-1", "truck-1", "truck", false)
	on := wireBytesPerPublish(t, p, b, id, false, 50)
	off := wireBytesPerPublish(t, p, b, id, true, 50)
	t.Logf("56-byte QoS 1 publish: %.1f bytes written at the socket coalesced, %.1f uncoalesced", on, off)
	if on >= off {
		t.Fatalf("coalesced publish costs %.1f bytes, uncoalesced %.1f", on, off)
	}
}

// wireBytesPerPublish publishes n 56-byte QoS 1 messages and returns the bytes written at the socket per message.
func wireBytesPerPublish(t testing.TB, p *testPKI, b *mosquitto, id identity, disable bool, n int) float64 {
	cfg := clientConfig(t, p, id, "truck-1", b.url())
	cfg.DisableCoalescing = disable
	cfg.Logger = nil
	c := newConn(t, cfg)
	stop := running(t, c)
	defer stop()
	waitUp(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	payload := []byte(strings.Repeat("f", 56))
	before := c.Stats().WireBytesWritten
	for i := 0; i < n; i++ {
		if err := c.Publish(ctx, "fleet/trucks/truck-1/telemetry", payload, PublishOptions{QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	return float64(c.Stats().WireBytesWritten-before) / float64(n)
}

func startProxy(t testing.TB, target string) *faultproxy.Proxy {
	t.Helper()
	pr, err := faultproxy.Start(faultproxy.Config{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := pr.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return pr
}

var _ = fmt.Sprint
