package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// publishAsync starts a QoS 1 publish and returns its result channel.
func publishAsync(c *Conn, topic, payload string) <-chan error {
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res <- c.Publish(ctx, topic, []byte(payload), PublishOptions{QoS: 1})
	}()
	return res
}

// TestInFlightPublishCompletesAfterReconnect: a publish sent into a dying link is sent again by paho on the
// next connection (the broker kept our session), and its PUBACK answers the original call.
func TestInFlightPublishCompletesAfterReconnect(t *testing.T) {
	p := newPKI(t)
	b := startMosquitto(t, p, brokerOpts{})
	proxy := startProxy(t, b.addr())
	in := make(inbox, 16)
	dcfg := clientConfig(t, p, p.valid(t, "dispatch-1", "dispatch-1", "dispatch", false), "dispatch-1", b.url())
	dcfg.Subscriptions = []Subscription{{Topic: "fleet/trucks/+/telemetry", QoS: 1}}
	dcfg.OnPublish = in.handler
	disp := newConn(t, dcfg)
	running(t, disp)
	waitUp(t, disp)

	truck := newConn(t, clientConfig(t, p, p.valid(t, "truck-1", "truck-1", "truck", false), "truck-1",
		"mqtts://"+proxy.Addr()))
	running(t, truck)
	waitState(t, truck, "connected", func(s State) bool { return s.Connected })

	proxy.SetBlackHole(true)
	res := publishAsync(truck, "fleet/trucks/truck-1/telemetry", "in-flight")
	select {
	case err := <-res:
		t.Fatalf("Publish returned %v while its PUBACK cannot arrive", err)
	case <-time.After(200 * time.Millisecond):
	}
	proxy.DropAll() // the held PUBLISH is lost with the connection
	proxy.SetBlackHole(false)
	st := waitState(t, truck, "reconnected", func(s State) bool { return s.Connected })
	if !st.Info.SessionPresent {
		t.Fatal("broker did not keep the session across a drop")
	}
	if err := <-res; err != nil {
		t.Fatalf("in-flight Publish: %v, want nil after paho resent it", err)
	}
	in.expect(t, "fleet/trucks/truck-1/telemetry", "in-flight")
}

