package gps_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/gps/gpssim"
)

// plug starts a simulated receiver on a fresh pseudo-terminal reachable at link (like a udev symlink),
// and returns a function that unplugs it: stops the writer, closes the pty, removes the link.
func plug(t *testing.T, link string, start time.Time) (unplug func()) {
	t.Helper()
	p, err := gpssim.OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(p.Path, link); err != nil {
		t.Fatal(err)
	}
	sim := gpssim.New(gpssim.Config{Start: start, Rate: 10, Speedup: 1,
		Route: gpssim.RouteConfig{Seed: 7, LostFixRate: -1, TunnelLen: -1}})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sim.Run(ctx, p.Master)
	}()
	var once sync.Once
	unplug = func() {
		once.Do(func() {
			cancel()
			p.Close() // also unblocks a write into a full pty
			wg.Wait()
			os.Remove(link)
		})
	}
	t.Cleanup(unplug)
	return unplug
}

// The serial source on a real pseudo-terminal: fixes arrive; the receiver is unplugged (the pty and its
// link disappear) and plugged back; reading recovers and Health tells the story.
func TestSerialOnPTYRecoversFromUnplug(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "gps0")
	t0 := time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)
	unplug := plug(t, link, t0)

	src := gps.NewSerial(gps.SerialConfig{Device: link, MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond, ProbeTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fixes := make(chan gps.Fix, 100)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, fixes) }()

	waitFix := func(after time.Time) gps.Fix {
		t.Helper()
		for {
			select {
			case f, ok := <-fixes:
				if !ok {
					t.Fatal("fixes closed early")
				}
				if !f.Time.Before(after) {
					return f
				}
			case <-ctx.Done():
				t.Fatalf("no fix after %s; health %+v", after, src.Health())
			}
		}
	}
	f := waitFix(t0)
	if f.Mode != gps.Mode3D || f.Sats != 12 {
		t.Errorf("first fix %+v: want the simulator's 3D fix with 12 satellites", f)
	}
	if h := src.Health(); !h.Connected {
		t.Errorf("health %+v: want connected", h)
	}

	unplug()
	deadline := time.Now().Add(5 * time.Second)
	for src.Health().Connected && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	h := src.Health()
	if h.Connected {
		t.Fatalf("still connected after unplug: %+v", h)
	}
	if s := h.Status(time.Now(), 0); len(s) < 12 || s[:12] != "no GPS since" {
		t.Errorf("status %q, want \"no GPS since ...\"", s)
	}

	t1 := t0.Add(time.Hour) // the receiver comes back later in GPS time too
	plug(t, link, t1)
	f = waitFix(t1)
	if h := src.Health(); !h.Connected || h.Reopens == 0 || h.LastFixGPS.Before(t1) {
		t.Errorf("after replug: health %+v", h)
	}
	cancel()
	if err := <-done; err != context.Canceled && err != context.DeadlineExceeded {
		t.Errorf("Run returned %v, want the context's error", err)
	}
	if _, ok := <-fixes; ok {
		for range fixes {
		}
	}
}
