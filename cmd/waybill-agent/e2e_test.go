package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps/gpssim"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/sdktest/faultproxy"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/store"
)

// consumer records every verified record (fix or event) by (truck, epoch, record seq).
type consumer struct {
	mu       sync.Mutex
	records  map[string]bool // epoch/seq
	dups     int
	rejected int
	events   int
}

func (c *consumer) handle(v *sdk.Verifier) func(context.Context, transport.Message) error {
	return func(ctx context.Context, m transport.Message) error {
		msg, err := v.Verify(ctx, m.Topic, m.Payload)
		c.mu.Lock()
		defer c.mu.Unlock()
		if err != nil {
			if msg != nil { // duplicate message
				c.dups++
			} else {
				c.rejected++
			}
			return nil
		}
		add := func(epoch sdk.Epoch, seq uint64) {
			k := fmt.Sprintf("%x/%d", epoch, seq)
			if c.records[k] {
				c.dups++
			}
			c.records[k] = true
		}
		switch {
		case msg.Telemetry != nil:
			for _, f := range msg.Telemetry.Fixes {
				add(msg.Telemetry.Epoch, f.Seq)
			}
		case msg.Event != nil:
			c.events++
			add(msg.Event.Epoch, msg.Event.RecordSeq)
		}
		return nil
	}
}

