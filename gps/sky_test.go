package gps

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// gpsdSkies reads gpsd's SKY reports with satellites from a capture's .chk.
func gpsdSkies(t *testing.T, name string) []gpsdReport {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "nmea", name+".log.chk"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var out []gpsdReport
	for sc.Scan() {
		if !bytes.HasPrefix(sc.Bytes(), []byte(`{"class":"SKY"`)) {
			continue
		}
		var r gpsdReport
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(r.Sats) > 0 {
			out = append(out, r)
		}
	}
	return out
}

// skyViews decodes a capture through Reader and returns every sky view it published.
func skyViews(t *testing.T, name string) []Sky {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "nmea", name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := NewReader(f, Config{})
	var views []Sky
	last := uint64(0)
	for {
		_, err := r.Next()
		if n := r.SkyUpdates(); n != last {
			last = n
			views = append(views, r.Sky())
		}
		if err != nil && err != ErrNoData {
			break
		}
	}
	return views
}

// skyDisagreements lists the captures whose final satellite count differs from gpsd's, with the reason.
var skyDisagreements = map[string]string{
	// gpsd lists a satellite once per signal (L1 C/A, L2, E5b, ...: NMEA 4.10 signal IDs), 82 entries for
	// 41 satellites; the sky view lists each satellite once, with its strongest signal's SNR.
	"ublox-zed-f9p-nmea": "gpsd lists every signal of a satellite",
}

// Every capture for which gpsd reported satellites: the last sky view with satellites has as many as gpsd's
// last SKY report, and the same PRNs (per constellation), except where listed above.
func TestSkyMatchesGPSD(t *testing.T) {
	compared := 0
	for _, name := range captureNames(t) {
		want := gpsdSkies(t, name)
		if len(want) == 0 {
			continue
		}
		t.Run(name, func(t *testing.T) {
			views := skyViews(t, name)
			var got *Sky
			for i := range views {
				if len(views[i].Satellites) > 0 {
					got = &views[i]
				}
			}
			if got == nil {
				t.Fatalf("no sky view with satellites; gpsd reported %d SKY", len(want))
			}
			last := want[len(want)-1]
			wantPRNs, gotPRNs := map[string]bool{}, map[string]bool{}
			// PRNs compare for GPS (1..32): gpsd renumbers other systems (BeiDou 401.., Galileo 301..).
			for _, s := range last.Sats {
				if s.PRN <= 32 {
					wantPRNs[fmt.Sprint(s.PRN)] = true
				}
			}
			for _, s := range got.Satellites {
				if s.Constellation == ConstGPS {
					gotPRNs[fmt.Sprint(s.PRN)] = true
				}
			}
			t.Logf("gpsd: %d satellites in %d reports; ours: %d in %d views, %d used, mode %d, HDOP %g",
				len(last.Sats), len(want), len(got.Satellites), len(views), got.Used(), got.Mode, got.HDOP)
			if why, ok := skyDisagreements[name]; ok {
				t.Logf("known disagreement: %s", why)
				return
			}
			compared++
			if len(got.Satellites) != len(last.Sats) {
				t.Errorf("%d satellites in view, gpsd %d", len(got.Satellites), len(last.Sats))
			}
			for p := range wantPRNs {
				if !gotPRNs[p] {
					t.Errorf("GPS PRN %s missing (gpsd has it)", p)
				}
			}
			if len(gotPRNs) != len(wantPRNs) {
				t.Errorf("%d GPS satellites, gpsd %d", len(gotPRNs), len(wantPRNs))
			}
		})
	}
	if compared < 30 {
		t.Errorf("only %d captures compared with gpsd's SKY", compared)
	}
}

