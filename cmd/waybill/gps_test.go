package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps"
)

func runGPSCmd(t *testing.T, ctx context.Context, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, streams{strings.NewReader(stdin), &out, &errb}, args)
	return code, out.String(), errb.String()
}

func TestGPSDecodeCapture(t *testing.T) {
	capture := filepath.Join("..", "..", "gps", "testdata", "nmea", "bu353s4.log")
	code, out, errs := runGPSCmd(t, context.Background(), "", "gps", "decode", "--rollover-floor", "1980-01-06", capture)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 25 {
		t.Fatalf("%d fixes, want 25 (as gpsd)", len(lines))
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"time": "2014-12-31T03:07:19Z", "lat": -37.784788333, "lon": 175.314896667,
		"alt_m": 59.9, "speed_mps": 0.355, "course_deg": 181.39, "mode": 3.0, "sats": 8.0, "hdop": 1.1, "pdop": 1.8}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("%s = %v, want %v (line %s)", k, first[k], v, lines[0])
		}
	}
	// Stdin, and the default floor moves the 2014 receiver 1024 weeks forward.
	data, err := os.ReadFile(capture)
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ = runGPSCmd(t, context.Background(), string(data), "gps", "decode", "-")
	var f gps.Fix
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &f); code != 0 || err != nil ||
		f.Time.Format(time.RFC3339) != "2034-08-16T03:07:19Z" {
		t.Errorf("stdin: exit %d, first fix %+v (%v)", code, f, err)
	}
}

func TestGPSDecodeOmitsAbsentFields(t *testing.T) {
	in := "$GPRMC,120000.50,A,4807.038,N,01131.000,E,,,040526,,,A*5F\r\n"
	code, out, errs := runGPSCmd(t, context.Background(), in, "gps", "decode", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	const want = `{"time":"2026-05-04T12:00:00.5Z","lat":48.1173,"lon":11.516666667,"mode":2}`
	if strings.TrimSpace(out) != want {
		t.Errorf("got %s\nwant %s", out, want)
	}
}

func TestGPSUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"gps"}, 2},
		{[]string{"gps", "bogus"}, 2},
		{[]string{"gps", "--help"}, 0},
		{[]string{"gps", "decode", "--help"}, 0},
		{[]string{"gps", "sim", "--help"}, 0},
		{[]string{"gps", "decode"}, 2},
		{[]string{"gps", "decode", "/nonexistent"}, 1},
		{[]string{"gps", "sim", "--start", "91,0"}, 2},
		{[]string{"gps", "sim", "--rate", "0"}, 2},
	} {
		if code, _, errs := runGPSCmd(t, context.Background(), "", tc.args...); code != tc.code {
			t.Errorf("%v: exit %d, want %d (%s)", tc.args, code, tc.code, errs)
		}
	}
}

// gps sim --out writes decodable NMEA at the asked speed until interrupted; --pty prints a path.
func TestGPSSim(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sim.nmea")
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	code, _, errs := runGPSCmd(t, ctx, "", "gps", "sim", "--out", file, "--rate", "10", "--speedup", "2",
		"--start", "48.1,11.5", "--seed", "3", "--time", "2026-05-04T10:00:00Z")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	code, out, _ := runGPSCmd(t, context.Background(), "", "gps", "decode", file)
	n := strings.Count(out, "\n")
	// 1.5 s at 10 Hz times 2: about 30 epochs; a few may be lost fixes.
	if code != 0 || n < 15 || n > 35 || !strings.Contains(out, `"time":"2026-05-04T10:00:00Z","lat":48.1`) {
		t.Errorf("exit %d, %d fixes:\n%s", code, n, out)
	}

	ctx, cancel = context.WithCancel(context.Background())
	pr, pw, _ := os.Pipe()
	done := make(chan int)
	go func() {
		done <- run(ctx, streams{strings.NewReader(""), pw, os.Stderr}, []string{"gps", "sim", "--rate", "5"})
	}()
	path, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil || !strings.HasPrefix(path, "/dev/pts/") {
		t.Errorf("pty path %q (%v)", path, err)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("sim --pty exit %d", code)
	}
	pw.Close()
	pr.Close()
}
