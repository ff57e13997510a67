package gps

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gpsdRow is one line of testdata/nmea/expected/NAME.csv: gpsd's complete fix of one reporting cycle.
type gpsdRow struct {
	line                 int // chk_line, to find it in NAME.log.chk
	trigger              string
	timeChk, timeRaw     time.Time
	rolloverK            int
	mode                 int
	dgps                 bool
	lat, lon, alt, speed float64 // NaN when gpsd reported none
}

func readExpected(t testing.TB, name string) []gpsdRow {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "nmea", "expected", name+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.FieldsPerRecord = -1
	recs, err := cr.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var rows []gpsdRow
	for _, r := range recs[1:] {
		if len(r) < 13 {
			t.Fatalf("%s: short row %q", name, r)
		}
		num := func(s string) float64 {
			if s == "" {
				return math.NaN()
			}
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return v
		}
		tm := func(s string) time.Time {
			v, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return v
		}
		line, _ := strconv.Atoi(r[1])
		k, _ := strconv.Atoi(r[5])
		mode, _ := strconv.Atoi(r[6])
		rows = append(rows, gpsdRow{line: line, trigger: r[2], timeChk: tm(r[3]), timeRaw: tm(r[4]), rolloverK: k,
			mode: mode, dgps: r[7] == "2", lat: num(r[8]), lon: num(r[9]), alt: num(r[10]), speed: num(r[11])})
	}
	return rows
}

func captureNames(t testing.TB) []string {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join("testdata", "nmea", "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no captures in testdata/nmea: %v", err)
	}
	var names []string
	for _, l := range logs {
		names = append(names, strings.TrimSuffix(filepath.Base(l), ".log"))
	}
	return names
}

// decodeFile decodes a capture completely.
func decodeFile(t testing.TB, path string, cfg Config) ([]Fix, Stats) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := NewReader(f, cfg)
	var fixes []Fix
	for {
		fix, err := r.Next()
		if err == io.EOF {
			return fixes, r.Stats()
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		fixes = append(fixes, fix)
	}
}

// noRollover keeps the receivers' own dates, to compare with time_raw.
var noRollover = Config{RolloverFloor: time.Date(1980, 1, 6, 0, 0, 0, 0, time.UTC)}

// diff is one disagreement between our fixes and gpsd's.
type diff struct {
	kind string // "missing", "extra", "nofix" (we have a fix where gpsd had none), "pos", "mode", "speed"
	at   time.Time
	msg  string
	dist float64 // metres, for "pos"
	ours float64 // our speed, for "speed"
}

// compareCapture lists every disagreement between our fixes and gpsd's rows.
func compareCapture(fixes []Fix, rows []gpsdRow, useChk bool) []diff {
	var diffs []diff
	byTime := map[time.Time]Fix{}
	for _, f := range fixes {
		byTime[f.Time] = f
	}
	gpsdTimes := map[time.Time]bool{}
	for _, r := range rows {
		want := r.timeRaw
		if useChk {
			want = r.timeChk
		}
		gpsdTimes[want] = true
		f, ok := byTime[want]
		at := fmt.Sprintf("chk line %d %s (%s)", r.line, want.Format(time.RFC3339Nano), r.trigger)
		raw := r.timeRaw // diffs are named by the receiver's own time
		if r.mode < 2 {
			if ok {
				diffs = append(diffs, diff{kind: "nofix", at: raw, msg: at + ": gpsd had no fix, we have one"})
			}
			continue
		}
		if !ok {
			diffs = append(diffs, diff{kind: "missing", at: raw, msg: fmt.Sprintf("%s: gpsd mode %d fix missing", at, r.mode)})
			continue
		}
		if math.Abs(f.Lat-r.lat) > 1e-6 || math.Abs(f.Lon-r.lon) > 1e-6 {
			diffs = append(diffs, diff{kind: "pos", at: raw, dist: Distance(f.Lat, f.Lon, r.lat, r.lon),
				msg: fmt.Sprintf("%s: pos %.9f,%.9f want %.9f,%.9f", at, f.Lat, f.Lon, r.lat, r.lon)})
		}
		if int(f.Mode) != r.mode {
			diffs = append(diffs, diff{kind: "mode", at: raw, msg: fmt.Sprintf("%s: mode %d want %d", at, f.Mode, r.mode)})
		}
		if !math.IsNaN(r.speed) != f.HasSpeed() || f.HasSpeed() && math.Abs(f.Speed-r.speed) > 0.01 {
			diffs = append(diffs, diff{kind: "speed", at: raw, ours: f.Speed,
				msg: fmt.Sprintf("%s: speed %v want %v", at, f.Speed, r.speed)})
		}
	}
	k := 0 // the capture's rollover count, to name extra fixes by the receiver's own date
	if useChk && len(rows) > 0 {
		k = rows[0].rolloverK
	}
	for _, f := range fixes {
		if !gpsdTimes[f.Time] {
			diffs = append(diffs, diff{kind: "extra", at: f.Time.Add(-time.Duration(k) * rolloverPeriod),
				msg: fmt.Sprintf("%s: extra fix, gpsd reported no epoch at this time", f.Time.Format(time.RFC3339Nano))})
		}
	}
	return diffs
}

