package gps

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// parity is how one capture's fixes compare with gpsd's fix epochs (its rows with mode 2 or 3).
type parity struct {
	epochs  int // gpsd's fix epochs
	matched int // we have a fix at the same time, within 1e-6 degrees and of the same mode
	missed  int // gpsd's fix epochs we do not match (no fix, another position or another mode)
	extra   int // our fixes at a time gpsd reported no fix for
}

func (p parity) String() string {
	return fmt.Sprintf("%4d %4d %4d %4d", p.epochs, p.matched, p.missed, p.extra)
}

// measureParity compares fixes (decoded without rollover correction) with gpsd's rows by the receiver's
// own time.
func measureParity(fixes []Fix, rows []gpsdRow) parity {
	var p parity
	byTime := map[time.Time]Fix{}
	for _, f := range fixes {
		byTime[f.Time] = f
	}
	fixAt := map[time.Time]bool{}
	for _, r := range rows {
		if r.mode < 2 {
			continue
		}
		p.epochs++
		fixAt[r.timeRaw] = true
		f, ok := byTime[r.timeRaw]
		if ok && math.Abs(f.Lat-r.lat) <= 1e-6 && math.Abs(f.Lon-r.lon) <= 1e-6 && int(f.Mode) == r.mode {
			p.matched++
		} else {
			p.missed++
		}
	}
	for _, f := range fixes {
		if !fixAt[f.Time] {
			p.extra++
		}
	}
	return p
}

// wantParity is the regression floor: per capture, gpsd's fix epochs we miss and our fixes gpsd did not
// report. Every capture not listed matches gpsd exactly. Each entry is explained in captures_test.go.
var wantParity = map[string]parity{
	"bt451":       {missed: 5}, // time goes back 52 minutes (spliced recording): see TestParityBackwardsEvidence
	"telit-he910": {missed: 1}, // time goes back 302 ms: see TestParityBackwardsEvidence
}

// Before the cycle detector (gpsd's report points) was modelled: 1,047 matched, 31 missed, 17 extra.
const wantMatched, wantEpochs = 1072, 1078

// TestParityWithGpsd measures, per capture, how many of gpsd's fix epochs we reproduce (go test -v prints
// the table), and fails when a capture gets worse or better than wantParity says.
func TestParityWithGpsd(t *testing.T) {
	var total parity
	var b strings.Builder
	fmt.Fprintf(&b, "%-20s %4s %4s %4s %4s\n", "capture", "gpsd", "ok", "miss", "xtra")
	for _, name := range captureNames(t) {
		fixes, _ := decodeFile(t, filepath.Join("testdata", "nmea", name+".log"), noRollover)
		p := measureParity(fixes, readExpected(t, name))
		fmt.Fprintf(&b, "%-20s %s\n", name, p)
		total.epochs += p.epochs
		total.matched += p.matched
		total.missed += p.missed
		total.extra += p.extra
		w := wantParity[name]
		if p.missed != w.missed || p.extra != w.extra {
			t.Errorf("%s: %d missed, %d extra; want %d, %d", name, p.missed, p.extra, w.missed, w.extra)
		}
	}
	fmt.Fprintf(&b, "%-20s %s (%.1f %%)\n", "total", total, 100*float64(total.matched)/float64(total.epochs))
	t.Log("\n" + b.String())
	if total.matched != wantMatched || total.epochs != wantEpochs || total.extra != 0 {
		t.Errorf("total %d of %d matched, %d extra; want %d of %d, 0", total.matched, total.epochs, total.extra,
			wantMatched, wantEpochs)
	}
}

// The only epochs of gpsd's we do not reproduce follow a time that goes backwards in the receiver's own
// sentences; the plausibility check drops them (Stats.Backwards). This shows it from the sentences.
func TestParityBackwardsEvidence(t *testing.T) {
	for _, c := range []struct{ name, before, after, date string }{
		// The 15:25 recording is cut after RMC/GGA 152508.50; the 14:33 one starts with GGA 143306.00.
		{"bt451", "$GPGGA,152508.50,", "$GPGGA,143306.00,", "$GPZDA,143306.00,09,12,2009,"},
		// Telit HE910 moves its epoch: 105153.71, then 105153.408.
		{"telit-he910", "$GPRMC,105153.71,", "$GPGGA,105153.408,", ""},
	} {
		data, err := os.ReadFile(filepath.Join("testdata", "nmea", c.name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		s := string(data)
		i, j := strings.Index(s, c.before), strings.Index(s, c.after)
		if i < 0 || j < i {
			t.Errorf("%s: %q then %q not found in that order", c.name, c.before, c.after)
			continue
		}
		if c.date != "" && !strings.Contains(s[j:], c.date) {
			// gpsd dated 14:33:06 2009-12-10 (it assumed midnight had passed); the ZDA says otherwise.
			t.Errorf("%s: %q not found after the jump", c.name, c.date)
		}
		_, st := decodeFile(t, filepath.Join("testdata", "nmea", c.name+".log"), noRollover)
		if st.Backwards != uint64(wantParity[c.name].missed) {
			t.Errorf("%s: %d fixes rejected as backwards, want %d (gpsd's epochs we miss)", c.name,
				st.Backwards, wantParity[c.name].missed)
		}
	}
}
