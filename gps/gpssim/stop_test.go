package gpssim

import (
	"context"
	"testing"
	"time"
)

// TestRunStopsWhileNobodyReads: nobody reads the pseudo-terminal, so its buffer fills and the write blocks;
// when ctx ends, Run returns at once (a `waybill gps sim` without a reader stopped only on SIGKILL).
func TestRunStopsWhileNobodyReads(t *testing.T) {
	p, err := OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sim := New(Config{Route: RouteConfig{Seed: 1}, Speedup: 1000})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Run(ctx, p.Master) }()
	time.Sleep(time.Second) // a thousand epochs: far more than the terminal holds
	select {
	case err := <-done:
		t.Fatalf("Run returned before ctx ended: %v", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run still blocked in a write 5 s after ctx ended")
	}
}
