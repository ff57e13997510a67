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

// A connection that drops and comes back 100 times (a truck on a poor cellular link) does not grow: the
// heap after the last reconnect is within 256 kB of the heap after the first (2.5 kB a reconnect; what
// each connection holds is 30 kB, and paho's default channel was 512 kB), with the truck's receive
// maximum. Measured growth is 40-65 kB, runtime noise. BenchmarkReconnectHeap reports both receive maximums.
func TestReconnectsDoNotGrowTheHeap(t *testing.T) {
	first, last := reconnectHeap(t, 16, 100)
	if last-first > 256<<10 {
		t.Errorf("heap grew %.0f kB over 100 reconnects (%.0f kB after the first, %.0f kB after the last)",
			(last-first)/1024, first/1024, last/1024)
	}
}

func BenchmarkReconnectHeap(b *testing.B) {
	for _, rm := range []uint16{0, 16} {
		b.Run(fmt.Sprintf("receive_maximum=%d", rm), func(b *testing.B) {
			for range b.N {
				first, last := reconnectHeap(b, rm, 100)
				b.ReportMetric(first/1024, "heap-kB-after-1")
				b.ReportMetric(last/1024, "heap-kB-after-100")
			}
		})
	}
}

// reconnectHeap connects one client through a fault proxy, cuts its link n times, and returns the live
// heap after the first and after the last reconnection.
func reconnectHeap(t testing.TB, rm uint16, n int) (first, last float64) {
	p := newPKI(t)
	br := startMosquitto(t, p, brokerOpts{})
	proxy := startProxy(t, br.addr())
	cfg := clientConfig(t, p, p.valid(t, "truck-1", "truck-1", "truck", false), "truck-1", "mqtts://"+proxy.Addr())
	cfg.Logger, cfg.ReceiveMaximum = nil, rm
	c := newConn(t, cfg)
	running(t, c)
	waitUp(t, c)
	heap := func() float64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return float64(m.HeapAlloc)
	}
	for i := range n {
		before := c.Stats().Connects
		proxy.DropAll()
		waitState(t, c, "reconnected", func(s State) bool { return s.Connected && c.Stats().Connects > before })
		if i == 0 {
			first = heap()
		}
	}
	return first, heap()
}
