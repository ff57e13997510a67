package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch/archive"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// testTruck is a minimal truck for command tests: it verifies orders and answers each new revision with a
// signed received event, publishes its online status, and can publish telemetry. Only sdk and transport.
type testTruck struct {
	conn   *transport.Conn
	signer *sdk.Signer
	topics sdk.Topics
	events chan *sdk.Event
	mu     sync.Mutex
	seen   map[string]uint32
	closed map[string]bool // orders the driver delivered: a cancellation of one is answered with a conflict
	seq    uint64
}

// deliver has the driver deliver order id: a signed delivered event goes out.
func (tt *testTruck) deliver(id string, rev uint32) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.closed[id] = true
	tt.seq++
	tt.events <- &sdk.Event{Kind: sdk.EventDelivered, Epoch: sdk.Epoch{7}, RecordSeq: tt.seq, Time: time.Now(),
		OrderID: id, Revision: rev, Via: sdk.ViaButton}
}

func startTestTruck(t *testing.T, b *sdktest.Broker, cl sdktest.Client) *testTruck {
	t.Helper()
	cert, key := cl.CertKey(t)
	signer, err := sdk.NewSigner(sdk.SignerConfig{Certificate: cert, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := pki.LoadCertificates(cl.CAFile)
	v, err := sdk.NewVerifier(sdk.VerifierConfig{CA: ca})
	if err != nil {
		t.Fatal(err)
	}
	tt := &testTruck{signer: signer, events: make(chan *sdk.Event, 100), seen: map[string]uint32{}, closed: map[string]bool{}}
	orders, _ := tt.topics.TruckOrdersFilter(cl.Name)
	status, _ := tt.topics.Status(cl.Name)
	tt.conn, err = transport.New(transport.Config{
		Brokers: []string{"mqtts://" + b.Addr}, ClientID: cl.Name, CertFile: cl.CertFile, KeyFile: cl.KeyFile,
		CAFile: cl.CAFile, BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		Subscriptions: []transport.Subscription{{Topic: orders, QoS: 1}},
		OnPublish: func(ctx context.Context, m transport.Message) error {
			msg, err := v.Verify(ctx, m.Topic, m.Payload)
			if err != nil && !errors.Is(err, sdk.ReasonDuplicate) {
				return nil
			}
			tt.mu.Lock()
			defer tt.mu.Unlock()
			if tt.seen[msg.Order.ID] >= msg.Order.Revision {
				return nil
			}
			tt.seen[msg.Order.ID] = msg.Order.Revision
			tt.seq++
			tt.events <- &sdk.Event{Kind: sdk.EventReceived, Epoch: sdk.Epoch{7}, RecordSeq: tt.seq, Time: time.Now(),
				OrderID: msg.Order.ID, Revision: msg.Order.Revision, OrderHash: msg.BodyHash(),
				Conflict: msg.Order.Status == sdk.OrderCancelled && tt.closed[msg.Order.ID]}
			return nil
		},
		OnConnect: func(ctx context.Context, _ transport.ConnectInfo) {
			p, _ := signer.SignStatus(&sdk.Status{State: sdk.StateOnline, Time: time.Now()})
			_ = tt.conn.Publish(ctx, status, p, transport.PublishOptions{QoS: 1, Retain: true})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = tt.conn.Run(ctx) }()
	go func() {
		defer wg.Done()
		topic, _ := tt.topics.Events(cl.Name)
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-tt.events:
				p, err := signer.SignEvent(ev)
				if err != nil {
					t.Error(err)
					return
				}
				for ctx.Err() == nil && tt.conn.Publish(ctx, topic, p, transport.PublishOptions{QoS: 1}) != nil {
					sleep(ctx, 50*time.Millisecond)
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := tt.conn.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	return tt
}

// TestOrderAndWatchCommands runs the commands in-process against real Mosquitto: an order for an offline
// truck is stored and sent but not confirmed; `watch` shows the truck coming online, sends the order again
// and shows its received event; `order create` while `watch` runs leaves the sending to watch and reports
// the confirmation; a forged telemetry message shows up as refused; `order list` shows the states.
func TestOrderAndWatchCommands(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	b.Truck("truck-1")
	data := filepath.Join(t.TempDir(), "dispatch")
	common := []string{"--online-grace", "200ms", "--data", data, "--pki", b.PKI.Dir(), "--broker", "mqtts://" + b.Addr}
	order := func(args ...string) []string {
		return append(append([]string{"order", "create", "--lat", "51.5", "--lon", "-0.12", "--truck", "truck-1"}, common...), args...)
	}

	code, out, errOut := runCmd(t, order("--id", "o-1", "--recipient", "A. Jones", "--wait", "2s")...)
	if code != 0 || !strings.Contains(out, "not confirmed by truck-1 yet") {
		t.Fatalf("order for an offline truck: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, _, errOut := runCmd(t, order("--id", "o-1", "--recipient", "B. Other")...); code != 1 || !strings.Contains(errOut, "exists") {
		t.Fatalf("conflicting create: exit %d: %s", code, errOut)
	}
	for _, args := range [][]string{
		{"order", "create", "--id", "x"},
		{"order", "nope"},
		append([]string{"order", "create", "--truck", "truck-1", "--id", "a/b", "--lat", "1", "--lon", "1"}, common...),
		{"watch", "--data", data},
	} {
		if code, _, _ := runCmd(t, args...); code == 0 {
			t.Errorf("%v succeeded", args)
		}
	}

	// watch, then the truck comes online.
	ctx, cancel := context.WithCancel(context.Background())
	wout, werr := &sdktest.SyncBuffer{}, &sdktest.SyncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, streams{strings.NewReader(""), wout, werr}, append([]string{"watch", "--json"}, common...))
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("watch exit %d: %s", code, werr.String())
		}
	}()
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; watch printed:\n%s\n%s", what, wout.String(), werr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitUntil("watch connected", func() bool { return strings.Contains(wout.String(), `"connected":true`) })
	tt := startTestTruck(t, b, b.ClientFiles("truck-1"))
	waitUntil("the truck's status and its receipt of o-1", func() bool {
		s := wout.String()
		return strings.Contains(s, `"type":"status"`) && strings.Contains(s, `"order_id":"o-1"`)
	})

	// An order command while watch runs: watch sends it, the command reports the confirmation.
	code, out, errOut = runCmd(t, order("--id", "o-2", "--wait", "20s")...)
	if code != 0 || !strings.Contains(out, "another waybill process") || !strings.Contains(out, "confirmed: truck-1 received revision 1") {
		t.Fatalf("order while watch runs: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t, append([]string{"order", "cancel", "--truck", "truck-1", "--id", "o-1", "--reason", "moved"}, common...)...)
	if code != 0 || !strings.Contains(out, "confirmed: truck-1 received revision 2") {
		t.Fatalf("cancel: exit %d\n%s\n%s", code, out, errOut)
	}

	// Telemetry, and a forged copy (one bit flipped).
	topic, _ := tt.topics.Telemetry("truck-1")
	p, err := tt.signer.SignTelemetry(&sdk.Telemetry{Epoch: sdk.Epoch{7}, Fixes: []sdk.TelemetryFix{{Seq: 100,
		Fix: sdk.Fix{Time: time.Now().UTC(), Lat: 51.5, Lon: -0.12, Mode: 3}}}})
	if err != nil {
		t.Fatal(err)
	}
	forged := append([]byte(nil), p...)
	forged[len(forged)-1] ^= 1
	for _, m := range [][]byte{p, p, forged} {
		if err := tt.conn.Publish(ctx, topic, m, transport.PublishOptions{QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil("the fix and the refusal", func() bool {
		s := wout.String()
		return strings.Contains(s, `"type":"fix"`) && strings.Contains(s, `"reason":"bad_signature"`)
	})
	if n := strings.Count(wout.String(), `"type":"fix"`); n != 1 {
		t.Errorf("the fix was shown %d times", n)
	}
	for _, line := range strings.Split(strings.TrimSpace(wout.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("watch --json printed a line that is not JSON: %s", line)
		}
	}

	code, out, errOut = runCmd(t, "order", "list", "--data", data)
	if code != 0 || !regexpMatch(`truck-1 +o-1 +2 +cancelled +rev 2`, out) || !regexpMatch(`truck-1 +o-2 +1 +received +rev 1`, out) {
		t.Fatalf("order list: exit %d\n%s\n%s", code, out, errOut)
	}
}

func regexpMatch(pattern, s string) bool {
	return regexp.MustCompile(pattern).MatchString(s)
}

// TestWatchKeepsSession (g): `waybill watch` and `waybill order` share one persistent session: telemetry and
// an event published while neither runs arrive at the next watch, are committed to DATA/archive.db and
// receipted; an order command in between drains the queue into the same archive.
func TestWatchKeepsSession(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	b.Truck("truck-1")
	data := filepath.Join(t.TempDir(), "dispatch")
	common := []string{"--data", data, "--pki", b.PKI.Dir(), "--broker", "mqtts://" + b.Addr}
	watch := func(until func(out string) bool) (string, string) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		wout, werr := &sdktest.SyncBuffer{}, &sdktest.SyncBuffer{}
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, streams{strings.NewReader(""), wout, werr}, append([]string{"watch", "--json"}, common...))
		}()
		deadline := time.Now().Add(30 * time.Second)
		for !until(wout.String()) {
			if time.Now().After(deadline) {
				cancel()
				<-done
				t.Fatalf("timed out; watch printed:\n%s\n%s", wout.String(), werr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		if code := <-done; code != 0 {
			t.Fatalf("watch exit %d: %s", code, werr.String())
		}
		return wout.String(), werr.String()
	}
	// The first watch makes the session.
	watch(func(out string) bool { return strings.Contains(out, `"connected":true`) })

	tt := startTestTruck(t, b, b.ClientFiles("truck-1"))
	ctx := context.Background()
	pub := func(kind sdk.Kind, p []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		topic, _ := tt.topics.Build(sdk.Topic{Truck: "truck-1", Kind: kind})
		if err := tt.conn.Publish(ctx, topic, p, transport.PublishOptions{QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	epoch := sdk.Epoch{9}
	fix := func(q uint64) sdk.TelemetryFix {
		return sdk.TelemetryFix{Seq: q, Fix: sdk.Fix{Time: time.Now().UTC().Add(-time.Minute), Lat: 51.5, Lon: -0.12, Mode: 3}}
	}
	p, err := tt.signer.SignTelemetry(&sdk.Telemetry{Epoch: epoch, Fixes: []sdk.TelemetryFix{fix(1), fix(2)}})
	pub(sdk.KindTelemetry, p, err)
	p, err = tt.signer.SignEvent(&sdk.Event{Kind: sdk.EventDelivered, Epoch: epoch, RecordSeq: 3, Time: time.Now(),
		OrderID: "o-1", Revision: 1, Via: sdk.ViaButton})
	pub(sdk.KindEvents, p, err)

	out, errOut := watch(func(out string) bool {
		return strings.Count(out, `"type":"fix"`) == 2 && strings.Contains(out, `"type":"event"`)
	})
	if strings.Contains(errOut, " 0 receipts sent") {
		t.Errorf("no receipts sent: %s", errOut)
	}

	// While nothing runs, another fix; an order command (for an offline truck) drains it into the archive.
	p, err = tt.signer.SignTelemetry(&sdk.Telemetry{Epoch: epoch, Fixes: []sdk.TelemetryFix{fix(4)}})
	pub(sdk.KindTelemetry, p, err)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, oout, oerr := runCmd(t, append([]string{"order", "create", "--lat", "1", "--lon", "1", "--truck", "truck-2",
			"--id", "o-9", "--wait", "1s"}, common...)...)
		if code != 0 {
			t.Fatalf("order: exit %d\n%s\n%s", code, oout, oerr)
		}
		a, err := archive.Open(filepath.Join(data, archive.File), archive.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		c, err := a.Counts("truck-1")
		a.Close()
		if err != nil {
			t.Fatal(err)
		}
		if c.Fixes == 3 && c.Events == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("archive holds %+v, want 3 fixes and 1 event; watch printed:\n%s", c, out)
		}
	}
}

// TestWatchPassive: beside a recording process, a passive watch shows the fleet but stores, receipts and
// re-sends nothing: the truck's records wait for the office's receipt, not the viewer's, and no archive
// or outbox appears in its --data. It refuses to join a share group (it would take messages away from
// the processes that record them).
func TestWatchPassive(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office", "viewer"}})
	b.Truck("truck-1")
	data := filepath.Join(t.TempDir(), "viewer")
	viewer := b.ClientFiles("viewer")
	common := []string{"watch", "--json", "--passive", "--data", data, "--cert", viewer.CertFile, "--key", viewer.KeyFile,
		"--ca", b.PKI.CAPath(), "--broker", "mqtts://" + b.Addr}
	if code, _, errOut := runCmd(t, append(common, "--share", "dispatch-0123456789abcdef01234567")...); code != 2 ||
		!strings.Contains(errOut, "--passive with --share") {
		t.Errorf("--passive --share: exit %d: %s", code, errOut)
	}

	ctx, cancel := context.WithCancel(context.Background())
	wout, werr := &sdktest.SyncBuffer{}, &sdktest.SyncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, streams{strings.NewReader(""), wout, werr}, common) }()
	sdktest.WaitFor(t, 30*time.Second, "the passive watch connected", func() bool {
		return strings.Contains(wout.String(), `"connected":true`)
	})

	// The truck: its own connection, subscribed to its receipts.
	cl := b.ClientFiles("truck-1")
	var topics sdk.Topics
	rtopic, _ := topics.Receipts("truck-1")
	var receipts atomic.Int32
	conn, err := transport.New(transport.Config{Brokers: []string{"mqtts://" + b.Addr}, ClientID: cl.Name,
		CertFile: cl.CertFile, KeyFile: cl.KeyFile, CAFile: cl.CAFile, Subscriptions: []transport.Subscription{{Topic: rtopic, QoS: 1}},
		OnPublish: func(context.Context, transport.Message) error { receipts.Add(1); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	tctx, tcancel := context.WithCancel(context.Background())
	tdone := make(chan struct{})
	go func() { defer close(tdone); _ = conn.Run(tctx) }()
	defer func() { tcancel(); <-tdone }()
	if err := conn.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := cl.Signer(t).SignEvent(&sdk.Event{Kind: sdk.EventDelivered, Epoch: sdk.Epoch{7}, RecordSeq: 1, Time: time.Now(),
		OrderID: "o-1", Revision: 1, Via: sdk.ViaButton})
	if err != nil {
		t.Fatal(err)
	}
	topic, _ := topics.Events("truck-1")
	if err := conn.Publish(ctx, topic, p, transport.PublishOptions{QoS: 1}); err != nil {
		t.Fatal(err)
	}
	sdktest.WaitFor(t, 30*time.Second, "the event shown", func() bool { return strings.Contains(wout.String(), `"type":"event"`) })
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("watch exit %d: %s", code, werr.String())
	}
	// A recording watch sends what it gathered as it stops; it would reach the truck by now.
	time.Sleep(2 * time.Second)
	if n := receipts.Load(); n != 0 {
		t.Errorf("the truck got %d receipts from a passive watch", n)
	}
	if !strings.Contains(werr.String(), "nothing stored or receipted (passive)") {
		t.Errorf("summary: %s", werr.String())
	}
	for _, f := range []string{archiveFile, outboxFile, senderLock} {
		if _, err := os.Stat(filepath.Join(data, f)); err == nil {
			t.Errorf("a passive watch made %s", f)
		}
	}
}
