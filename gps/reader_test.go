package gps

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"
)

// sentence adds the checksum to the body of an NMEA sentence ("GPRMC,...").
func sentence(body string) string {
	var sum byte
	for i := 0; i < len(body); i++ {
		sum ^= body[i]
	}
	return fmt.Sprintf("$%s*%02X\r\n", body, sum)
}

func readAll(t *testing.T, input string, cfg Config) ([]Fix, Stats) {
	t.Helper()
	r := NewReader(strings.NewReader(input), cfg)
	var out []Fix
	for {
		f, err := r.Next()
		if err == io.EOF {
			return out, r.Stats()
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
}

func TestCorrectRollover(t *testing.T) {
	floor := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	week := 7 * 24 * time.Hour
	for _, tc := range []struct {
		in   time.Time
		k    int
		want time.Time
	}{
		{time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), 0, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)},
		{floor, 0, floor},
		// A receiver with the 2019 bug reports 2006-07-16 for 2026-03-01.
		{time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Add(-1024 * week), 1, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)},
		{time.Date(1987, 1, 1, 0, 0, 0, 0, time.UTC), 2, time.Date(1987, 1, 1, 0, 0, 0, 0, time.UTC).Add(2048 * week)},
	} {
		got, k := correctRollover(tc.in, floor)
		if !got.Equal(tc.want) || k != tc.k {
			t.Errorf("correctRollover(%s) = %s, %d; want %s, %d", tc.in, got, k, tc.want, tc.k)
		}
	}
}

// A receiver 1024 weeks late: every fix is moved forward, counted, and the correction logged once.
func TestReaderRolloverSynthetic(t *testing.T) {
	real := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	late := real.Add(-rolloverPeriod)
	var in strings.Builder
	for i := range 5 {
		tm := late.Add(time.Duration(i) * time.Second)
		in.WriteString(sentence(fmt.Sprintf("GPRMC,%s,A,4807.038,N,01131.000,E,022.4,084.4,%s,,,A",
			tm.Format("150405.00"), tm.Format("020106"))))
	}
	var logs bytes.Buffer
	cfg := Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))} // default floor 2026-01-01
	fixes, st := readAll(t, in.String(), cfg)
	if len(fixes) != 5 || st.Rollovers != 5 {
		t.Fatalf("got %d fixes, %d rollovers; want 5, 5", len(fixes), st.Rollovers)
	}
	for i, f := range fixes {
		if want := real.Add(time.Duration(i) * time.Second); !f.Time.Equal(want) {
			t.Errorf("fix %d at %s, want %s", i, f.Time, want)
		}
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("rollover logged %d times, want once:\n%s", n, logs.String())
	}
	// With the floor in the past, the receiver's date is kept.
	fixes, st = readAll(t, in.String(), noRollover)
	if !fixes[0].Time.Equal(late) || st.Rollovers != 0 {
		t.Errorf("floor 1980: got %s (%d rollovers), want %s unchanged", fixes[0].Time, st.Rollovers, late)
	}
}

func TestReaderFramingSurvivesJunk(t *testing.T) {
	good := sentence("GPRMC,120000.00,A,4807.038,N,01131.000,E,0.0,0.0,040526,,,A")
	good2 := sentence("GPRMC,120001.00,A,4807.038,N,01131.000,E,0.0,0.0,040526,,,A")
	bad := strings.Replace(sentence("GPRMC,120002.00,A,4807.038,N,01131.000,E,0.0,0.0,040526,,,A"), "4807", "4808", 1)
	in := "\x00\x00garbage" + strings.Repeat("x", 10000) + good + "$GPGGA,1200" + "\x00\x00" + good2 +
		"$" + strings.Repeat("A", 5000) + "\r\n" + bad + "junk$GPRMC,partial"
	fixes, st := readAll(t, in, noRollover)
	if len(fixes) != 2 {
		t.Fatalf("got %d fixes, want 2: %+v", len(fixes), fixes)
	}
	if st.BadChecksum != 1 || st.Overlong != 1 || st.Sentences != 2 {
		t.Errorf("stats %+v: want 1 bad checksum, 1 overlong, 2 sentences", st)
	}
}

func TestReaderNoFixNeverZeros(t *testing.T) {
	in := sentence("GPRMC,120000.00,V,,,,,,,040526,,,N") +
		sentence("GPGGA,120000.00,,,,,0,00,99.99,,,,,,") +
		sentence("GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99")
	fixes, st := readAll(t, in, noRollover)
	if len(fixes) != 0 || st.NoFix != 1 {
		t.Errorf("got %v (stats %+v), want no fix and NoFix 1", fixes, st)
	}
}

