package gps_test

import (
	"bytes"
	"context"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps"
)

var keepDates = gps.Config{RolloverFloor: time.Date(1980, 1, 6, 0, 0, 0, 0, time.UTC)}

func decodeAll(t *testing.T, path string, cfg gps.Config) []gps.Fix {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := gps.NewReader(f, cfg)
	var out []gps.Fix
	for {
		fix, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fix)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Real gpsd, fed a capture by gpsfake, read by our gpsd source: the same fixes as decoding the file.
func TestGPSDSourceMatchesDirectDecode(t *testing.T) {
	gpsfake, err := exec.LookPath("gpsfake")
	if err != nil {
		t.Fatal("gpsfake not found: apt-get install gpsd gpsd-clients")
	}
	if _, err := exec.LookPath("gpsd"); err != nil {
		if _, err := os.Stat("/usr/sbin/gpsd"); err != nil {
			t.Fatal("gpsd not found: apt-get install gpsd gpsd-clients")
		}
	}
	capture := filepath.Join("testdata", "nmea", "sirfstarv-nmea.log")
	want := decodeAll(t, capture, keepDates)

	port := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	// -1: play the log once; -q: quiet; -c: 20 ms between sentences (about 7 s for this capture).
	cmd := exec.CommandContext(ctx, gpsfake, "-1", "-q", "-P", strconv.Itoa(port), "-c", "0.02", "-s", "38400", capture)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.Env = append(os.Environ(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.WaitDelay = 2 * time.Second // gpsd, its child, may keep our pipes open
	// gpsfake's gpsd child would survive a kill of gpsfake alone: run both in their own process group
	// and end the group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fakeDone := make(chan error, 1)
	go func() { fakeDone <- cmd.Wait() }()

	src := gps.NewGPSD(gps.GPSDConfig{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		MinBackoff: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Decode: keepDates})
	runCtx, stop := context.WithCancel(ctx)
	fixes := make(chan gps.Fix, 256)
	runDone := make(chan error, 1)
	go func() { runDone <- src.Run(runCtx, fixes) }()

	// Collect until gpsd has been quiet for 2 s after the first fix (gpsfake -1 keeps running while a
	// client is connected) or gpsfake exits.
	var got []gps.Fix
	var fakeErr error
	quiet := time.NewTimer(time.Hour)
collect:
	for {
		select {
		case f := <-fixes:
			got = append(got, f)
			quiet.Reset(2 * time.Second)
		case <-quiet.C:
			break collect
		case fakeErr = <-fakeDone:
			fakeDone = nil
			quiet.Reset(time.Second)
		case <-runCtx.Done():
			break collect
		}
	}
	stop()
	<-runDone
	for f := range fixes {
		got = append(got, f)
	}
	cancel() // ends the gpsfake process group, whether or not gpsfake exited by itself
	if fakeDone != nil {
		<-fakeDone
	} else {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if len(got) < 2 {
		t.Fatalf("%d fixes from gpsd (gpsfake: %v)\n%s", len(got), fakeErr, stderr.String())
	}
	direct := map[time.Time]gps.Fix{}
	for _, w := range want {
		direct[w.Time] = w
	}
	// gpsd 3.22 spends the first epochs of a new device identifying it (it probes for SiRF binary) and
	// learning its reporting cycle: it reports nothing for them, then one fix as 2D before its first GGA.
	// From its second fix on, every fix must be the one we decode ourselves, and none may be missing.
	for i, g := range got[1:] {
		w, ok := direct[g.Time]
		if !ok {
			t.Errorf("gpsd fix %d at %s: direct decoding has no fix at this time", i+1, g.Time.Format(time.RFC3339Nano))
			continue
		}
		if math.Abs(g.Lat-w.Lat) > 1e-6 || math.Abs(g.Lon-w.Lon) > 1e-6 || g.Mode != w.Mode ||
			w.HasSpeed() && math.Abs(g.Speed-w.Speed) > 0.01 || w.HasAlt() && math.Abs(g.Alt-w.Alt) > 0.01 {
			t.Errorf("%s:\n gpsd   %+v\n direct %+v", w.Time.Format(time.RFC3339Nano), g, w)
		}
	}
	n := 0
	for _, w := range want {
		if w.Time.After(got[0].Time) {
			n++
		}
	}
	if len(got)-1 != n {
		t.Errorf("after gpsd's first fix (%s): gpsd gave %d fixes, direct decoding %d", got[0].Time, len(got)-1, n)
	}
	if n < len(want)*3/4 {
		t.Errorf("gpsd's start-up swallowed %d of %d epochs", len(want)-n, len(want))
	}
	t.Logf("%d fixes compared; health %+v", len(want), src.Health())
}
