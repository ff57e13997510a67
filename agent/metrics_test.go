package agent

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

var (
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$`)
	labelPair  = regexp.MustCompile(`^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\["\\n])*)"(,|$)`)
)

// errorReporter is the part of testing.T the checker uses, so a test can check the checker.
type errorReporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// errorCount counts the checker's complaints.
type errorCount struct{ n int }

func (e *errorCount) Helper()               {}
func (e *errorCount) Errorf(string, ...any) { e.n++ }

type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

type promFamily struct {
	typ, help string
	samples   []promSample
}

// parseExposition checks text against the Prometheus text format 0.0.4 strictly: every sample belongs to a
// family announced by HELP and TYPE before it, families are not repeated or interleaved, names and labels
// are valid, values parse, no series is repeated; counters end in _total; histograms have cumulative
// buckets ending with +Inf equal to _count, and _sum; summaries have quantiles, _sum and _count.
func parseExposition(t errorReporter, text string) map[string]*promFamily {
	t.Helper()
	fams := map[string]*promFamily{}
	var cur string
	series := map[string]bool{}
	if !strings.HasSuffix(text, "\n") {
		t.Errorf("exposition does not end with a newline")
	}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		n := i + 1
		switch {
		case strings.HasPrefix(line, "# HELP "):
			name, help, _ := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
			if !metricName.MatchString(name) || help == "" {
				t.Errorf("line %d: bad HELP %q", n, line)
			}
			if _, dup := fams[name]; dup {
				t.Errorf("line %d: family %s repeated", n, name)
			}
			fams[name], cur = &promFamily{help: help}, name
		case strings.HasPrefix(line, "# TYPE "):
			name, typ, _ := strings.Cut(strings.TrimPrefix(line, "# TYPE "), " ")
			f := fams[name]
			if name != cur || f == nil || f.typ != "" || len(f.samples) > 0 {
				t.Errorf("line %d: TYPE %s not right after its HELP", n, name)
				continue
			}
			switch typ {
			case "counter", "gauge", "histogram", "summary", "untyped":
			default:
				t.Errorf("line %d: bad type %q", n, typ)
			}
			f.typ = typ
			if typ == "counter" && !strings.HasSuffix(name, "_total") {
				t.Errorf("line %d: counter %s does not end in _total", n, name)
			}
		case strings.HasPrefix(line, "#") || line == "":
			t.Errorf("line %d: unexpected %q", n, line)
		default:
			m := sampleLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("line %d: not a sample: %q", n, line)
				continue
			}
			s := promSample{name: m[1], labels: map[string]string{}}
			rest := m[3]
			for rest != "" {
				lm := labelPair.FindStringSubmatch(rest)
				if lm == nil || !labelName.MatchString(lm[1]) {
					t.Errorf("line %d: bad labels %q", n, m[3])
					break
				}
				if _, dup := s.labels[lm[1]]; dup {
					t.Errorf("line %d: label %s repeated", n, lm[1])
				}
				s.labels[lm[1]] = lm[2]
				rest = rest[len(lm[0]):]
			}
			v, err := strconv.ParseFloat(m[4], 64)
			if err != nil {
				t.Errorf("line %d: value %q: %v", n, m[4], err)
			}
			s.value = v
			f := fams[cur]
			base := s.name
			if f != nil && (f.typ == "histogram" || f.typ == "summary") {
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if strings.HasSuffix(s.name, suf) && strings.TrimSuffix(s.name, suf) == cur {
						base = cur
					}
				}
			}
			if f == nil || f.typ == "" || base != cur {
				t.Errorf("line %d: sample %s outside its family's HELP/TYPE (current family %q)", n, s.name, cur)
				continue
			}
			if series[line[:strings.LastIndexByte(line, ' ')]] {
				t.Errorf("line %d: series repeated", n)
			}
			series[line[:strings.LastIndexByte(line, ' ')]] = true
			f.samples = append(f.samples, s)
		}
	}
	for name, f := range fams {
		switch f.typ {
		case "":
			t.Errorf("%s: HELP without TYPE", name)
		case "histogram":
			checkHistogram(t, name, f)
		case "summary":
			var sum, count bool
			for _, s := range f.samples {
				sum = sum || s.name == name+"_sum"
				count = count || s.name == name+"_count"
				if s.name == name {
					if q, err := strconv.ParseFloat(s.labels["quantile"], 64); err != nil || q < 0 || q > 1 {
						t.Errorf("%s: bad quantile %q", name, s.labels["quantile"])
					}
				}
			}
			if !sum || !count {
				t.Errorf("%s: summary without _sum or _count", name)
			}
		}
	}
	return fams
}

// checkHistogram: per series (labels other than le), buckets in increasing le, cumulative, the last +Inf,
// equal to _count, and a _sum.
func checkHistogram(t errorReporter, name string, f *promFamily) {
	t.Helper()
	type series struct {
		les    []float64
		counts []float64
		sum    *float64
		count  *float64
	}
	all := map[string]*series{}
	key := func(l map[string]string) string {
		var parts []string
		for k, v := range l {
			if k != "le" {
				parts = append(parts, k+"="+v)
			}
		}
		return fmt.Sprint(parts)
	}
	for _, s := range f.samples {
		k := key(s.labels)
		if all[k] == nil {
			all[k] = &series{}
		}
		sr, v := all[k], s.value
		switch s.name {
		case name + "_bucket":
			le, err := strconv.ParseFloat(s.labels["le"], 64)
			if err != nil {
				t.Errorf("%s: bad le %q", name, s.labels["le"])
			}
			sr.les, sr.counts = append(sr.les, le), append(sr.counts, v)
		case name + "_sum":
			sr.sum = &v
		case name + "_count":
			sr.count = &v
		default:
			t.Errorf("%s: sample %s in a histogram", name, s.name)
		}
	}
	if len(all) == 0 {
		t.Errorf("%s: histogram without series", name)
	}
	for k, sr := range all {
		if len(sr.les) == 0 || !math.IsInf(sr.les[len(sr.les)-1], 1) {
			t.Errorf("%s%s: buckets do not end with +Inf: %v", name, k, sr.les)
			continue
		}
		for i := 1; i < len(sr.les); i++ {
			if sr.les[i] <= sr.les[i-1] || sr.counts[i] < sr.counts[i-1] {
				t.Errorf("%s%s: buckets not increasing and cumulative: le %v counts %v", name, k, sr.les, sr.counts)
			}
		}
		if sr.sum == nil || sr.count == nil || *sr.count != sr.counts[len(sr.counts)-1] {
			t.Errorf("%s%s: _sum %v, _count %v, +Inf bucket %v", name, k, sr.sum, sr.count, sr.counts[len(sr.counts)-1])
		}
	}
}

// /metrics passes a strict exposition-format check and has the families people expect: go_* and process_*
// with client_golang's names and types, waybill_build_info, the fix's HDOP and satellites, and the upload
// latency histogram with observations once fixes reached the broker. /sky has the simulator's satellites.
func TestMetricsExposition(t *testing.T) {
	a, _, _ := startAgentAt(t, time.Time{}, nil)
	base := "http://" + a.HTTPAddr()
	var fams map[string]*promFamily
	sdktest.WaitFor(t, 30*time.Second, "fixes acknowledged by the broker in the latency histogram", func() bool {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		if _, err := fmt.Fprint(&b, readAll(t, resp)); err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
			t.Fatalf("Content-Type %q", ct)
		}
		fams = parseExposition(t, b.String())
		if t.Failed() {
			t.FailNow()
		}
		f := fams["waybill_upload_latency_seconds"]
		for _, s := range f.samples {
			if s.name == "waybill_upload_latency_seconds_count" && s.labels["stage"] == "puback" && s.value > 0 {
				return true
			}
		}
		return false
	})
	want := map[string]string{
		"go_goroutines": "gauge", "go_threads": "gauge", "go_gc_duration_seconds": "summary", "go_info": "gauge",
		"go_memstats_alloc_bytes": "gauge", "go_memstats_alloc_bytes_total": "counter", "go_memstats_heap_inuse_bytes": "gauge",
		"go_memstats_sys_bytes": "gauge", "go_memstats_next_gc_bytes": "gauge", "go_memstats_mallocs_total": "counter",
		"go_gc_gogc_percent": "gauge", "go_sched_gomaxprocs_threads": "gauge",
		"process_cpu_seconds_total": "counter", "process_resident_memory_bytes": "gauge", "process_open_fds": "gauge",
		"process_max_fds": "gauge", "process_start_time_seconds": "gauge", "process_virtual_memory_bytes": "gauge",
		"waybill_build_info": "gauge", "waybill_gps_hdop": "gauge", "waybill_gps_satellites_used": "gauge",
		"waybill_gps_satellites_visible": "gauge", "waybill_gps_fix_age_seconds": "gauge", "waybill_gps_fix_mode": "gauge",
		"waybill_upload_latency_seconds": "histogram", "waybill_clock_skew_seconds": "gauge",
	}
	for name, typ := range want {
		f := fams[name]
		if f == nil || f.typ != typ || len(f.samples) == 0 {
			t.Errorf("%s: %+v, want a %s with samples", name, f, typ)
		}
	}
	value := func(name string) float64 { return fams[name].samples[0].value }
	if bi := fams["waybill_build_info"].samples[0]; bi.labels["version"] != "test" || !strings.HasPrefix(bi.labels["goversion"], "go") || bi.value != 1 {
		t.Errorf("build info %+v", bi)
	}
	if v := value("waybill_gps_satellites_used"); v < 4 {
		t.Errorf("satellites used %v", v)
	}
	if v := value("waybill_gps_hdop"); !(v > 0 && v < 5) {
		t.Errorf("HDOP %v", v)
	}
	if v := value("process_start_time_seconds"); math.Abs(v-float64(time.Now().Unix())) > 24*3600 {
		t.Errorf("process start time %v is not today", v)
	}
	if v := value("process_resident_memory_bytes"); v < 1<<20 {
		t.Errorf("RSS %v", v)
	}
	if v := value("go_goroutines"); v < 5 {
		t.Errorf("goroutines %v", v)
	}

	var sky gps.Sky
	resp, err := http.Get(base + "/sky")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(readAll(t, resp)), &sky); err != nil {
		t.Fatal(err)
	}
	if sky.Updates == 0 || len(sky.Satellites) < 8 || sky.Used() < 4 || sky.Mode < gps.Mode2D || math.IsNaN(sky.HDOP) {
		t.Errorf("/sky = %+v", sky)
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}

// The checker itself refuses what Prometheus would: a sample without HELP/TYPE, a non-cumulative histogram,
// one without +Inf.
func TestExpositionCheckerRefuses(t *testing.T) {
	for name, text := range map[string]string{
		"no HELP":        "x 1\n",
		"bad name":       "# HELP 1x h\n# TYPE 1x gauge\n1x 1\n",
		"counter name":   "# HELP x h\n# TYPE x counter\nx 1\n",
		"not cumulative": "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
		"no +Inf":        "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
		"bad label":      "# HELP x h\n# TYPE x gauge\nx{a=\"b} 1\n",
		"repeated":       "# HELP x h\n# TYPE x gauge\nx 1\nx 2\n",
	} {
		var ec errorCount
		parseExposition(&ec, text)
		if ec.n == 0 {
			t.Errorf("%s: accepted %q", name, text)
		}
	}
}