// One epoch of a multi-constellation receiver: GN talkers, one GSA per system, VTG without time.
func TestReaderMergesEpoch(t *testing.T) {
	in := sentence("GNRMC,083559.00,A,4717.11437,N,00833.91522,E,0.004,77.52,040526,,,D") +
		sentence("GNVTG,77.52,T,,M,0.004,N,0.008,K,D") +
		sentence("GNGGA,083559.00,4717.11437,N,00833.91522,E,2,08,1.01,499.6,M,48.0,M,,") +
		sentence("GNGSA,A,3,10,23,20,,,,,,,,,,1.72,1.01,1.39,1") +
		sentence("GNGSA,A,3,65,72,,,,,,,,,,,1.72,1.01,1.39,2") +
		sentence("GPGSV,1,1,03,10,44,103,40,23,58,150,41,20,30,300,35") +
		sentence("GLGSV,1,1,02,65,20,100,30,72,40,200,31") +
		sentence("GNGLL,4717.11437,N,00833.91522,E,083559.00,A,D") +
		sentence("GNZDA,083559.00,04,05,2026,00,00")
	fixes, _ := readAll(t, in, Config{})
	if len(fixes) != 1 {
		t.Fatalf("got %d fixes, want 1", len(fixes))
	}
	f := fixes[0]
	want := Fix{Time: time.Date(2026, 5, 4, 8, 35, 59, 0, time.UTC), Lat: 47.285239500, Lon: 8.565253667,
		Alt: 499.6, Speed: 0.004 * knots, Course: 77.52, Mode: Mode3D, Sats: 8, HDOP: 1.01, PDOP: 1.72, DGPS: true}
	if !f.Time.Equal(want.Time) || math.Abs(f.Lat-want.Lat) > 1e-8 || math.Abs(f.Lon-want.Lon) > 1e-8 ||
		f.Alt != want.Alt || math.Abs(f.Speed-want.Speed) > 1e-9 || f.Course != want.Course || f.Mode != want.Mode ||
		f.Sats != want.Sats || f.HDOP != want.HDOP || f.PDOP != want.PDOP || f.DGPS != want.DGPS {
		t.Errorf("got  %+v\nwant %+v", f, want)
	}
	b, _ := f.MarshalJSON()
	const wantJSON = `{"time":"2026-05-04T08:35:59Z","lat":47.2852395,"lon":8.565253667,"alt_m":499.6,` +
		`"speed_mps":0.002,"course_deg":77.52,"mode":3,"sats":8,"hdop":1.01,"pdop":1.72,"dgps":true}`
	if string(b) != wantJSON {
		t.Errorf("JSON\n got %s\nwant %s", b, wantJSON)
	}
}

func TestPlausibility(t *testing.T) {
	rmc := func(tm string, lat string) string {
		return sentence("GPRMC," + tm + ",A," + lat + ",N,01131.000,E,0.0,0.0,040526,,,A")
	}
	in := rmc("120000.00", "4807.000") +
		rmc("120001.00", "4807.001") +
		rmc("120000.50", "4807.002") + // time steps back, the position is plausible: kept, as gpsd does
		rmc("120000.40", "4808.000") + // back 0.1 s but 1.8 km away: a jump, whichever way time went
		rmc("120002.00", "4907.000") + // 111 km in a second
		rmc("120003.00", "4807.003") +
		sentence("GPRMC,120004.00,A,0000.000,N,00000.000,E,0.0,0.0,040526,,,A") // null island
	fixes, st := readAll(t, in, noRollover)
	if len(fixes) != 4 || st.Backwards != 1 || st.Jumps != 2 || st.BadCoords != 1 || st.Rejected != 3 {
		t.Errorf("got %d fixes, stats %+v; want 4 fixes (one after a step back), 2 jumps, null island",
			len(fixes), st)
	}
	if len(fixes) == 4 && fixes[2].Time.Format("15:04:05.00") != "12:00:00.50" {
		t.Errorf("third fix at %s, want the one after the step back (12:00:00.50)", fixes[2].Time)
	}
}

// A fix at the very time of the previous one is a repeat (gpsd sends one again after a reconnect; an NMEA
// epoch merges it), not news: dropped and counted.
func TestPlausibilityRepeat(t *testing.T) {
	c := newChecker(Config{})
	var st Stats
	f := Fix{Time: time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC), Lat: 48.1, Lon: 11.5, Mode: 3}
	if _, ok := c.check(f, &st); !ok {
		t.Fatal("the first fix was refused")
	}
	if _, ok := c.check(f, &st); ok || st.Repeats != 1 || st.Rejected != 1 {
		t.Errorf("a repeat: delivered %v, stats %+v; want dropped as a repeat", ok, st)
	}
}
