package vm

import (
	"context"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps/gpssim"
)

// TestUART runs the agent's auto-baud (gps.baud = "auto") against the guest's PL011 driver, with a
// receiver on the host that talks at one rate and switches:
//
//  1. The receiver sends at 38400 baud, with random bytes between its epochs (line noise, a binary
//     protocol). The agent probes 4800 and 9600, where it gets what a UART at that rate makes of a
//     38400 line (garbled bytes and framing errors), and locks on 38400.
//  2. The receiver goes silent for 3 s with the line still plugged in, then talks again: fixes resume.
//  3. The receiver is unplugged (the chardev's socket closed) until the agent reports the GPS lost, and
//     plugged back in (dialled again) talking at 9600: the agent probes again and locks on 9600.
//
// QEMU's chardev carries bytes, not a line: the PL011 gets every byte whatever its divisor. So the rate
// is modelled on the host: QEMU traces each divisor the guest's driver programs (pl011_baudrate_change),
// and the receiver passes its bytes through when the guest's rate is its own, or else sends what an 8N1
// UART sampling at the guest's rate decodes from its bit stream (garble). The guest's termios is read
// back inside the guest (busybox stty on /dev/ttyAMA0).
//
// Not shown, because the chardev has no line: framing, parity, break and overrun errors in the driver
// (the garbled bytes arrive as data, so /proc/tty/driver/ttyAMA counts no fe, brk or oe), the line's
// capacity (a 4800 line cannot carry a 600-byte epoch a second; the chardev can), and a receiver's bytes
// lost while nobody reads the UART: QEMU stops reading the socket when the PL011's FIFO is full, so they
// wait and arrive when the agent opens the port. The first open of the tty still has the kernel's
// initial termios (echo on) until the agent sets raw mode; that backlog is echoed to the receiver, which
// the test logs. An unplug is silence to the guest: the PL011 has no carrier or DSR line in QEMU, and the
// device node stays (a USB receiver's would go away).
func TestUART(t *testing.T) {
	f := newFleet(t, fleetOptions{Baud: "auto"})
	b := f.boot("none", false, "pl011_baudrate_change")
	r := &receiver{t: t, m: b.m, rate: 38400, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2)),
		sim: gpssim.New(gpssim.Config{Route: gpssim.RouteConfig{Seed: 13, LostFixRate: -1, TunnelLen: -1}})}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait(); r.unplug() })
	r.plug(ctx)
	wg.Add(1)
	go func() { defer wg.Done(); r.run(ctx) }() // owned: waited in Cleanup

	metric := func(series string) float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		v, _ := b.metric(ctx, series)
		return v
	}
	stty := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, code, err := b.m.Exec(ctx, "stty -F /dev/ttyAMA0")
		if err != nil || code != 0 {
			t.Fatalf("stty -F /dev/ttyAMA0 in the guest: exit %d, %v\n%s\nconsole:\n%s", code, err, out, lastLines(b.m.Console(), 30))
		}
		return out
	}
	// locked waits until the agent has the receiver open and counts new fixes at the guest rate want.
	locked := func(what string, want int) {
		t.Helper()
		from := metric("waybill_gps_fixes_total")
		waitFor(t, b, 90*time.Second, what, func() bool {
			rates := b.m.UARTRates()
			return len(rates) > 0 && rates[len(rates)-1] == want && metric("waybill_gps_connected") == 1 &&
				metric("waybill_gps_fixes_total") >= from+2
		})
		if got := metric("waybill_gps_baud"); got != float64(want) {
			t.Errorf("%s: the agent's waybill_gps_baud is %v, want %d", what, got, want)
		}
		if s := stty(); !strings.Contains(s, "speed "+strconv.Itoa(want)+" baud") {
			t.Errorf("%s: the guest's termios on /dev/ttyAMA0 is not %d baud:\n%s", what, want, s)
		} else {
			t.Logf("%s: stty -F /dev/ttyAMA0 in the guest: %s", what, firstLine(s))
		}
	}

	locked("a lock on the 38400 receiver through noise and the wrong rates", 38400)
	probe1 := b.m.UARTRates()
	if !subsequence(probe1, []int{4800, 9600, 38400}) {
		t.Errorf("the guest's PL011 was set to %v, want the probe 4800, 9600, 38400", probe1)
	}

	r.setSilent(true)
	time.Sleep(3 * time.Second) // shorter than the agent's idle timeout (10 s)
	fixes := metric("waybill_gps_fixes_total")
	r.setSilent(false)
	waitFor(t, b, 60*time.Second, "fixes after a 3 s silence", func() bool {
		return metric("waybill_gps_connected") == 1 && metric("waybill_gps_fixes_total") >= fixes+2
	})
	t.Logf("after 3 s of silence: fixes resumed; the guest's PL011 was set %d more times (the agent's idle "+
		"timeout is 10 s)", len(b.m.UARTRates())-len(probe1))

	reopens := metric("waybill_gps_reopens_total")
	r.unplug()
	waitFor(t, b, 60*time.Second, "the GPS reported lost after the unplug", func() bool {
		return metric("waybill_gps_connected") == 0
	})
	lost := len(b.m.UARTRates())
	r.setRate(9600)
	r.plug(ctx)
	locked("a lock on the receiver plugged back in at 9600", 9600)
	if got := metric("waybill_gps_reopens_total"); got <= reopens {
		t.Errorf("waybill_gps_reopens_total %v after the unplug and replug, want more than %v", got, reopens)
	}
	if probe2 := b.m.UARTRates()[lost:]; !slices.Contains(probe2, 9600) {
		t.Errorf("after the replug the guest's PL011 was set to %v, want 9600 among them", probe2)
	}

	hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer hcancel()
	h, err := b.healthz(hctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h.GPS, "ok") {
		t.Errorf("/healthz gps: %q, want ok", h.GPS)
	}
	out, _, err := b.m.Exec(hctx, "grep '^0:' /proc/tty/driver/ttyAMA")
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	st, fromGuest, heard := r.stats, r.fromGuest, r.heard
	r.mu.Unlock()
	t.Logf("the guest transmitted %d bytes to the receiver; the first: %q", fromGuest, heard)
	t.Logf("guest PL011 rates in order: %v", b.m.UARTRates())
	t.Logf("receiver: %d epochs sent as they are, %d garbled for the guest's rate, %d not sent (silent or unplugged); "+
		"%.0f fixes; /healthz gps %q; /proc/tty/driver/ttyAMA: %s", st.clean, st.garbled, st.skipped,
		metric("waybill_gps_fixes_total"), h.GPS, strings.TrimSpace(out))
	for _, l := range strings.Split(b.m.Console(), "\n") {
		if strings.Contains(l, "serial receiver") {
			t.Logf("agent: %s", l)
		}
	}
}

