package transport

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPublishRTT100ms: QoS 1 publishes of 56 bytes through the fault proxy with a 100 ms round trip (a
// cellular link), by 1 and by 64 concurrent publishers, with Mosquitto's default window (max_inflight_messages
// 20) and a window of 1000. One publisher gets one message per round trip; concurrency fills the window.
func BenchmarkPublishRTT100ms(b *testing.B) {
	for _, window := range []int{20, 1000} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) {
			p := newPKI(b)
			br := startMosquitto(b, p, brokerOpts{maxInflight: window})
			proxy := startProxy(b, br.addr())
			proxy.SetLatency(50 * time.Millisecond)
			cfg := clientConfig(b, p, p.valid(b, "truck-1", "truck-1", "truck", false), "truck-1",
				"mqtts://"+proxy.Addr())
			cfg.Logger = nil
			c := newConn(b, cfg)
			running(b, c)
			waitUp(b, c)
			for _, publishers := range []int{1, 64} {
				b.Run(fmt.Sprintf("publishers=%d", publishers), func(b *testing.B) {
					benchPublish(b, c, publishers)
				})
			}
		})
	}
}

// publishesPerOp is how many messages one benchmark iteration publishes per publisher (at least 30), so that
// `make bench` (-benchtime 1x) measures a rate, not one round trip.
const publishesPerOp = 5

func benchPublish(b *testing.B, c *Conn, publishers int) {
	payload := []byte(strings.Repeat("f", 56))
	total := int64(b.N) * int64(max(30, publishesPerOp*publishers))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < publishers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= total {
				if err := c.Publish(ctx, "fleet/trucks/truck-1/telemetry", payload, PublishOptions{QoS: 1}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "msgs/s")
}

// BenchmarkWireBytesPerPublish: bytes written at the TCP socket (TLS 1.3 records included) per 56-byte QoS 1
// publish on topic fleet/trucks/truck-1/telemetry, with paho's three writes per packet and coalesced into one.
func BenchmarkWireBytesPerPublish(b *testing.B) {
	p := newPKI(b)
	br := startMosquitto(b, p, brokerOpts{})
	id := p.valid(b, "truck-1", "truck-1", "truck", false)
	for _, mode := range []struct {
		name    string
		disable bool
	}{{"coalesced", false}, {"uncoalesced", true}} {
		b.Run(mode.name, func(b *testing.B) {
			b.ReportMetric(wireBytesPerPublish(b, p, br, id, mode.disable, 200*b.N), "wire-B/publish") // 200 per op: 1x still averages
		})
	}
}
