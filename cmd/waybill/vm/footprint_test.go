package vm

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// footprintPeriod is how long BenchmarkFootprint measures: $WAYBILL_VM_FOOTPRINT (a duration), else 5
// minutes.
func footprintPeriod(tb testing.TB) time.Duration {
	s := os.Getenv("WAYBILL_VM_FOOTPRINT")
	if s == "" {
		return 5 * time.Minute
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 10*time.Second {
		tb.Fatalf("WAYBILL_VM_FOOTPRINT=%q: want a duration of at least 10s", s)
	}
	return d
}

// BenchmarkFootprint measures the agent on the unit: the virtual truck (256 MB, one Cortex-A53 under
// TCG) with the agent's default timings (curve filter, fixes committed 30 at a time or every 30 s), the
// receiver at 1 Hz in real time (the simulator is not sped up: per-hour costs include the work the
// agent does by the wall clock, such as keep-alives, commit delays and the garbage collector), connected
// to the broker and uploading. After a 30 s warm-up it reads the guest's /proc twice, footprintPeriod
// apart, and reports per hour:
//
//   - cpu-s/h: the agent's user+system time (/proc/<pid>/stat), in TCG-emulated seconds: an upper bound,
//     a real Cortex-A53 runs the same instructions several times faster;
//   - rss-MB and hwm-MB: its resident set at the end and its peak (/proc/<pid>/status);
//   - write-KB/h: what the agent wrote to files (/proc/<pid>/io write_bytes: the store's pages);
//   - disk-KB/h: what reached the virtio disk (/proc/diskstats, vda): the store, ext4's journal and
//     metadata, what the flash would see;
//   - wire-KB/h: the bytes the agent wrote to the broker's TCP connection (its /metrics);
//   - fixes/h: fixes from the receiver (about 3,600 at 1 Hz).
//
// Run it with: go test -run '^$' -bench Footprint -timeout 30m ./cmd/waybill/vm (WAYBILL_VM_FOOTPRINT=1h for longer).
func BenchmarkFootprint(b *testing.B) {
	period := footprintPeriod(b)
	f := newFleet(b, fleetOptions{Defaults: true})
	t := f.boot("none", true)
	t.waitHealth(2*time.Minute, "a connection", func(h health) bool { return h.Connected })
	time.Sleep(30 * time.Second)

	sample := func() map[string]float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, code, err := t.m.Exec(ctx, footprintScript)
		if err != nil || code != 0 {
			b.Fatalf("reading the guest's /proc: exit %d, %v\n%s", code, err, out)
		}
		v := map[string]float64{}
		for _, l := range strings.Split(out, "\n") {
			k, val, ok := strings.Cut(l, " ")
			if x, err := strconv.ParseFloat(strings.TrimSpace(val), 64); ok && err == nil {
				v[strings.TrimSuffix(k, ":")] = x
			}
		}
		for _, m := range []string{"waybill_gps_fixes_total", "waybill_link_wire_bytes_written_total"} {
			x, err := t.metric(ctx, m)
			if err != nil {
				b.Fatal(err)
			}
			v[m] = x
		}
		for _, k := range []string{"cpu_ticks", "VmRSS", "VmHWM", "write_bytes", "vda_sectors_written", "MemAvailable"} {
			if _, ok := v[k]; !ok {
				b.Fatalf("the guest's /proc gave no %s:\n%s", k, out)
			}
		}
		return v
	}
	b.ResetTimer()
	s0 := sample()
	start := time.Now()
	time.Sleep(period)
	s1 := sample()
	elapsed := time.Since(start)
	b.StopTimer()
	select {
	case <-t.m.Exited():
		b.Fatalf("the machine ended during the measurement: %v\n%s", t.m.ExitErr(), lastLines(t.m.Console(), 30))
	default:
	}
	perHour := func(k string, unit float64) float64 {
		return (s1[k] - s0[k]) * unit * float64(time.Hour) / float64(elapsed)
	}
	b.ReportMetric(perHour("cpu_ticks", 1.0/userHZ), "cpu-s/h")
	b.ReportMetric(s1["VmRSS"]/1024, "rss-MB")
	b.ReportMetric(s1["VmHWM"]/1024, "hwm-MB")
	b.ReportMetric(perHour("write_bytes", 1.0/1024), "write-KB/h")
	b.ReportMetric(perHour("vda_sectors_written", 512.0/1024), "disk-KB/h")
	b.ReportMetric(perHour("waybill_link_wire_bytes_written_total", 1.0/1024), "wire-KB/h")
	b.ReportMetric(perHour("waybill_gps_fixes_total", 1), "fixes/h")
	b.Logf("measured %v of real time after boot and a 30 s warm-up; guest MemAvailable %.0f MB of 256; the agent's "+
		"syscw %.0f/h, wchar %.0f KB/h", elapsed.Round(time.Second), s1["MemAvailable"]/1024, perHour("syscw", 1),
		perHour("wchar", 1.0/1024))
}

// userHZ is the guest kernel's clock tick for /proc/<pid>/stat times.
const userHZ = 100

// footprintScript prints "key value" lines from the guest's /proc for the agent (its pid is in
// /tmp/agent.pid) and the disk.
const footprintScript = `pid=$(cat /tmp/agent.pid)
set -- $(sed 's/.*) //' /proc/$pid/stat)
echo "cpu_ticks $((${12} + ${13}))"
awk '/^VmRSS|^VmHWM/ {print $1, $2}' /proc/$pid/status
sed 's/:/ /' /proc/$pid/io
awk '$3 == "vda" {print "vda_sectors_written", $10}' /proc/diskstats
awk '/^MemAvailable/ {print "MemAvailable", $2}' /proc/meminfo
`