// receiver is a GPS receiver on the host talking at rate into the PL011's chardev: the simulator's
// epochs at 1 Hz, each after a few random bytes.
type receiver struct {
	t   *testing.T
	m   *Machine
	sim *gpssim.Sim

	// Grab mu before accessing the fields below.
	mu     sync.Mutex
	rate   int
	silent bool
	conn   net.Conn // nil: unplugged
	drain  sync.WaitGroup
	rng    *rand.Rand
	stats  struct{ clean, garbled, skipped int }
	// What the guest transmitted on the UART: a real receiver would get it.
	fromGuest int
	heard     []byte
}

func (r *receiver) setSilent(v bool) { r.mu.Lock(); r.silent = v; r.mu.Unlock() }
func (r *receiver) setRate(v int)    { r.mu.Lock(); r.rate = v; r.mu.Unlock() }

// plug dials the UART; what the guest transmits is read and dropped.
func (r *receiver) plug(ctx context.Context) {
	c, err := r.m.DialUART(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conn = c
	r.drain.Add(1)
	go func() { // owned: unplug waits; ends at Close
		defer r.drain.Done()
		buf := make([]byte, 512)
		for {
			n, err := c.Read(buf)
			r.mu.Lock()
			r.fromGuest += n
			if len(r.heard) < 256 {
				r.heard = append(r.heard, buf[:min(n, 256-len(r.heard))]...)
			}
			r.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
}

// unplug closes the UART's socket (QEMU listens again) and waits for the drain.
func (r *receiver) unplug() {
	r.mu.Lock()
	if r.conn != nil {
		r.conn.Close()
		r.conn = nil
	}
	r.mu.Unlock()
	r.drain.Wait()
}

// run sends one epoch a second until ctx ends.
func (r *receiver) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	start := time.Now()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		r.send(r.sim.Epoch(start, i))
	}
}

func (r *receiver) send(epoch []byte) {
	guest := 9600 // the tty's initial termios, before the agent set any
	if rates := r.m.UARTRates(); len(rates) > 0 {
		guest = rates[len(rates)-1]
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn == nil || r.silent {
		r.stats.skipped++
		return
	}
	p := make([]byte, 16+r.rng.IntN(48), 64+len(epoch))
	for i := range p {
		p[i] = byte(r.rng.Uint32())
	}
	p = append(p, epoch...)
	if guest == r.rate {
		r.stats.clean++
	} else {
		p = garble(p, r.rate, guest)
		r.stats.garbled++
	}
	r.conn.SetWriteDeadline(time.Now().Add(2 * time.Second)) // the guest may not drain its FIFO
	if _, err := r.conn.Write(p); err != nil {
		r.t.Logf("receiver: %v", err)
	}
}

// garble returns what a UART receiving 8N1 at rate rx decodes from p sent back to back, 8N1, at rate
// tx: it waits for a falling edge (a start bit), samples each bit in its middle at its own rate and
// checks the stop bit. A frame whose stop bit is low is a framing error, which the Linux tty layer
// passes on as a NUL byte (the agent's port is raw: IGNPAR and PARMRK off).
func garble(p []byte, tx, rx int) []byte {
	if tx == rx {
		return p
	}
	if tx <= 0 || rx <= 0 {
		return nil
	}
	nbits := len(p) * 10
	bit := func(i int) byte { // the line during tx bit i: idle (high) outside p
		if i < 0 || i >= nbits {
			return 1
		}
		switch j := i % 10; j {
		case 0:
			return 0
		case 9:
			return 1
		default:
			return p[i/10] >> (j - 1) & 1
		}
	}
	level := func(t float64) byte { return bit(int(math.Floor(t * float64(tx)))) }
	var out []byte
	for t := 0.0; ; {
		i := int(math.Ceil(t * float64(tx)))
		for i < nbits && !(bit(i-1) == 1 && bit(i) == 0) {
			i++
		}
		if i >= nbits {
			return out
		}
		t0 := float64(i) / float64(tx)
		sample := func(k int) byte { return level(t0 + (float64(k)+0.5)/float64(rx)) }
		if sample(0) != 0 { // too short for a start bit
			t = t0 + 0.5/float64(rx)
			continue
		}
		var c byte
		for k := 1; k <= 8; k++ {
			c |= sample(k) << (k - 1)
		}
		if sample(9) == 0 {
			c = 0
		}
		out = append(out, c)
		t = t0 + 9.5/float64(rx)
	}
}

func TestGarble(t *testing.T) {
	msg := []byte("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n")
	if got := garble(msg, 9600, 9600); string(got) != string(msg) {
		t.Fatalf("same rate: %q", got)
	}
	// 8N1 at 9600 sampled at 4800 (half the rate): each received bit spans two sent ones.
	for _, rx := range []int{4800, 38400, 115200} {
		got := garble(msg, 9600, rx)
		if strings.Contains(string(got), "$GPGGA") || len(got) == 0 {
			t.Errorf("9600 read at %d: %q", rx, got)
		}
	}
	// A UART twice as fast sees 0x00 framing errors or bytes whose bits come in pairs.
	if got := garble([]byte{0xff}, 9600, 19200); len(got) != 1 {
		t.Errorf("0xff at double rate: %x", got)
	}
}

func subsequence(s, want []int) bool {
	for _, v := range s {
		if len(want) > 0 && v == want[0] {
			want = want[1:]
		}
	}
	return len(want) == 0
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

func TestParseRateChange(t *testing.T) {
	for line, want := range map[string]int{
		"pl011_baudrate_change new baudrate 0 (clk: 0hz, ibrd: 312, fbrd: 32)": 4800,
		"pl011_baudrate_change new baudrate 0 (clk: 0hz, ibrd: 156, fbrd: 16)": 9600,
		"pl011_baudrate_change new baudrate 0 (clk: 0hz, ibrd: 39, fbrd: 4)":   38400,
		"pl011_baudrate_change new baudrate 0 (clk: 0hz, ibrd: 13, fbrd: 1)":   115200,
		"pl011_baudrate_change new baudrate 0 (clk: 0hz, ibrd: 0, fbrd: 16)":   0,
	} {
		if got, _ := parseRateChange(line); got != want {
			t.Errorf("%s: %d, want %d", line, got, want)
		}
	}
}
