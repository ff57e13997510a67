package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps/gpssim"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/truck"
	"github.com/waybill-iot/waybill/store"
)

// BenchmarkBinarySize reports the stripped linux/arm (GOARM=7) binary's size. Target: <= 15 MB.
func BenchmarkBinarySize(b *testing.B) {
	for range b.N {
		bin := filepath.Join(b.TempDir(), "waybill-agent")
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm", "GOARM=7")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
		fi, err := os.Stat(bin)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(fi.Size())/1e6, "MB-linux-arm")
	}
}

// BenchmarkAgentResources runs the real agent binary (amd64) offline, so everything queues: with 10,000
// records already queued it processes an hour of 1 Hz GPS (the simulator at 60x, every fix reported and
// stored), then reports its RSS; and it runs 60 s of real-time 1 Hz GPS and reports CPU time per hour.
// Targets: RSS <= 25 MB, CPU <= 1 % of one core (36 s per hour).
func BenchmarkAgentResources(b *testing.B) {
	for range b.N {
		bin := filepath.Join(b.TempDir(), "waybill-agent")
		if out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".").CombinedOutput(); err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
		brk := sdktest.StartMosquitto(b, sdktest.Options{})
		cl := brk.Truck("truck-0001")

		// An hour at 60x, with 10,000 records queued first.
		dir := b.TempDir()
		prefill(b, filepath.Join(dir, "data", "queue.db"), 10000)
		rss, cpu, fixes := runAgentFor(b, bin, dir, cl, 60, 62*time.Second)
		b.ReportMetric(float64(rss)/1e6, "MB-RSS-after-1h")
		b.Logf("an hour of GPS at 60x: %d fixes stored, RSS %.1f MB, CPU %.1f s", fixes, float64(rss)/1e6, cpu.Seconds())

		// A minute at 1 Hz in real time.
		dir2 := b.TempDir()
		_, cpu1, _ := runAgentFor(b, bin, dir2, cl, 1, 60*time.Second)
		perHour := cpu1 * 60
		b.ReportMetric(perHour.Seconds(), "CPU-s-per-hour")
		b.ReportMetric(100*perHour.Seconds()/3600, "%-of-a-core")
	}
}

func prefill(b *testing.B, path string, n int) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var entries []store.Entry
	for i := range n {
		e, _ := truck.EncodeFix(sdk.Fix{Time: time.Now().UTC().Add(time.Duration(i-n) * time.Second), Lat: 52.5 + float64(i)*1e-5, Lon: 13.4, Mode: 3})
		entries = append(entries, e)
	}
	if _, err := st.Append(context.Background(), entries...); err != nil {
		b.Fatal(err)
	}
}

// runAgentFor runs the agent offline (its broker address refuses connections) with a simulator at speedup
// for d, and returns its RSS and CPU time at the end and the fixes it stored.
func runAgentFor(b *testing.B, bin, dir string, cl sdktest.Client, speedup float64, d time.Duration) (int64, time.Duration, int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := gpssim.OpenPTY()
	if err != nil {
		b.Fatal(err)
	}
	sim := gpssim.New(gpssim.Config{Route: gpssim.RouteConfig{Seed: 5}, Speedup: speedup})
	done := make(chan struct{})
	go func() { defer close(done); defer p.Close(); sim.Run(ctx, p.Master) }()
	defer func() { cancel(); <-done }()
	cfg := fmt.Sprintf("data_dir = %q\nallow_test_timings = true\n[identity]\ncert = %q\nkey = %q\nca = %q\n[broker]\nurls = [\"mqtts://127.0.0.1:1\"]\n"+
		"[gps]\ndevice = %q\nbaud = \"9600\"\n[gps.filter]\nperiod = \"1s\"\nmin_interval = \"1s\"\nmin_distance_m = 1\n[http]\nlisten = \"off\"\n",
		filepath.Join(dir, "data"), cl.CertFile, cl.KeyFile, cl.CAFile, p.Path)
	path := filepath.Join(dir, "agent.toml")
	os.WriteFile(path, []byte(cfg), 0o600)
	cmd := exec.Command(bin, "run", "--config", path)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(d)
	rss := procRSS(cmd.Process.Pid)
	cpu := procCPU(cmd.Process.Pid)
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	st, err := store.Open(filepath.Join(dir, "data", "queue.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	n := int(st.Stats().Normal.Records)
	st.Close()
	return rss, cpu, n
}

func procRSS(pid int) int64 {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func procCPU(pid int) time.Duration {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}
