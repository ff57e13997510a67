package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/pgtest"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/sdktest/faultproxy"
	"github.com/waybill-iot/waybill/sdk/sdktest/trucktest"
	"github.com/waybill-iot/waybill/sdk/truck"
)

const killTestToken = "kill-test-token-0123456789"

// buildWaybill builds this command into a temporary directory, with the go tool of the running toolchain.
func buildWaybill(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "waybill")
	if out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build waybill: %v\n%s", err, out)
	}
	return bin
}

// officeProc is one `waybill dispatch run` OS process.
type officeProc struct {
	name string
	cmd  *exec.Cmd
	base string // http://ADDR of its API
	logs *sdktest.SyncBuffer
	done chan struct{} // closed when the process exited and its output was read
	err  error         // Wait's result, set before done closes
}

// startOfficeProc writes cfg to a file and runs `bin dispatch run --config FILE`; it returns once the API
// answers /healthz with 200 (connected to the broker). The process is killed when the test ends.
func startOfficeProc(t *testing.T, bin, name, cfg string) *officeProc {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &officeProc{name: name, logs: &sdktest.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "dispatch", "run", "--config", path)
	p.cmd.Env = append(os.Environ(), "WAYBILL_DISPATCH_TOKEN="+killTestToken, "WAYBILL_DISPATCH_DSN=")
	p.cmd.Stderr = p.logs
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() { // owned: done closes after the process exited
		defer close(p.done)
		re := regexp.MustCompile(`API on (http://\S+)`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		io.Copy(io.Discard, out)
		p.err = p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s's log:\n%s", name, p.logs.String())
		}
	})
	select {
	case p.base = <-addr:
	case <-p.done:
		t.Fatalf("%s exited at start: %v\n%s", name, p.err, p.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not print its address in 30 s:\n%s", name, p.logs.String())
	}
	sdktest.WaitFor(t, 20*time.Second, name+" connected to the broker", func() bool {
		resp, err := http.Get(p.base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

func (p *officeProc) do(t *testing.T, method, path string, body any, want int) []byte {
	t.Helper()
	return sdktest.DoJSON(t, method, p.base+path, killTestToken, body, want)
}

// TestDispatchKill9TwoProcesses: two `waybill dispatch run` processes (own identities, one share group)
// on one PostgreSQL database, a real Mosquitto and a real truck client. Office A's broker link is black-holed
// while it holds sender claims (leases on orders whose publish hangs) and unacknowledged messages, then it
// gets SIGKILL. Every order still reaches the truck and is delivered, office B sends A's leased orders once
// the lease ran out, every event is in the database once and applied once, and every fix arrived.
func TestDispatchKill9TwoProcesses(t *testing.T) {
	sdktest.MosquittoPath(t) // fails with the install command when Mosquitto is missing
	bin := buildWaybill(t)
	start := time.Now()
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office-a", "office-b"}})
	trCl := b.Truck("truck-1")
	dsn := pgtest.Start(t).Database(t)
	proxy, err := faultproxy.Start(faultproxy.Config{Target: b.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close(context.Background())

	const (
		publishTimeoutA = 8 * time.Second
		retryDelayA     = time.Second
	)
	config := func(name, brokerAddr, receiptDelay string, publishTimeout, retryDelay time.Duration) string {
		cl := b.ClientFiles(name)
		return fmt.Sprintf(`log_level = "debug"
[broker]
urls = ["mqtts://%s"]
cert = %q
key = %q
ca = %q
issued = %q
share_group = "dispatch-kill9-0123456789abcdef"
[storage]
engine = "postgres"
dsn = %q
[http]
listen = "127.0.0.1:0"
[orders]
backoff_min = "3s"
backoff_max = "6s"
online_grace = "30s"
receipt_delay = %q
publish_timeout = %q
retry_delay = %q
`, brokerAddr, cl.CertFile, cl.KeyFile, cl.CAFile, b.PKI.Dir(), dsn, receiptDelay, publishTimeout, retryDelay)
	}
	// online_grace is longer than A's lease: a truck's online kick pulls every open order's next attempt in
	// to now + grace, leased ones too, and would let B send before the lease ran out (a harmless duplicate
	// send, but not what this test measures). A receipts late, so at the kill it has committed records the
	// truck still waits a receipt for.
	var a, bo *officeProc
	var wg sync.WaitGroup
	wg.Go(func() {
		a = startOfficeProc(t, bin, "office-a", config("office-a", proxy.Addr(), "30s", publishTimeoutA, retryDelayA))
	})
	wg.Go(func() {
		bo = startOfficeProc(t, bin, "office-b", config("office-b", b.Addr, "200ms", 2*time.Second, time.Second))
	})
	wg.Wait()
	if a == nil || bo == nil {
		t.FailNow() // startOfficeProc failed in its goroutine (t.Fatalf there ends only that goroutine)
	}

	tr, tst := trucktest.Run(t, b, trCl, trucktest.Options{})
	// The truck records fixes all along: each must reach the database once.
	fctx, fstop := context.WithCancel(context.Background())
	var fixes int
	var fwg sync.WaitGroup
	fwg.Go(func() {
		t0 := time.Now().UTC().Truncate(time.Second)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-fctx.Done():
				return
			case <-tick.C:
			}
			e, err := truck.EncodeFix(sdk.Fix{Time: t0.Add(time.Duration(i) * time.Second), Lat: 51.5 + float64(i)*1e-5,
				Lon: -0.1, Mode: 3})
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := tst.Append(context.Background(), e); err != nil {
				t.Error(err)
				return
			}
			fixes++
		}
	})
	defer func() { fstop(); fwg.Wait() }()

	delivered := map[string]bool{}
	deliver := func() {
		for id := range allIDs(12) {
			trucktest.Deliver(t, tr, delivered, id)
		}
	}
	order := func(p *officeProc, i int) {
		p.do(t, "POST", "/api/orders", map[string]any{"truck": "truck-1", "id": fmt.Sprintf("o-%d", i),
			"address": "Quay", "lat": 51.5, "lon": -0.1, "radius_m": 80}, http.StatusCreated)
	}
	// Phase 1: both offices take orders and the truck's events.
	for i := range 6 {
		order([]*officeProc{a, bo}[i%2], i)
	}
	sdktest.WaitFor(t, 20*time.Second, "the first orders delivered on the truck", func() bool {
		deliver()
		return len(delivered) >= 4
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	// Phase 2: A's link goes silent (no FIN, no RST): its publishes hang with their orders leased to it, and
	// what the broker hands it stays unacknowledged. Orders created through A now are claimed by A at once.
	proxy.SetBlackHole(true)
	time.Sleep(200 * time.Millisecond) // A's own telemetry in flight lands before the link goes
	for i := 6; i < 12; i++ {
		order([]*officeProc{a, a, bo}[i%3], i)
	}
	type lease struct {
		id    string
		sends int
		until time.Time
	}
	var held []lease
	sdktest.WaitFor(t, 10*time.Second, "office A holding leases", func() bool {
		// Only A's leases (9 s) are due more than 6.5 s ahead: B's are 3 s, a send's backoff at most 6 s,
		// the retry after a failed send 1 s.
		rows, err := pool.Query(ctx, `SELECT id, (entry->>'sends')::int, next_attempt FROM orders WHERE open
			AND next_attempt > now() + interval '6.5 seconds' AND next_attempt <= now() + $1::interval`,
			(publishTimeoutA + retryDelayA).String())
		if err != nil {
			t.Fatal(err)
		}
		held = held[:0]
		for rows.Next() {
			var l lease
			if err := rows.Scan(&l.id, &l.sends, &l.until); err != nil {
				t.Fatal(err)
			}
			held = append(held, l)
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		return len(held) > 0
	})
	ts := tst.Stats()
	waiting := fmt.Sprintf("events %d (in flight %d), fixes %d (in flight %d)", ts.Critical.Records, ts.Critical.InFlight,
		ts.Normal.Records, ts.Normal.InFlight)
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.done
	killedAt := time.Now()
	proxy.Close(ctx) // what A published into the black hole never reaches the broker
	// Only leases A still held when it died count (it may have recorded a send meanwhile).
	kept := held[:0]
	for _, l := range held {
		var next time.Time
		var sends int
		if err := pool.QueryRow(ctx, `SELECT next_attempt, (entry->>'sends')::int FROM orders WHERE id = $1`, l.id).
			Scan(&next, &sends); err != nil {
			t.Fatal(err)
		}
		if sends == l.sends && next.Equal(l.until) {
			kept = append(kept, l)
		}
	}
	if held = kept; len(held) == 0 {
		t.Fatal("office A let go of its leases before it was killed: nothing to take over")
	}
	var leases []string
	for _, l := range held {
		leases = append(leases, fmt.Sprintf("%s until %s", l.id, l.until.Format(time.StampMilli)))
	}
	t.Logf("office A killed %.1f s into the test, holding leases: %s; the truck's queue: %s",
		killedAt.Sub(start).Seconds(), strings.Join(leases, ", "), waiting)

	// Every order reaches the truck and is delivered; B alone is left.
	sdktest.WaitFor(t, 40*time.Second, "every order delivered on the truck", func() bool {
		deliver()
		return len(delivered) == 12
	})
	type row struct {
		Order     struct{ ID string }
		State     string
		Sends     int
		Confirmed int
		LastSent  time.Time `json:"last_sent"`
	}
	var list []row
	sdktest.WaitFor(t, 30*time.Second, "every order delivered in the office", func() bool {
		list = nil
		json.Unmarshal(bo.do(t, "GET", "/api/orders", nil, http.StatusOK), &list)
		done := 0
		for _, e := range list {
			if e.State == "delivered" {
				done++
			}
		}
		return len(list) == 12 && done == 12
	})
	// Every event once: a received and a delivered per order (the truck re-sent what A had committed
	// without a receipt, and what the broker had handed A).
	var events, distinct int
	sdktest.WaitFor(t, 20*time.Second, "every event in the database", func() bool {
		if err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT (order_id, body->'event'->>'kind')) FROM events`).
			Scan(&events, &distinct); err != nil {
			t.Fatal(err)
		}
		return events >= 24
	})
	if events != 24 || distinct != 24 || t.Failed() {
		rows, _ := pool.Query(ctx, "SELECT order_id, body->'event'->>'kind', (body->'event'->>'record_seq')::int, body->>'id' FROM events ORDER BY 3")
		for rows.Next() {
			var o, k, id string
			var seq int
			rows.Scan(&o, &k, &seq, &id)
			t.Logf("event %d %s %s %s", seq, o, k, id)
		}
		rows.Close()
		t.Errorf("%d events (%d distinct order/kind) in the database, want 12 received + 12 delivered", events, distinct)
	}
	// Each order applied its received event once the event arrived (the office's list, read again).
	list = nil
	json.Unmarshal(bo.do(t, "GET", "/api/orders", nil, http.StatusOK), &list)
	byID := map[string]row{}
	for _, e := range list {
		byID[e.Order.ID] = e
		if e.Confirmed != 1 {
			var entry string
			pool.QueryRow(ctx, "SELECT entry::text FROM orders WHERE id = $1", e.Order.ID).Scan(&entry)
			rows, _ := pool.Query(ctx, "SELECT body::text FROM events WHERE order_id = $1", e.Order.ID)
			for rows.Next() {
				var b string
				rows.Scan(&b)
				entry += "\nevent " + b
			}
			rows.Close()
			t.Errorf("%s confirmed revision %d, want 1: %s", e.Order.ID, e.Confirmed, entry)
		}
	}
	// B took A's leased orders over once the lease ran out, not before.
	for _, l := range held {
		e := byID[l.id]
		if e.Sends <= l.sends || e.LastSent.Before(l.until.Add(-50*time.Millisecond)) {
			var entry string
			pool.QueryRow(ctx, "SELECT entry::text FROM orders WHERE id = $1", l.id).Scan(&entry)
			t.Errorf("%s: leased to A until %s after %d sends, then sent %d times, last at %s: want sent by B after the lease\n%s",
				l.id, l.until.Format(time.StampMilli), l.sends, e.Sends, e.LastSent.Format(time.StampMilli), entry)
		}
	}
	fstop()
	fwg.Wait()
	var stored int
	sdktest.WaitFor(t, 20*time.Second, "every fix in the database", func() bool {
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM fixes`).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		return stored >= fixes
	})
	if stored != fixes {
		t.Errorf("%d fixes in the database, the truck recorded %d", stored, fixes)
	}
	sdktest.WaitFor(t, 20*time.Second, "the truck's queue empty (every record receipted)", func() bool {
		st := tst.Stats()
		return st.Critical.Records+st.Normal.Records == 0
	})
	if err := bo.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-bo.done
	if bo.err != nil {
		t.Errorf("office B after SIGTERM: %v", bo.err)
	}
	t.Logf("%d orders delivered, %d events, %d fixes, %.1f s after the kill; test %.1f s",
		len(delivered), events, stored, time.Since(killedAt).Seconds(), time.Since(start).Seconds())
}

func allIDs(n int) map[string]bool {
	m := map[string]bool{}
	for i := range n {
		m[fmt.Sprintf("o-%d", i)] = true
	}
	return m
}
