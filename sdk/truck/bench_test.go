package truck

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/autopaho/queue"
	"github.com/eclipse/paho.golang/autopaho/queue/file"
	"github.com/eclipse/paho.golang/autopaho/queue/memory"
	"github.com/eclipse/paho.golang/paho"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/brokerconf"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/sdktest/faultproxy"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/store"
)

// Benchmarks of the uploader on the wire, against real Mosquitto with mutual TLS. They run only with -bench:
//
//	go test -run '^$' -bench . -benchtime 1x ./sdk/truck/

// BenchmarkWireBytesPerFix: bytes at the truck's TCP socket (TLS records, MQTT headers, PUBACKs, envelope and
// signature) per fix of 1 Hz city driving, sent one fix per message ("live") and in 60-fix batches, through
// real Mosquitto. The connection's handshake and the certificate carried by its first telemetry message are
// left out (a warm-up fix goes first): they are paid once per connection, not per fix.
func BenchmarkWireBytesPerFix(b *testing.B) {
	br := sdktest.StartMosquitto(b, sdktest.Options{Dispatch: []string{"office"}})
	// The office verifies, "commits" and receipts: the truck's store drains only on receipts, and the
	// receipts' bytes (down, with their PUBACKs up) are counted with the telemetry's.
	officeCl := br.ClientFiles("office")
	octx, ocancel := context.WithCancel(context.Background())
	var owg sync.WaitGroup
	defer owg.Wait()
	defer ocancel()
	cons := newConsumer()
	office := startLink(b, octx, &owg, br.Addr, officeCl, transport.Config{Subscriptions: fleetSubscriptions(),
		OnPublish: cons.handle(fleetVerifier(b, officeCl))})
	wctx, wcancel := context.WithTimeout(octx, 20*time.Second)
	defer wcancel()
	if err := office.Wait(wctx); err != nil {
		b.Fatalf("office never connected: %v", err)
	}
	sendReceipts(b, octx, &owg, cons, office, officeCl)
	for _, mode := range []struct {
		name         string
		batch, fixes int
		each         bool    // wait for each batch's receipt: one receipt per batch
		truck        string  // the truck's: as long as a real fleet's names, which every topic carries
		max          float64 // wire-B/fix the issue allows (0: no bound)
	}{{"live-1fix", 1, 600, false, "truck-0101", 0}, {"batch-60fixes", 60, 6000, false, "truck-0102", 12},
		{"batch-60fixes-receipt-each", 60, 1200, true, "truck-0103", 0}} {
		b.Run(mode.name, func(b *testing.B) {
			cl := br.Truck(mode.truck)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			defer wg.Wait()
			defer cancel()
			st := openStore(b)
			var ref atomic.Pointer[Uploader]
			link := startLink(b, ctx, &wg, br.Addr, cl, receiptsFor(b, cl, &ref))
			up, err := NewUploader(UploaderConfig{Store: st, Link: link, Signer: signerFor(b, cl, st), BatchFixes: mode.batch, BacklogBatchFixes: mode.batch})
			if err != nil {
				b.Fatal(err)
			}
			ref.Store(up)
			wg.Add(1)
			go func() {
				defer wg.Done()
				up.Run(ctx)
			}()
			drain := func(fixes []sdk.Fix) {
				entries := make([]store.Entry, len(fixes))
				for i, f := range fixes {
					if entries[i], err = EncodeFix(f); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := st.Append(ctx, entries...); err != nil {
					b.Fatal(err)
				}
				waitDrained(b, st, time.Minute)
			}
			all := driveFixes(1+mode.fixes*b.N, 3)
			drain(all[:1]) // warm-up: the connection's first telemetry carries the certificate
			before, msgs := link.Stats(), up.Stats().Messages
			b.ResetTimer()
			for i := range b.N {
				part := all[1+i*mode.fixes : 1+(i+1)*mode.fixes]
				if !mode.each {
					drain(part)
					continue
				}
				for j := 0; j < len(part); j += mode.batch {
					drain(part[j : j+mode.batch])
				}
			}
			b.StopTimer()
			for up.Stats().Fixes < uint64(1+mode.fixes*b.N) { // the counters follow the store's ack
				time.Sleep(time.Millisecond)
			}
			after := link.Stats()
			n := float64(mode.fixes * b.N)
			sent, recvd := float64(after.WireBytesWritten-before.WireBytesWritten), float64(after.WireBytesRead-before.WireBytesRead)
			b.ReportMetric((sent+recvd)/n, "wire-B/fix")
			if mode.max > 0 && (sent+recvd)/n > mode.max {
				b.Errorf("%.1f wire bytes per fix up and down, over the %.0f allowed", (sent+recvd)/n, mode.max)
			}
			b.ReportMetric(sent/n, "up-B/fix")
			b.ReportMetric(recvd/n, "down-B/fix")
			b.ReportMetric(n/float64(up.Stats().Messages-msgs), "fixes/msg")
			b.ReportMetric(float64(up.Stats().Receipts)/float64(b.N), "receipts/op")
		})
	}
}

func waitDrained(b *testing.B, st *store.Store, limit time.Duration) {
	b.Helper()
	deadline := time.Now().Add(limit)
	for !storeEmpty(st) {
		if time.Now().After(deadline) {
			b.Fatalf("store not drained after %v: %+v", limit, st.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

// benchSerial makes truck names unique when a benchmark body runs more than once.
var benchSerial atomic.Int64

// Backlog of a day at 1 Hz, and the baselines' smaller backlog.
const (
	dayFixes, dayEvents = 86_400, 500
	baselineMessages    = 2_000
	baselineLimit       = 60 * time.Second
)

// BenchmarkBacklogDrain24h: a truck comes back after a day out of coverage with 86,400 fixes and 500
// delivery events in its store and drains them to local Mosquitto over mutual TLS, through the fault proxy
// adding a 100 ms round trip, with Mosquitto's default max_inflight_messages (20) and brokerconf's (1000).
// Reported: seconds until the store is empty (every record PUBACKed), messages/s, and at the verifying
// consumer, records lost and records out of order per lane. In the same run, the baseline: autopaho
// PublishViaQueue with its memory queue and its file queue, one fix per message, on the same link and
// broker, with a 2,000-message backlog (a full day would take far too long); its rate and the time a full
// backlog would take at that rate (86,900 messages) are reported.
func BenchmarkBacklogDrain24h(b *testing.B) {
	entries := backlogEntries(b, dayFixes, dayEvents)
	for _, window := range []int{20, brokerconf.DefaultMaxInflight} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) {
			br := sdktest.StartMosquitto(b, sdktest.Options{Dispatch: []string{"office"}, Config: brokerconf.Config{MaxInflight: window}})
			proxy, err := faultproxy.Start(faultproxy.Config{Target: br.Addr})
			if err != nil {
				b.Fatal(err)
			}
			defer proxy.Close(context.Background())
			proxy.SetLatency(50 * time.Millisecond)

			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			defer wg.Wait()
			defer cancel()
			officeCl := br.ClientFiles("office")
			cons, base := newConsumer(), newBaselineConsumer()
			v := fleetVerifier(b, officeCl)
			verify := cons.handle(v)
			office := startLink(b, ctx, &wg, br.Addr, officeCl, transport.Config{Subscriptions: fleetSubscriptions(),
				OnPublish: func(ctx context.Context, m transport.Message) error {
					if strings.Contains(m.Topic, "/truck-base-") {
						return base.handle(m)
					}
					return verify(ctx, m)
				}})
			wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
			defer wcancel()
			if err := office.Wait(wctx); err != nil {
				b.Fatalf("consumer never connected: %v", err)
			}
			sendReceipts(b, ctx, &wg, cons, office, officeCl)

			configs := []struct {
				name string
				cfg  UploaderConfig
			}{{"waybill-defaults", UploaderConfig{}}}
			if window > 20 {
				configs = append(configs, struct {
					name string
					cfg  UploaderConfig
				}{"waybill-inflight=512", UploaderConfig{MaxInFlight: 512}})
			} else {
				configs = append(configs, struct {
					name string
					cfg  UploaderConfig
				}{"waybill-batch=240", UploaderConfig{BatchFixes: 240}})
			}
			for i, c := range configs {
				b.Run(c.name, func(b *testing.B) {
					for range b.N {
						d := benchDrainDay(b, br, proxy, cons, fmt.Sprintf("truck-day-%d-%d-%d", window, i, benchSerial.Add(1)), entries, c.cfg)
						// The bound: the 24 h backlog drains in at most 10 s with Mosquitto's default window.
						if window == 20 && i == 0 && d > 10*time.Second {
							b.Errorf("the 24 h backlog took %v to drain with a window of 20, over 10 s", d.Round(time.Millisecond))
						}
					}
				})
			}
			for _, q := range []string{"memory", "file"} {
				b.Run("autopaho-"+q+"-queue", func(b *testing.B) {
					for range b.N {
						benchAutopaho(b, br, proxy, base, q)
					}
				})
			}
		})
	}
}

// benchDrainDay drains a day's backlog from a fresh store as truck name and checks that the consumer got
// every record.
func benchDrainDay(b *testing.B, br *sdktest.Broker, proxy *faultproxy.Proxy, cons *consumer, name string, entries []store.Entry, cfg UploaderConfig) time.Duration {
	b.StopTimer()
	cl := br.Truck(name)
	st := openStore(b)
	if _, err := st.Append(context.Background(), entries...); err != nil {
		b.Fatal(err)
	}
	cons.mu.Lock()
	arrivalsBefore, fixesBefore, eventsBefore := len(cons.arrivals), len(cons.fixes), len(cons.events)
	cons.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	cfg.Store, cfg.Signer = st, signerFor(b, cl, st)
	b.StartTimer()
	start := time.Now()
	var ref atomic.Pointer[Uploader]
	cfg.Link = startLink(b, ctx, &wg, proxy.Addr(), cl, receiptsFor(b, cl, &ref))
	up, err := NewUploader(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ref.Store(up)
	wg.Add(1)
	go func() {
		defer wg.Done()
		up.Run(ctx)
	}()
	waitDrained(b, st, 5*time.Minute)
	drained := time.Since(start)
	b.StopTimer()
	// The consumer verifies every message on one goroutine; it may still be catching up.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		fixes, events := cons.counts()
		if fixes-fixesBefore == dayFixes && events-eventsBefore == dayEvents {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("consumer has %d of %d fixes and %d of %d events: LOST; rejected %d",
				fixes-fixesBefore, dayFixes, events-eventsBefore, dayEvents, cons.rejected)
		}
		time.Sleep(10 * time.Millisecond)
	}
	delivered := time.Since(start)
	cons.mu.Lock()
	arrivals := append([]arrival(nil), cons.arrivals[arrivalsBefore:]...)
	rejected := cons.rejected
	cons.mu.Unlock()
	if rejected != 0 {
		b.Fatalf("the consumer rejected %d messages", rejected)
	}
	us := up.Stats()
	fixOrder, eventOrder := laneOrder(arrivals, false), laneOrder(arrivals, true)
	b.ReportMetric(drained.Seconds(), "s/backlog")
	b.ReportMetric(delivered.Seconds(), "s-to-consumer")
	b.ReportMetric(float64(us.Messages)/drained.Seconds(), "msgs/s")
	b.ReportMetric(float64(dayFixes+dayEvents)/drained.Seconds(), "records/s")
	b.ReportMetric(0, "lost")
	b.ReportMetric(float64(fixOrder.Late), "fixes-late")
	b.ReportMetric(float64(fixOrder.Displaced), "fixes-displaced")
	b.ReportMetric(float64(eventOrder.Late), "events-late")
	b.ReportMetric(float64(eventOrder.Displaced), "events-displaced")
	b.Logf("%s: %d messages, store empty after %v, consumer complete after %v; uploader %+v; fixes %v; events %v; wire %+v",
		name, us.Messages, drained.Round(time.Millisecond), delivered.Round(time.Millisecond), us, fixOrder, eventOrder, cfg.Link.(*transport.Conn).Stats())
	return drained
}

// baselineConsumer counts the one-fix messages of the autopaho baselines by record seq, without verifying
// them (their envelope sequence numbers arrive too far out of order for a replay window).
type baselineConsumer struct {
	mu   sync.Mutex
	seen map[string]bool // "truck/seq"
	seqs map[string][]uint64
	dups int
}

func newBaselineConsumer() *baselineConsumer {
	return &baselineConsumer{seen: map[string]bool{}, seqs: map[string][]uint64{}}
}

func (c *baselineConsumer) handle(m transport.Message) error {
	msg, err := sdk.DecodeMessage(m.Payload)
	if err != nil || msg.Telemetry == nil || len(msg.Telemetry.Fixes) != 1 {
		return nil
	}
	seq := msg.Telemetry.Fixes[0].Seq
	c.mu.Lock()
	defer c.mu.Unlock()
	k := fmt.Sprintf("%s/%d", msg.Sender, seq)
	if c.seen[k] {
		c.dups++
		return nil
	}
	c.seen[k] = true
	c.seqs[msg.Sender] = append(c.seqs[msg.Sender], seq)
	return nil
}

func (c *baselineConsumer) count(truck string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seqs[truck])
}

// benchAutopaho drains a backlog of baselineMessages one-fix messages with autopaho's PublishViaQueue and
// the named queue ("memory" or "file"), filled before the connection starts as a day offline would leave it.
func benchAutopaho(b *testing.B, br *sdktest.Broker, proxy *faultproxy.Proxy, base *baselineConsumer, kind string) {
	b.StopTimer()
	name := fmt.Sprintf("truck-base-%s-%d", kind, benchSerial.Add(1))
	cl := br.Truck(name)
	st := openStore(b) // only for the signer's sequence numbers
	signer := signerFor(b, cl, st)
	topic, err := sdk.Topics{}.Telemetry(name)
	if err != nil {
		b.Fatal(err)
	}
	var q queue.Queue
	switch kind {
	case "memory":
		q = memory.New()
	case "file":
		if q, err = file.New(b.TempDir(), "queue", ".msg"); err != nil {
			b.Fatal(err)
		}
	}
	epoch := sdk.EpochOf(st.Epoch())
	for i, f := range driveFixes(baselineMessages, 5) {
		payload, err := signer.SignTelemetry(&sdk.Telemetry{Epoch: epoch, Fixes: []sdk.TelemetryFix{{Seq: uint64(i + 1), Fix: f}}})
		if err != nil {
			b.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := (&autopaho.QueuePublish{Publish: &paho.Publish{QoS: 1, Topic: topic, Payload: payload}}).Packet().WriteTo(&buf); err != nil {
			b.Fatal(err)
		}
		if err := q.Enqueue(&buf); err != nil {
			b.Fatal(err)
		}
	}
	u, err := url.Parse("mqtts://" + proxy.Addr())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.StartTimer()
	start := time.Now()
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls:            []*url.URL{u},
		TlsCfg:                cl.TLSConfig(b),
		KeepAlive:             60,
		SessionExpiryInterval: 3600,
		ReconnectBackoff:      autopaho.NewConstantBackoff(100 * time.Millisecond),
		Queue:                 q,
		ClientConfig:          paho.ClientConfig{ClientID: name},
	})
	if err != nil {
		b.Fatal(err)
	}
	got := 0
	for got < baselineMessages && time.Since(start) < baselineLimit {
		time.Sleep(10 * time.Millisecond)
		got = base.count(name)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	<-cm.Done()
	base.mu.Lock()
	order := seqOrder(base.seqs[name], nil)
	base.mu.Unlock()
	rate := float64(got) / elapsed.Seconds()
	b.ReportMetric(float64(got), "delivered")
	b.ReportMetric(rate, "msgs/s")
	b.ReportMetric(float64(dayFixes+dayEvents)/rate, "s/backlog-extrapolated")
	b.ReportMetric(float64(order.Late), "late")
	b.ReportMetric(float64(order.Displaced), "displaced")
	b.Logf("%s: %d of %d messages delivered in %v (limit %v): %.0f msgs/s; a day's %d records one per message would take %.0f s; order %v",
		name, got, baselineMessages, elapsed.Round(time.Millisecond), baselineLimit, rate, dayFixes+dayEvents, float64(dayFixes+dayEvents)/rate, order)
}