// TestInFlightPublishFailsWhenBrokerLostSession: the broker restarted without persistence, so it will never
// acknowledge the in-flight publish; paho would forget it silently, Publish says ErrSessionLost.
func TestInFlightPublishFailsWhenBrokerLostSession(t *testing.T) {
	p := newPKI(t)
	b := startMosquitto(t, p, brokerOpts{})
	proxy := startProxy(t, b.addr())
	truck := newConn(t, clientConfig(t, p, p.valid(t, "truck-1", "truck-1", "truck", false), "truck-1",
		"mqtts://"+proxy.Addr()))
	running(t, truck)
	waitState(t, truck, "connected", func(s State) bool { return s.Connected })

	proxy.SetBlackHole(true)
	res := publishAsync(truck, "fleet/trucks/truck-1/telemetry", "lost")
	time.Sleep(200 * time.Millisecond)
	b.kill()
	b.start()
	proxy.DropAll()
	proxy.SetBlackHole(false)
	select {
	case err := <-res:
		if !errors.Is(err, ErrSessionLost) {
			t.Fatalf("in-flight Publish after the broker lost the session: %v, want ErrSessionLost", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("in-flight Publish still waiting after the broker lost the session")
	}
	waitUp(t, truck)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := truck.Publish(ctx, "fleet/trucks/truck-1/telemetry", []byte("again"), PublishOptions{QoS: 1}); err != nil {
		t.Fatalf("publishing again: %v", err)
	}
}

// TestBlackHoleDetectedByKeepAlive: no FIN, no RST, just silence: the keep-alive notices and names it.
func TestBlackHoleDetectedByKeepAlive(t *testing.T) {
	p := newPKI(t)
	b := startMosquitto(t, p, brokerOpts{})
	proxy := startProxy(t, b.addr())
	cfg := clientConfig(t, p, p.valid(t, "truck-1", "truck-1", "truck", false), "truck-1", "mqtts://"+proxy.Addr())
	cfg.KeepAlive = time.Second
	cfg.ConnectTimeout = 2 * time.Second
	truck := newConn(t, cfg)
	running(t, truck)
	waitState(t, truck, "connected", func(s State) bool { return s.Connected })
	proxy.SetBlackHole(true)
	st := waitState(t, truck, "disconnected", func(s State) bool { return !s.Connected && s.Err != nil })
	if !strings.Contains(st.Err.Error(), "keep-alive") {
		t.Fatalf("black hole reported as %v, want a keep-alive failure", st.Err)
	}
	proxy.SetBlackHole(false)
	waitState(t, truck, "reconnected", func(s State) bool { return s.Connected })
}

// TestSessionTakeoverEndsConnection: a second client with our certificate takes the session over. Mosquitto
// 2.0.11 closes the first connection without a DISCONNECT packet, so the state says the connection closed.
func TestSessionTakeoverEndsConnection(t *testing.T) {
	p := newPKI(t)
	b := startMosquitto(t, p, brokerOpts{})
	id := p.valid(t, "truck-1", "truck-1", "truck", false)
	cfg := clientConfig(t, p, id, "truck-1", b.url())
	cfg.BackoffMin, cfg.BackoffMax = 5*time.Second, 10*time.Second // do not fight back during the test
	first := newConn(t, cfg)
	running(t, first)
	waitState(t, first, "connected", func(s State) bool { return s.Connected })
	second := newConn(t, clientConfig(t, p, id, "truck-1", b.url()))
	stopSecond := running(t, second)
	waitUp(t, second)
	st := waitState(t, first, "taken over", func(s State) bool { return !s.Connected })
	if st.Err == nil {
		t.Fatal("takeover reported without a reason")
	}
	stopSecond()
}

// TestBrokerDisconnectReasonReported: a broker that sends DISCONNECT with a reason code (here a fake one
// that shuts down right after CONNACK, over plaintext allowed for development) has that code in the state.
func TestBrokerDisconnectReasonReported(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := packets.ReadPacket(c); err == nil { // CONNECT
				// CONNACK success, then DISCONNECT 0x8B "server shutting down".
				_, _ = c.Write([]byte{0x20, 0x03, 0x00, 0x00, 0x00, 0xe0, 0x02, 0x8b, 0x00})
				_, _ = io.Copy(io.Discard, c)
			}
			_ = c.Close()
		}
	}()
	cfg := Config{Brokers: []string{"mqtt://" + ln.Addr().String()}, AllowPlaintext: true, ClientID: "dev-1",
		BackoffMin: time.Second, BackoffMax: 2 * time.Second, Logger: testLogger(t, "dev-1")}
	c := newConn(t, cfg)
	stop := running(t, c)
	st := waitState(t, c, "disconnected", func(s State) bool { return !s.Connected && s.Err != nil })
	if !strings.Contains(st.Err.Error(), "139") || !strings.Contains(st.Err.Error(), "server shutting down") {
		t.Fatalf("DISCONNECT 0x8B reported as %v", st.Err)
	}
	stop()
}

// TestPublishOverMaximumPacketSizeRefusedLocally: the broker announces its maximum packet size; a larger
// publish is refused before it is sent (sent, it would make the broker drop us, and paho resend it forever).
func TestPublishOverMaximumPacketSizeRefusedLocally(t *testing.T) {
	p := newPKI(t)
	b := startMosquitto(t, p, brokerOpts{maxPacketSize: 1024})
	truck := newConn(t, clientConfig(t, p, p.valid(t, "truck-1", "truck-1", "truck", false), "truck-1", b.url()))
	running(t, truck)
	waitUp(t, truck)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	topic := "fleet/trucks/truck-1/telemetry"
	if err := truck.Publish(ctx, topic, make([]byte, 2000), PublishOptions{QoS: 1}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("2000-byte publish to a 1024-byte broker: %v, want ErrTooLarge", err)
	}
	fits := 0
	for publishSize(topic, fits+1, 1) <= 1024 {
		fits++
	}
	if err := truck.Publish(ctx, topic, make([]byte, fits), PublishOptions{QoS: 1}); err != nil {
		t.Fatalf("publish of exactly the maximum packet size: %v", err)
	}
	if err := truck.Publish(ctx, topic, make([]byte, fits+1), PublishOptions{QoS: 1}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("one byte over: %v", err)
	}
	if !truck.Connected() || truck.Stats().Connects != 1 {
		t.Fatalf("connection did not survive: %+v", truck.Stats())
	}
}
