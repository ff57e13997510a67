package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer echoes every connection until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, c)
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := Start(Config{Target: target, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func roundTrip(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

func TestPassForwardsBothWaysAndHalfClose(t *testing.T) {
	p := startProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("hello"))
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320 KB, many chunks
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(big)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c) // ends when the FIN has travelled client -> echo -> client
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatalf("got %d bytes back, want %d identical ones", len(got), len(big))
	}
	if s := p.Stats(); s.Accepted != 1 || s.Forwarded != 2*uint64(len(big)+5) {
		t.Fatalf("stats %+v: want 1 accepted and %d bytes forwarded", s, 2*(len(big)+5))
	}
}

func TestLatencyDelaysEachDirection(t *testing.T) {
	p := startProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("warm-up"))
	const oneWay = 40 * time.Millisecond
	p.SetLatency(oneWay)
	start := time.Now()
	roundTrip(t, c, []byte("ping"))
	if rtt := time.Since(start); rtt < 2*oneWay {
		t.Fatalf("round trip took %v, want at least %v", rtt, 2*oneWay)
	}
	p.Pass()
	roundTrip(t, c, []byte("after"))
}

func TestDropAllResetsOpenConnections(t *testing.T) {
	p := startProxy(t, echoServer(t))
	c1, c2 := dial(t, p.Addr()), dial(t, p.Addr())
	roundTrip(t, c1, []byte("a"))
	roundTrip(t, c2, []byte("b"))
	if n := p.DropAll(); n != 2 {
		t.Fatalf("DropAll dropped %d connections, want 2", n)
	}
	_ = c1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c1.Read(make([]byte, 1)); err == nil || errors.Is(err, errTimeout) {
		t.Fatalf("read after DropAll: %v, want a reset or EOF", err)
	}
	c3 := dial(t, p.Addr()) // new connections still work
	roundTrip(t, c3, []byte("c"))
}

var errTimeout = errors.New("timeout")

func TestBlackHoleHoldsDataWithoutClosing(t *testing.T) {
	p := startProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("before"))
	p.SetBlackHole(true)
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := c.Read(make([]byte, 16))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read during black hole: n=%d err=%v, want a timeout (no data, no FIN)", n, err)
	}
	c2 := dial(t, p.Addr()) // accepted even now
	if _, err := c2.Write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	p.SetBlackHole(false)
	got := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "held" {
		t.Fatalf("after lifting: %q %v, want the held data", got, err)
	}
	got = make([]byte, 3)
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c2, got); err != nil || string(got) != "new" {
		t.Fatalf("connection made during the black hole: %q %v", got, err)
	}
}

func TestBandwidthLimitPacesData(t *testing.T) {
	p := startProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("x"))
	const rate = 200 << 10 // 200 KiB/s each way
	p.SetBandwidth(rate)
	msg := bytes.Repeat([]byte("z"), 40<<10) // 40 KiB: at least 0.2 s one way
	start := time.Now()
	roundTrip(t, c, msg)
	if d := time.Since(start); d < 200*time.Millisecond*9/10 {
		t.Fatalf("40 KiB at 200 KiB/s took %v, want at least ~200ms", d)
	}
}

func TestFailFraction(t *testing.T) {
	p := startProxy(t, echoServer(t))
	p.SetFailFraction(0.3)
	const n = 200
	failed := 0
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil { // the reset can beat the end of the handshake
			failed++
			continue
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Write([]byte("?"))
		if err == nil {
			_, err = io.ReadFull(c, make([]byte, 1))
		}
		if err != nil {
			failed++
		}
		_ = c.Close()
	}
	s := p.Stats()
	if int(s.Failed) != failed {
		t.Fatalf("proxy counted %d failures, clients saw %d", s.Failed, failed)
	}
	// 30 % of 200 is 60; a binomial's 4-sigma range is about 35..85.
	if failed < 35 || failed > 85 {
		t.Fatalf("%d of %d connections failed, want about 30 %%", failed, n)
	}
	p.SetFailFraction(1)
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 1)); err == nil {
			t.Fatal("with fraction 1 a connection still worked")
		}
		_ = c.Close()
	}
}

func TestCloseWaitsAndStopsAccepting(t *testing.T) {
	p, err := Start(Config{Target: echoServer(t)})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("x"))
	p.SetBlackHole(true) // a deliverer parked in the black hole must still end
	_, _ = c.Write([]byte("y"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("proxy still accepts after Close")
	}
}

func TestStartNeedsTarget(t *testing.T) {
	if _, err := Start(Config{}); err == nil {
		t.Fatal("Start without a target succeeded")
	}
}

// BenchmarkLatencyPipeline measures delivered throughput through a 100 ms round trip (50 ms each way): with
// the pipeline it is bounded by the sockets, not by one read per round trip (which would be 160 KB/s).
func BenchmarkLatencyPipeline(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	buf := make([]byte, 1024)
	want := int64(b.N) * int64(len(buf))
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- 0
			return
		}
		defer c.Close()
		n, _ := io.CopyN(io.Discard, c, want)
		got <- n
	}()
	p, err := Start(Config{Target: ln.Addr().String()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	p.SetLatency(50 * time.Millisecond)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if n := <-got; n != want {
		b.Fatalf("sink got %d bytes, want %d", n, want)
	}
}