// A GSV cycle with a missing message is dropped and the previous complete view stays; a new complete
// cycle replaces it. GSA says which are used; talkers merge; the view is published per epoch.
func TestSkyPartialCycle(t *testing.T) {
	tr := NewSkyTracker()
	feed := func(lines ...string) {
		for _, l := range lines {
			tr.Add([]byte(l))
		}
	}
	feed("$GPRMC,120000.00,A,4807.038,N,01131.000,E,0.0,0.0,010326,,,A",
		"$GPGSA,A,3,01,02,,,,,,,,,,,2.0,1.1,1.7",
		"$GLGSA,A,3,65,,,,,,,,,,,,2.0,1.1,1.7",
		"$GPGSV,2,1,05,01,40,083,46,02,17,308,41,03,07,344,,04,22,228,39",
		"$GPGSV,2,2,05,05,10,100,20",
		"$GLGSV,1,1,01,65,45,045,30",
		"$GPRMC,120001.00,A,4807.038,N,01131.000,E,0.0,0.0,010326,,,A") // new epoch: publishes
	s := tr.Sky()
	if s.Updates != 1 || len(s.Satellites) != 6 || s.Used() != 3 || s.Mode != Mode3D || s.HDOP != 1.1 || s.VDOP != 1.7 {
		t.Fatalf("first view %+v", s)
	}
	if s.Satellites[5].Constellation != ConstGLONASS || s.Satellites[2].SNR != 0 || s.Satellites[0].Elevation != 40 {
		t.Errorf("satellites %+v", s.Satellites)
	}
	// Epoch 2: the GP cycle loses its first message; GL completes with two satellites.
	feed("$GPGSV,2,2,05,05,10,100,20",
		"$GLGSV,1,1,02,65,45,045,31,66,10,200,25",
		"$GPRMC,120002.00,A,4807.038,N,01131.000,E,0.0,0.0,010326,,,A")
	s = tr.Sky()
	if s.Updates != 2 || len(s.Satellites) != 7 {
		t.Fatalf("after a partial cycle: %d satellites in view %+v; want the 5 GPS of the last complete cycle and 2 GLONASS", len(s.Satellites), s)
	}
	// A repeated message also drops the cycle.
	feed("$GPGSV,3,1,09,01,40,083,46,02,17,308,41,03,07,344,,04,22,228,39",
		"$GPGSV,3,2,09,09,10,100,20,10,10,100,20,11,10,100,20,12,10,100,20",
		"$GPGSV,3,2,09,09,10,100,20,10,10,100,20,11,10,100,20,12,10,100,20",
		"$GPGSV,3,3,09,13,10,100,20")
	tr.Flush()
	for _, sat := range tr.Sky().Satellites {
		if sat.PRN == 9 {
			t.Errorf("a cycle with a repeated message was taken: %+v", tr.Sky().Satellites)
		}
	}
}

// However many satellites, talkers and signals a stream makes up, the view stays bounded.
func TestSkyBounded(t *testing.T) {
	tr := NewSkyTracker()
	for talker := 0; talker < 200; talker++ {
		for sig := 0; sig < 3; sig++ {
			for msg := 1; msg <= 9; msg++ {
				var b strings.Builder
				fmt.Fprintf(&b, "$%c%cGSV,9,%d,36", 'A'+talker%26, 'A'+talker/26, msg)
				for k := 0; k < 4; k++ {
					fmt.Fprintf(&b, ",%d,45,100,40", (talker*36+msg*4+k)%999+1)
				}
				fmt.Fprintf(&b, ",%d", sig)
				tr.Add([]byte(b.String()))
			}
		}
		tr.Flush()
	}
	if n := len(tr.Sky().Satellites); n > MaxSatellites || n == 0 {
		t.Fatalf("%d satellites", n)
	}
	if len(tr.cycles) > 64 || len(tr.views) > 64 {
		t.Fatalf("%d cycles, %d views kept", len(tr.cycles), len(tr.views))
	}
}

// The sky view survives JSON (the agent's /sky, waybill gps sky --json) with absent DOPs absent.
func TestSkyJSON(t *testing.T) {
	views := skyViews(t, "neo-m8n")
	s := views[len(views)-1]
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Sky
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Satellites) != len(s.Satellites) || back.HDOP != s.HDOP || back.Satellites[0] != s.Satellites[0] {
		t.Fatalf("round trip %s -> %+v", b, back)
	}
	if b, _ := json.Marshal(emptySky()); strings.Contains(string(b), "hdop") {
		t.Errorf("absent HDOP written: %s", b)
	}
}

// FuzzSky: any lines through the tracker: no panic, and every view within its bounds.
func FuzzSky(f *testing.F) {
	addCaptureSeeds(f)
	f.Add([]byte("$GPGSV,3,1,12,17,72,207,32,28,59,095,31,06,35,347,25,01,29,132,23*7B\n$GPGSV,3,3,12,,,,,99999,-1,400,1000,1\n"))
	f.Add([]byte("$GNGSA,A,3,01,02,03,04,05,06,07,08,09,10,11,12,1.0,2.0,3.0,4\n$GAGSV,1,1,01,301,90,359,99,7\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := NewSkyTracker()
		for _, line := range bytes.Split(data, []byte{'\n'}) {
			tr.Add(bytes.TrimRight(line, "\r"))
		}
		tr.Flush()
		s := tr.Sky()
		if len(s.Satellites) > MaxSatellites || len(tr.cycles) > 64 || len(tr.views) > 64 {
			t.Fatalf("unbounded: %d satellites", len(s.Satellites))
		}
		for _, sat := range s.Satellites {
			if sat.PRN < 1 || sat.PRN > 999 || sat.Elevation < -1 || sat.Elevation > 90 || sat.Azimuth < -1 ||
				sat.Azimuth > 359 || sat.SNR < 0 || sat.SNR > 99 {
				t.Fatalf("insane satellite %+v", sat)
			}
		}
		if _, err := json.Marshal(s); err != nil {
			t.Fatal(err)
		}
	})
}
