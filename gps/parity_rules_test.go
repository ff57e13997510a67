package gps

import (
	"strings"
	"testing"
)

func nmeaLine(body string) string {
	var sum byte
	for _, c := range []byte(body) {
		sum ^= c
	}
	const hex = "0123456789ABCDEF"
	return "$" + body + "*" + string(hex[sum>>4]) + string(hex[sum&15]) + "\r\n"
}

func decodeString(t *testing.T, lines ...string) []Fix {
	t.Helper()
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(nmeaLine(l))
	}
	r := NewReader(strings.NewReader(b.String()), noRollover)
	var out []Fix
	for {
		f, err := r.Next()
		if err != nil {
			return out
		}
		out = append(out, f)
	}
}

// The cycle ender is learned from the receiver (the last timed sentence before the time changes: GGA
// here); a sentence of the same second that arrives after the ender reported the cycle is not part of it
// (gpsd's answer, as with the B&G Zeus), and a cycle cut before its ender is not reported.
func TestCycleEnderRules(t *testing.T) {
	cycle := func(hhmmss, lat string) []string {
		return []string{"GPRMC," + hhmmss + ",A," + lat + ",N,00518.7344,E,5.5,237.9,200818,,,A",
			"GPGSA,A,3,07,08,10,16,,,,,,,,,1.10,0.60,0.90",
			"GPGGA," + hhmmss + "," + lat + ",N,00518.7344,E,1,12,0.60,-5,M,46.8,M,,"}
	}
	var lines []string
	lines = append(lines, cycle("094800", "5250.9700")...)
	lines = append(lines, cycle("094801", "5250.9710")...)
	lines = append(lines, cycle("094802", "5250.9720")...)
	// A late GLL stamped 094802 with the next second's position, after the GGA that ended 094802.
	lines = append(lines, "GPGLL,5250.9990,N,00518.7344,E,094802,A,A")
	lines = append(lines, cycle("094803", "5250.9730")...)
	lines = append(lines, cycle("094804", "5250.9740")[:2]...) // cut before its GGA
	fixes := decodeString(t, lines...)
	if len(fixes) != 4 {
		t.Fatalf("%d fixes, want 4 (09:48:00 to 09:48:03; 09:48:04 never ended): %v", len(fixes), fixes)
	}
	if got, want := fixes[2].Lat, 52+50.9720/60; got-want > 1e-9 || want-got > 1e-9 {
		t.Errorf("09:48:02 lat %.9f, want %.9f (the late GLL is not part of the reported cycle)", got, want)
	}
}

// A fix reported before the first date is untimed (gpsd's TPV has no time): the first GGA comes before
// the first valid RMC, and GGA is the ender (learned from the no-fix cycles, whose invalid RMC has no
// time for gpsd), so the first cycle with a fix yields nothing (MTK-3301).
func TestCycleReportBeforeDate(t *testing.T) {
	fixes := decodeString(t,
		"GPGGA,081434.000,5212.982135,N,00653.101394,E,0,0,,102.9,M,47.0,M,,",
		"GPRMC,081434.000,V,5212.982135,N,00653.101394,E,0.0,0.00,050180,,,N",
		"GPGGA,081435.000,5212.982135,N,00653.101394,E,0,0,,102.9,M,47.0,M,,",
		"GPRMC,081435.000,V,5212.982135,N,00653.101394,E,0.0,0.00,050180,,,N",
		"GPGGA,081436.000,5212.982135,N,00653.101394,E,1,3,2.88,102.9,M,47.0,M,,",
		"GPRMC,081436.000,A,5212.982135,N,00653.101394,E,0.039,0.00,230808,,,A",
		"GPGGA,081437.000,5212.981473,N,00653.102458,E,1,3,2.88,102.9,M,47.0,M,,",
		"GPRMC,081437.000,A,5212.981473,N,00653.102458,E,0.039,0.00,230808,,,A",
		"GPGGA,081438.000,5212.981473,N,00653.102458,E,1,3,2.88,102.9,M,47.0,M,,")
	if len(fixes) != 2 || fixes[0].Time.Second() != 37 {
		t.Fatalf("got %v, want the fixes of 08:14:37 and 08:14:38", fixes)
	}
}
