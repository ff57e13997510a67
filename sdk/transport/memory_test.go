package transport

import (
	"fmt"
	"runtime"
	"testing"
)

// heapPerConn connects n clients with receive maximum rm to a real Mosquitto and returns the heap each
// connection holds, in bytes.
func heapPerConn(t testing.TB, rm uint16, n int) float64 {
	p := newPKI(t)
	br := startMosquitto(t, p, brokerOpts{})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		name := fmt.Sprintf("truck-%d", i)
		cfg := clientConfig(t, p, p.valid(t, name, name, "truck", false), name, br.url())
		cfg.Logger, cfg.ReceiveMaximum = nil, rm
		c := newConn(t, cfg)
		running(t, c)
		waitUp(t, c)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// A truck's connection with the truck client's receive maximum holds far less than paho's default
// (MQTT's 65535, a 512 kB channel per connection, allocated again at every reconnect).
func TestSmallReceiveMaximumSmallConnection(t *testing.T) {
	const bound = 256 << 10
	if got := heapPerConn(t, 16, 10); got > bound {
		t.Errorf("a connection with receive maximum 16 holds %.0f kB of heap, over %d kB", got/1024, bound>>10)
	}
}

// BenchmarkConnectionHeap: heap per connection with paho's default receive maximum and with the truck's.
func BenchmarkConnectionHeap(b *testing.B) {
	for _, rm := range []uint16{0, 16} {
		b.Run(fmt.Sprintf("receive_maximum=%d", rm), func(b *testing.B) {
			for range b.N {
				b.ReportMetric(heapPerConn(b, rm, 20), "heap-B/conn")
			}
		})
	}
}
