package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"math/big"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/waybill-iot/waybill/sdk/truck"
)

// serveMetrics writes the Prometheus text exposition format (version 0.0.4) by hand. The official client
// library would cost the ARM binary more than it gives here (see the README's measurement), and what it
// adds beside our gauges is the Go runtime and process families, which are a few dozen lines below with
// the names, types and help texts of its Go and process collectors, so existing dashboards work.
func (a *Agent) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	bw := bufio.NewWriter(w)
	a.writeMetrics(bw)
	_ = bw.Flush()
}

// promWriter writes metric families: each family's HELP and TYPE once, then its samples.
type promWriter struct{ w io.Writer }

func (p promWriter) family(name, typ, help string) {
	fmt.Fprintf(p.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

// sample writes one sample; labels are name, value pairs.
func (p promWriter) sample(name string, v float64, labels ...string) {
	if len(labels) == 0 {
		fmt.Fprintf(p.w, "%s %s\n", name, formatValue(v))
		return
	}
	var b strings.Builder
	for i := 0; i+1 < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(labels[i])
		b.WriteString(`="`)
		b.WriteString(escapeLabel(labels[i+1]))
		b.WriteByte('"')
	}
	fmt.Fprintf(p.w, "%s{%s} %s\n", name, b.String(), formatValue(v))
}

// one writes a family with a single unlabelled sample.
func (p promWriter) one(name, typ, help string, v float64) {
	p.family(name, typ, help)
	p.sample(name, v)
}

// histogram writes one histogram series in the Prometheus conventions: cumulative _bucket{le} ending with
// +Inf (equal to _count), _sum and _count. labels go before le.
func (p promWriter) histogram(name string, h truck.Histogram, labels ...string) {
	var cum uint64
	for i, c := range h.Counts {
		cum += c
		le := "+Inf"
		if i < len(h.Bounds) {
			le = formatValue(h.Bounds[i])
		}
		p.sample(name+"_bucket", float64(cum), append(labels[:len(labels):len(labels)], "le", le)...)
	}
	p.sample(name+"_sum", h.Sum, labels...)
	p.sample(name+"_count", float64(h.Count), labels...)
}

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// writeMetrics writes every family: the agent's, then build, Go runtime and process information.
func (a *Agent) writeMetrics(w io.Writer) {
	p := promWriter{w}
	now := a.clock.Now()
	qs := a.store.Stats()
	p.family("waybill_queue_records", "gauge", "Records waiting for upload.")
	p.sample("waybill_queue_records", float64(qs.Critical.Records), "lane", "critical")
	p.sample("waybill_queue_records", float64(qs.Normal.Records), "lane", "normal")
	p.one("waybill_queue_oldest_age_seconds", "gauge", "Age of the oldest waiting record.",
		max(qs.Critical.OldestAge(now), qs.Normal.OldestAge(now)).Seconds())
	p.one("waybill_queue_bytes", "gauge", "Bytes counted against the store limit.", float64(qs.Bytes))
	p.one("waybill_queue_thinned_total", "counter", "Old fixes thinned because the store was full.", float64(qs.Thinned))
	p.one("waybill_queue_dropped_total", "counter", "Old fixes dropped because the store was full.", float64(qs.Dropped))
	p.one("waybill_queue_quarantined_total", "counter", "Records quarantined (damaged or unsendable).", float64(qs.Quarantined))
	p.one("waybill_store_commit_seconds", "gauge", "Mean store commit latency, fsync included.", qs.CommitMean.Seconds())
	p.one("waybill_store_file_bytes", "gauge", "Size of the store file.", float64(qs.FileBytes))
	p.one("waybill_gps_fixes_total", "counter", "Fixes from the receiver.", float64(a.fixes.seen.Load()))
	p.one("waybill_gps_fixes_reported_total", "counter", "Fixes the reporting filter kept.", float64(a.fixes.reported.Load()))
	p.one("waybill_gps_fixes_stored_total", "counter", "Fixes committed to the store.", float64(a.fixes.stored.Load()))
	p.one("waybill_gps_fixes_in_memory", "gauge", "Fixes and trip events not yet in the store (batched or undecided).", float64(a.fixes.inMemory()))
	p.one("waybill_gps_fixes_store_errors_total", "counter", "Fixes that could not be stored.", float64(a.fixes.storeErrors.Load()))
	age := -1.0
	f := a.latest.Load()
	if f != nil {
		age = now.Sub(f.Time).Seconds()
	}
	p.one("waybill_gps_fix_age_seconds", "gauge", "Age of the latest fix; -1 before the first.", age)
	// The latest fix's quality: no sample while the receiver has not given the value.
	p.family("waybill_gps_satellites_used", "gauge", "Satellites used in the latest fix.")
	if f != nil && f.Sats > 0 {
		p.sample("waybill_gps_satellites_used", float64(f.Sats))
	}
	p.family("waybill_gps_hdop", "gauge", "Horizontal dilution of precision of the latest fix (1 ideal, over 5 poor).")
	if f != nil && f.HasHDOP() {
		p.sample("waybill_gps_hdop", f.HDOP)
	}
	p.family("waybill_gps_fix_mode", "gauge", "Dimension of the latest fix: 2 or 3; 0 before the first.")
	mode := 0.0
	if f != nil {
		mode = float64(f.Mode)
	}
	p.sample("waybill_gps_fix_mode", mode)
	if sky, ok := a.sky(); ok && sky.Updates > 0 {
		p.one("waybill_gps_satellites_visible", "gauge", "Satellites in view in the receiver's latest sky view (GSV).",
			float64(len(sky.Satellites)))
	}
	gh := a.source.Health()
	p.one("waybill_gps_connected", "gauge", "The receiver is open and read.", b2f(gh.Connected))
	p.one("waybill_gps_rollovers_total", "counter", "Fixes whose date was moved forward by 1024 weeks (week rollover).",
		float64(gh.Stats.Rollovers))
	p.one("waybill_gps_reopens_total", "counter", "Times the receiver was opened again after a failure (unplugged, silent, gpsd gone).",
		float64(gh.Reopens))
	p.one("waybill_gps_baud", "gauge", "The serial receiver's rate while it is open (auto baud: the rate found); 0 when closed or not serial.",
		float64(gh.Baud))
	p.family("waybill_gps_sentences_dropped_total", "counter", "Bytes or sentences from the receiver that were not used, by reason.")
	for _, d := range []struct {
		reason string
		n      uint64
	}{{"bad_checksum", gh.Stats.BadChecksum}, {"overlong", gh.Stats.Overlong}, {"garbage", gh.Stats.Garbage},
		{"parse_error", gh.Stats.ParseErrors}} {
		p.sample("waybill_gps_sentences_dropped_total", float64(d.n), "reason", d.reason)
	}
	p.family("waybill_gps_fixes_rejected_total", "counter", "Implausible fixes dropped, by reason.")
	for _, d := range []struct {
		reason string
		n      uint64
	}{{"bad_coordinates", gh.Stats.BadCoords}, {"repeat", gh.Stats.Repeats}, {"jump", gh.Stats.Jumps}} {
		p.sample("waybill_gps_fixes_rejected_total", float64(d.n), "reason", d.reason)
	}
	p.one("waybill_gps_time_steps_back_total", "counter", "Fixes timed before the previous one (the receiver's time stepped back), kept.", float64(gh.Stats.Backwards))
	cc := a.clock.check()
	p.family("waybill_clock_skew_seconds", "gauge", "GPS time minus the system clock at the latest fix (no sample before a fix or with an implausible system clock).")
	if cc.Comparable {
		p.sample("waybill_clock_skew_seconds", cc.Skew.Seconds())
	}
	p.family("waybill_ignition_on", "gauge", "The ignition input is on (debounced); no sample without an ignition input.")
	if on := a.ignitionState(); on != nil {
		p.sample("waybill_ignition_on", b2f(*on))
	}
	st := a.client.Conn().Current()
	p.one("waybill_link_up", "gauge", "Connected to a broker.", b2f(st.Connected))
	ts := a.client.Conn().Stats()
	p.one("waybill_link_wire_bytes_written_total", "counter", "Bytes written at the TCP socket.", float64(ts.WireBytesWritten))
	p.one("waybill_link_wire_bytes_read_total", "counter", "Bytes read at the TCP socket.", float64(ts.WireBytesRead))
	p.one("waybill_link_connects_total", "counter", "Successful connections.", float64(ts.Connects))
	up := a.client.Uploader()
	us := up.Stats()
	p.one("waybill_upload_messages_total", "counter", "Messages acknowledged by the broker.", float64(us.Messages))
	p.one("waybill_upload_fixes_total", "counter", "Fixes delivered.", float64(us.Fixes))
	p.one("waybill_upload_events_total", "counter", "Delivery events delivered.", float64(us.Events))
	p.one("waybill_upload_failures_total", "counter", "Publishes that failed and were retried.", float64(us.Failures))
	p.one("waybill_upload_unreceipted_records", "gauge", "Records sent and waiting for dispatch's signed receipt.", float64(us.Unreceipted))
	p.one("waybill_upload_receipts_total", "counter", "Receipts from dispatch applied.", float64(us.Receipts))
	p.one("waybill_upload_receipted_records_total", "counter", "Records removed from the queue on a receipt.", float64(us.Receipted))
	p.one("waybill_upload_resent_records_total", "counter", "Records sent again because no receipt came in time.", float64(us.Resent))
	p.family("waybill_upload_latency_seconds", "histogram",
		"Time from a record's own time (a fix's GPS time, an event's time) to the broker's PUBACK of the message carrying it.")
	p.histogram("waybill_upload_latency_seconds", up.PubackLatency(), "stage", "puback")
	bs := a.client.Book().Stats()
	p.one("waybill_orders_applied_total", "counter", "Orders and revisions stored.", float64(bs.Applied))
	p.one("waybill_orders_conflicts_total", "counter", "Cancellations of delivered orders.", float64(bs.Conflicts))
	vs := a.client.Book().VerifierStats()
	p.family("waybill_orders_rejected_total", "counter", "Orders refused, by reason.")
	reasons := make([]string, 0, len(vs.ByReason))
	counts := map[string]uint64{}
	for r, n := range vs.ByReason {
		reasons = append(reasons, r.String())
		counts[r.String()] = n
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		p.sample("waybill_orders_rejected_total", float64(counts[r]), "reason", r)
	}
	crl, cs := a.client.CRLInfo(), a.client.CRLStats()
	crlNumber := -1.0
	if crl.Loaded {
		crlNumber = 0
		if crl.Number != nil {
			crlNumber, _ = new(big.Float).SetInt(crl.Number).Float64()
		}
	}
	p.one("waybill_crl_number", "gauge", "Number of the fleet CRL orders are verified with; -1: no CRL at all.", crlNumber)
	if crl.Loaded {
		p.one("waybill_crl_this_update_seconds", "gauge", "When the CA signed the CRL in use (Unix time).", float64(crl.ThisUpdate.Unix()))
	}
	p.one("waybill_crl_refused_total", "counter", "CRLs from the broker refused (not the fleet CA's).", float64(cs.Refused))
	p.one("waybill_cert_days_left", "gauge", "Days until the truck certificate expires.", float64(a.certDaysLeft(now)))
	p.one("waybill_disk_free_bytes", "gauge", "Free bytes where the store lives.", float64(diskFree(a.cfg.DataDir)))
	p.one("waybill_clock_from_gps", "gauge", "The system clock is implausible and GPS time is used.", b2f(!a.clock.plausible()))

	p.family("waybill_build_info", "gauge", "A metric with a constant '1' value labeled by version and goversion from which waybill-agent was built.")
	p.sample("waybill_build_info", 1, "version", a.opts.Version, "goversion", runtime.Version())
	writeGoMetrics(p)
	writeProcessMetrics(p)
}

// goSamples are the runtime/metrics read for the go_* families, in one metrics.Read.
var goSamples = []string{
	"/sched/goroutines:goroutines",
	"/gc/heap/allocs:bytes",
	"/gc/heap/allocs:objects",
	"/gc/heap/frees:objects",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/unused:bytes",
	"/gc/heap/objects:objects",
	"/gc/heap/goal:bytes",
	"/gc/gogc:percent",
	"/gc/gomemlimit:bytes",
	"/sched/gomaxprocs:threads",
}

// writeGoMetrics writes the default families of client_golang's Go collector (v1.25: GoRuntimeMetricsRule
// defaults), from runtime/metrics and debug.ReadGCStats, which is where that collector reads them.
func writeGoMetrics(p promWriter) {
	s := make([]metrics.Sample, len(goSamples))
	for i, n := range goSamples {
		s[i].Name = n
	}
	metrics.Read(s)
	v := map[string]float64{}
	for _, x := range s {
		switch x.Value.Kind() {
		case metrics.KindUint64:
			v[x.Name] = float64(x.Value.Uint64())
		case metrics.KindFloat64:
			v[x.Name] = x.Value.Float64()
		}
	}
	var gc debug.GCStats
	gc.PauseQuantiles = make([]time.Duration, 5)
	debug.ReadGCStats(&gc)
	p.family("go_gc_duration_seconds", "summary", "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.")
	for i, q := range []string{"0", "0.25", "0.5", "0.75", "1"} {
		p.sample("go_gc_duration_seconds", gc.PauseQuantiles[i].Seconds(), "quantile", q)
	}
	p.sample("go_gc_duration_seconds_sum", gc.PauseTotal.Seconds())
	p.sample("go_gc_duration_seconds_count", float64(gc.NumGC))
	p.one("go_gc_gogc_percent", "gauge", "Heap size target percentage configured by the user, otherwise 100. Sourced from /gc/gogc:percent.",
		v["/gc/gogc:percent"])
	p.one("go_gc_gomemlimit_bytes", "gauge", "Go runtime memory limit configured by the user, otherwise math.MaxInt64. Sourced from /gc/gomemlimit:bytes.",
		v["/gc/gomemlimit:bytes"])
	p.one("go_goroutines", "gauge", "Number of goroutines that currently exist.", v["/sched/goroutines:goroutines"])
	p.family("go_info", "gauge", "Information about the Go environment.")
	p.sample("go_info", 1, "version", runtime.Version())
	heapAlloc := v["/memory/classes/heap/objects:bytes"]
	p.one("go_memstats_alloc_bytes", "gauge", "Number of heap bytes allocated and currently in use, same as go_memstats_heap_alloc_bytes.", heapAlloc)
	p.one("go_memstats_alloc_bytes_total", "counter", "Total number of heap bytes allocated, even if freed.", v["/gc/heap/allocs:bytes"])
	p.one("go_memstats_frees_total", "counter", "Total number of heap objects frees.", v["/gc/heap/frees:objects"])
	p.one("go_memstats_heap_alloc_bytes", "gauge", "Number of heap bytes allocated and currently in use.", heapAlloc)
	p.one("go_memstats_heap_idle_bytes", "gauge", "Number of heap bytes waiting to be used.",
		v["/memory/classes/heap/released:bytes"]+v["/memory/classes/heap/free:bytes"])
	p.one("go_memstats_heap_inuse_bytes", "gauge", "Number of heap bytes that are in use.",
		heapAlloc+v["/memory/classes/heap/unused:bytes"])
	p.one("go_memstats_heap_objects", "gauge", "Number of currently allocated objects.", v["/gc/heap/objects:objects"])
	p.one("go_memstats_heap_released_bytes", "gauge", "Number of heap bytes released to OS.", v["/memory/classes/heap/released:bytes"])
	p.one("go_memstats_last_gc_time_seconds", "gauge", "Number of seconds since 1970 of last garbage collection.",
		float64(gc.LastGC.UnixNano())/1e9*b2f(!gc.LastGC.IsZero()))
	p.one("go_memstats_mallocs_total", "counter", "Total number of heap objects allocated, both live and gc-ed.", v["/gc/heap/allocs:objects"])
	p.one("go_memstats_next_gc_bytes", "gauge", "Number of heap bytes when next garbage collection will take place.", v["/gc/heap/goal:bytes"])
	p.one("go_memstats_sys_bytes", "gauge", "Number of bytes obtained from system.", v["/memory/classes/total:bytes"])
	p.one("go_sched_gomaxprocs_threads", "gauge",
		"The current runtime.GOMAXPROCS setting, or the number of operating system threads that can execute user-level Go code simultaneously. Sourced from /sched/gomaxprocs:threads.",
		v["/sched/gomaxprocs:threads"])
	threads, _ := runtime.ThreadCreateProfile(nil)
	p.one("go_threads", "gauge", "Number of OS threads created.", float64(threads))
}

// userHZ is the kernel's clock tick for /proc times (USER_HZ): 100 on every Linux architecture we ship,
// as client_golang's procfs assumes too.
const userHZ = 100

// writeProcessMetrics writes client_golang's process collector families from /proc/self. A value that
// cannot be read (not Linux, /proc not mounted) is left out rather than reported as zero.
func writeProcessMetrics(p promWriter) {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return
	}
	// The command name (field 2) is in parentheses and may hold spaces: fields start after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return
	}
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3 (state)
	field := func(n int) float64 {          // n is the 1-based field number of proc(5)
		if n-3 >= len(f) {
			return math.NaN()
		}
		v, err := strconv.ParseFloat(f[n-3], 64)
		if err != nil {
			return math.NaN()
		}
		return v
	}
	if cpu := (field(14) + field(15)) / userHZ; !math.IsNaN(cpu) {
		p.one("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpu)
	}
	if n, err := countFDs(); err == nil {
		p.one("process_open_fds", "gauge", "Number of open file descriptors.", float64(n))
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		p.one("process_max_fds", "gauge", "Maximum number of open file descriptors.", float64(lim.Cur))
	}
	if rss := field(24); !math.IsNaN(rss) {
		p.one("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss*float64(os.Getpagesize()))
	}
	if bt, err := bootTime(); err == nil {
		if start := field(22); !math.IsNaN(start) {
			p.one("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", bt+start/userHZ)
		}
	}
	if vsize := field(23); !math.IsNaN(vsize) {
		p.one("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", vsize)
	}
}

func countFDs() (int, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	return len(names) - 1, err // less the descriptor reading the directory
}

// bootTime is the system's boot time in Unix seconds (btime in /proc/stat).
func bootTime() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "btime "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no btime in /proc/stat")
}
