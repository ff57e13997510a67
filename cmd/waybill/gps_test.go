package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
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

// `waybill gps sky --replay` on a real capture prints one view per receiver epoch with satellite data; the
// last has gpsd's 12 satellites (bu353s4.log.chk), 7 of them used, and its DOPs.
func TestGPSSkyReplay(t *testing.T) {
	capture := filepath.Join("..", "..", "gps", "testdata", "nmea", "bu353s4.log")
	code, out, errs := runGPSCmd(t, context.Background(), "", "gps", "sky", "--replay", capture, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var last gps.Sky
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatal(err)
	}
	if len(lines) < 5 || len(last.Satellites) != 12 || last.Used() != 7 || last.Mode != gps.Mode3D || last.HDOP != 1.1 {
		t.Fatalf("%d views, last %+v", len(lines), last)
	}
	code, out, _ = runGPSCmd(t, context.Background(), "", "gps", "sky", "--replay", capture)
	if code != 0 || strings.Count(out, "satellites: ") != len(lines) || !strings.HasSuffix(out, "   17  GPS       71  207   31  Y\n   20  GPS       17   70   18  Y\n   24  GPS       12  219    -  \n"+
		"   26  GPS        8  293   24  Y\n   28  GPS       59   95   30  Y\n   30  GPS       23   11   29  Y\n\n") ||
		!strings.Contains(out, "fix 3D  HDOP 1.10  PDOP 1.90  VDOP 1.60  satellites: 12 in view, 7 used") {
		t.Errorf("exit %d, table:\n%s", code, out)
	}
	code, out, _ = runGPSCmd(t, context.Background(), "", "gps", "sky", "--replay", capture, "--once")
	if code != 0 || strings.Count(out, "satellites: ") != 1 {
		t.Errorf("--once: exit %d:\n%s", code, out)
	}
}

// --agent reads a running agent's GET /sky (here a listener serving a real capture's view), with the token;
// bad invocations say what is wrong.
func TestGPSSkyAgentAndUsage(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "..", "gps", "testdata", "nmea", "neo-m8n.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := gps.NewReader(f, gps.Config{})
	for _, err := r.Next(); err == nil || err == gps.ErrNoData; _, err = r.Next() {
	}
	sky := r.Sky()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/sky" || req.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(sky)
	}))
	defer srv.Close()
	code, out, errs := runGPSCmd(t, context.Background(), "", "gps", "sky", "--agent", srv.URL, "--token", "tok", "--once", "--json")
	var got gps.Sky
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got.Satellites) != len(sky.Satellites) || len(got.Satellites) < 20 {
		t.Fatalf("exit %d, %q %s", code, out, errs)
	}
	code, _, errs = runGPSCmd(t, context.Background(), "", "gps", "sky", "--agent", srv.URL, "--once")
	if code == 0 || !strings.Contains(errs, "--token") {
		t.Errorf("without the token: exit %d, %s", code, errs)
	}
	for _, args := range [][]string{{}, {"--replay", "x", "--agent", "http://127.0.0.1:1"}, {"--agent", "127.0.0.1:8080"}} {
		code, _, errs := runGPSCmd(t, context.Background(), "", append([]string{"gps", "sky"}, args...)...)
		if code == 0 || errs == "" {
			t.Errorf("%v: exit %d, %q", args, code, errs)
		}
	}
}