// justified is a disagreement with gpsd that we keep on purpose, with the reason. times lists the epochs
// (RFC 3339, the receiver's own date); none means every disagreement of that kind in the capture, which
// ok must then bound.
type justified struct {
	kind  string
	times []string
	ok    func(diff) bool
	why   string
}

const (
	whyComputedSpeed = "the receiver sent no speed in this epoch's report (GGA/GSA/ZDA or GLL only, or its VTG " +
		"comes after the sentence that reports the cycle); gpsd reports a speed it computed from " +
		"successive positions. design.md: fields the receiver did not give are omitted."
	whyMisdated = "the recording is spliced: the receiver's time goes back 52 minutes, from 15:25:08.5 to " +
		"14:33:06. gpsd, which has only the time of day in that GGA, guessed that midnight had passed and " +
		"dated it 2009-12-10; the ZDA of the same epoch says 2009-12-09, and so do we (same position and " +
		"mode; TestParityGpsdMisdatesSplice shows the sentences)."
)

func noSpeed(d diff) bool { return math.IsNaN(d.ours) }

var knownDisagreements = map[string][]justified{
	"tn204":        {{kind: "speed", ok: noSpeed, why: whyComputedSpeed}},
	"tr737A+":      {{kind: "speed", ok: noSpeed, why: whyComputedSpeed}},
	"ublox-lea-5h": {{kind: "speed", ok: noSpeed, why: whyComputedSpeed}},
	"mr-350p":      {{kind: "speed", ok: noSpeed, why: whyComputedSpeed}},
	"hemi":         {{kind: "speed", ok: noSpeed, why: whyComputedSpeed}},
	"bt451": {
		{kind: "missing", times: []string{"2009-12-10T14:33:06Z"}, why: whyMisdated},
		{kind: "extra", times: []string{"2009-12-09T14:33:06Z"}, why: whyMisdated},
	},
	"bundg_zeus_9": {
		{kind: "speed", ok: noSpeed, times: []string{"2018-08-20T09:48:34Z", "2018-08-20T09:50:04Z"},
			why: "no RMC/VTG carries this second's time stamp (the B&G Zeus stamps GLL/RMC/ZDA one second " +
				"ahead of GGA in some bursts); gpsd computes a speed."},
	},
}

func TestCapturesMatchGpsd(t *testing.T) {
	for _, name := range captureNames(t) {
		t.Run(name, func(t *testing.T) {
			fixes, _ := decodeFile(t, filepath.Join("testdata", "nmea", name+".log"), noRollover)
			rows := readExpected(t, name)
			checkDiffs(t, name, compareCapture(fixes, rows, false))
		})
	}
}

// checkDiffs fails on every disagreement that is not justified, and on every justification that no
// longer matches anything (so the list stays true).
func checkDiffs(t *testing.T, name string, diffs []diff) {
	t.Helper()
	known := knownDisagreements[name]
	used := make([]bool, len(known))
	for _, d := range diffs {
		ok := false
		for i, j := range known {
			if j.kind != d.kind || j.ok != nil && !j.ok(d) {
				continue
			}
			if len(j.times) > 0 && !slices.Contains(j.times, d.at.Format(time.RFC3339Nano)) {
				continue
			}
			ok, used[i] = true, true
			break
		}
		if !ok {
			t.Errorf("%s: unexplained disagreement with gpsd: %s", name, d.msg)
		}
	}
	for i, u := range used {
		if !u {
			t.Errorf("%s: justified disagreement %q %v no longer happens: remove it", name, known[i].kind, known[i].times)
		}
	}
}

// With the floor between the captures' raw dates, the rollover correction must reproduce gpsd's own
// answer (time_chk) for every capture, old receivers (rollover_k = 1) and recent ones (0) alike.
func TestCapturesRolloverMatchesGpsd(t *testing.T) {
	cfg := Config{RolloverFloor: time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)}
	corrected := 0
	for _, name := range captureNames(t) {
		t.Run(name, func(t *testing.T) {
			fixes, st := decodeFile(t, filepath.Join("testdata", "nmea", name+".log"), cfg)
			rows := readExpected(t, name)
			for _, r := range rows {
				if r.rolloverK > 0 && st.Rollovers == 0 && r.mode >= 2 {
					t.Errorf("rollover_k %d but no correction counted", r.rolloverK)
				}
			}
			if st.Rollovers > 0 {
				corrected++
			}
			checkDiffs(t, name, compareCapture(fixes, rows, true))
		})
	}
	if corrected < 40 {
		t.Errorf("only %d captures needed the rollover correction; the README says most do", corrected)
	}
}