// TestKillNineLosesNothing is the agent's end-to-end durability test with the real binary: the GPS
// simulator on a pseudo-terminal -> waybill-agent -> a fault proxy -> real Mosquitto (mutual TLS, the ACL
// from our broker configuration) -> a verifying consumer. The link is cut several times and the agent is
// killed with SIGKILL 20 times at random moments and restarted; dispatch sends orders meanwhile, so
// receipts (critical records) are committed too. At the end every record the agent ever committed has
// reached the consumer (the record sequence numbers have no gaps) and the agent's store is empty.
func TestKillNineLosesNothing(t *testing.T) {
	const kills = 20
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	truckCl, officeCl := b.Truck("truck-0001"), b.ClientFiles("office")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// The consumer, connected directly.
	ca, _ := pki.LoadCertificates(officeCl.CAFile)
	ver, err := sdk.NewVerifier(sdk.VerifierConfig{CA: ca})
	if err != nil {
		t.Fatal(err)
	}
	cons := &consumer{records: map[string]bool{}}
	var topics sdk.Topics
	office, err := transport.New(transport.Config{Brokers: []string{"mqtts://" + b.Addr}, ClientID: "office",
		CertFile: officeCl.CertFile, KeyFile: officeCl.KeyFile, CAFile: officeCl.CAFile,
		Subscriptions: []transport.Subscription{{Topic: topics.FleetFilter(sdk.KindTelemetry), QoS: 1},
			{Topic: topics.FleetFilter(sdk.KindEvents), QoS: 1}},
		OnPublish: cons.handle(ver)})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); office.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := office.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	pair, _ := pki.LoadKeyPair(officeCl.CertFile, officeCl.KeyFile)
	signer, _ := sdk.NewSignerTLS(pair, sdk.SignerConfig{})

	// The GPS simulator at 10x, and the fault proxy.
	pty, err := gpssim.OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	sim := gpssim.New(gpssim.Config{Route: gpssim.RouteConfig{Seed: 3, LostFixRate: -1, TunnelLen: -1}, Speedup: 10})
	wg.Add(1)
	go func() { defer wg.Done(); defer pty.Close(); sim.Run(ctx, pty.Master) }()
	proxy, err := faultproxy.Start(faultproxy.Config{Target: b.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close(context.Background())

	bin := buildAgent(t)
	dir := t.TempDir()
	cfg := config(t, dir, truckCl, "mqtts://"+proxy.Addr(), pty.Path, "")
	raw, _ := os.ReadFile(cfg)
	httpAddr := freeAddr(t)
	text := strings.Replace(string(raw), "[broker]\n", "[broker]\nkeep_alive = \"3s\"\n", 1) +
		"baud = \"9600\"\n[gps.filter]\nperiod = \"1s\"\nmin_interval = \"1s\"\n[store]\nfix_batch = 3\nfix_delay = \"500ms\"\n" +
		"[http]\nlisten = \"" + httpAddr + "\"\n"
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}

	rng := rand.New(rand.NewPCG(7, 11))
	orders, cuts := 0, 0
	for i := 0; i <= kills; i++ {
		cmd := exec.Command(bin, "run", "--config", cfg)
		var logs strings.Builder
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		life := time.Duration(500+rng.IntN(2500)) * time.Millisecond
		if i == kills {
			life = 0 // the last run: let it drain, then stop it cleanly
		}
		deadline := time.Now().Add(life)
		for time.Now().Before(deadline) {
			switch rng.IntN(4) {
			case 0: // dispatch sends an order: the agent commits a receipt
				orders++
				now := time.Now().UTC().Truncate(time.Millisecond)
				o := sdk.Order{ID: fmt.Sprintf("o-%d", orders), Revision: 1, Truck: "truck-0001", Created: now,
					Expires: now.Add(time.Hour), Lat: 52.5, Lon: 13.4, RadiusM: 50, Status: sdk.OrderActive}
				p, _ := signer.SignOrder(&o)
				topic, _ := topics.Order("truck-0001", o.ID)
				pctx, pc := context.WithTimeout(ctx, 5*time.Second)
				office.Publish(pctx, topic, p, transport.PublishOptions{QoS: 1})
				pc()
			case 1:
				if rng.IntN(3) == 0 {
					proxy.DropAll() // the cellular link drops
					cuts++
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		if i < kills {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			if strings.Contains(logs.String(), "panic") {
				t.Fatalf("agent panicked:\n%s", logs.String())
			}
			continue
		}
		// Last run: wait until the consumer has everything the store had, then stop with SIGTERM.
		waitDrained(t, cmd, cfg, httpAddr, &logs)
	}

	// The store is empty and the consumer has every record sequence number from 1 to the highest.
	st, err := store.Open(filepath.Join(dir, "data", "queue.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stats := st.Stats()
	epoch := st.Epoch()
	st.Close()
	if stats.Critical.Records != 0 || stats.Normal.Records != 0 || stats.Quarantined != 0 || stats.Recovered != 0 {
		t.Fatalf("store after the drain: %+v", stats)
	}
	cons.mu.Lock()
	defer cons.mu.Unlock()
	var maxSeq uint64
	for k := range cons.records {
		var e string
		var s uint64
		fmt.Sscanf(strings.Replace(k, "/", " ", 1), "%s %d", &e, &s)
		if e != fmt.Sprintf("%016x", epoch) {
			t.Fatalf("record from another store epoch %s (want %016x): the store was recreated", e, epoch)
		}
		maxSeq = max(maxSeq, s)
	}
	var missing []uint64
	for s := uint64(1); s <= maxSeq; s++ {
		if !cons.records[fmt.Sprintf("%016x/%d", epoch, s)] {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("LOST %d of %d records: %v", len(missing), maxSeq, missing)
	}
	if cons.rejected != 0 {
		t.Fatalf("%d messages rejected by the consumer", cons.rejected)
	}
	t.Logf("%d SIGKILLs, %d link cuts, %d orders: %d records committed and all delivered (%d events), %d duplicates dropped",
		kills, cuts, orders, maxSeq, cons.events, cons.dups)
}

// waitDrained stops the agent with SIGTERM (it commits the fixes it holds), then runs it once more with no
// GPS until its /healthz reports an empty queue, and stops it again.
func waitDrained(t *testing.T, cmd *exec.Cmd, cfg, httpAddr string, logs *strings.Builder) {
	t.Helper()
	time.Sleep(2 * time.Second)
	stopAgent(t, cmd, logs)
	raw, _ := os.ReadFile(cfg)
	drainCfg := strings.Replace(string(raw), "[gps]\n", "[gps]\nsource = \"replay\"\nreplay_file = \"/dev/null\"\n", 1)
	drainPath := cfg + ".drain.toml"
	if err := os.WriteFile(drainPath, []byte(drainCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	drain := exec.Command(cmd.Path, "run", "--config", drainPath)
	var dlogs strings.Builder
	drain.Stderr = &dlogs
	if err := drain.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		time.Sleep(300 * time.Millisecond)
		var st struct {
			Connected bool
			Queue     struct{ Critical, Normal int64 }
		}
		if resp, err := http.Get("http://" + httpAddr + "/healthz"); err == nil {
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if st.Connected && st.Queue.Critical == 0 && st.Queue.Normal == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			drain.Process.Kill()
			t.Fatalf("queue not drained within 60 s: %+v\n%s", st, dlogs.String())
		}
	}
	stopAgent(t, drain, &dlogs)
}

func stopAgent(t *testing.T, cmd *exec.Cmd, logs *strings.Builder) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("agent stopped with %v:\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("agent did not stop within 15 s of SIGTERM:\n%s", logs.String())
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "waybill-agent")
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}
