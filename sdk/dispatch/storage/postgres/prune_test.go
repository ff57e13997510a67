package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/pgtest"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/postgres"
)

// TestPruneConcurrently: three processes prune one database at once, in batches of 5,000, while a fourth
// ingests: every fix older than the cutoff is deleted exactly once (the counts add up) and every newer one
// stays. It logs the rate and the slowest batch (the longest a batch's row locks are held).
func TestPruneConcurrently(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.Database(t)
	st := open(t, dsn)
	const trucks, per = 4, 25000 // one fix per 10 s from 2026-01-01: about 69 hours each
	commitFixes(t, st, trucks, per)
	before := time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC) // 48 h: 17,280 fixes of each truck
	const wantOld = trucks * 17280
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	total, batches := 0, 0
	var slowest, took time.Duration
	start := time.Now()
	for _, p := range []*postgres.Store{st, open(t, dsn), open(t, dsn)} {
		wg.Go(func() {
			for {
				t0 := time.Now()
				n, err := p.PruneFixes(ctx, before, 5000)
				d := time.Since(t0)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				total, batches, slowest = total+n, batches+1, max(slowest, d)
				mu.Unlock()
				if n < 5000 {
					mu.Lock()
					took = max(took, time.Since(start))
					mu.Unlock()
					return
				}
			}
		})
	}
	live := open(t, dsn) // another truck's ingest meanwhile, newer than the cutoff: all of it stays
	const liveFixes = 6000
	wg.Go(func() {
		for b := 0; b < liveFixes; b += 60 {
			var fs []dispatch.Fix
			for i := b; i < b+60; i++ {
				fs = append(fs, dispatch.Fix{Truck: "truck-live", Epoch: sdk.Epoch{7}, Seq: uint64(i + 1),
					Fix: sdk.Fix{Time: before.Add(time.Duration(i) * time.Second), Lat: 51.5, Lon: -0.1, Mode: 3}})
			}
			if err := live.Commit(ctx, dispatch.Update{Fixes: fs}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	var left, old int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE t < $1) FROM fixes`, before).Scan(&left, &old); err != nil {
		t.Fatal(err)
	}
	if total != wantOld || old != 0 || left != trucks*(per-17280)+liveFixes {
		t.Fatalf("pruned %d, want %d; left %d of which %d old, want %d and 0", total, wantOld, left, old, trucks*(per-17280)+liveFixes)
	}
	t.Logf("PostgreSQL, 3 processes at once: %d fixes pruned in %d batches in %v (%.0f fixes/s), slowest batch %v",
		total, batches, took.Round(time.Millisecond), float64(total)/took.Seconds(), slowest.Round(time.Millisecond))
}

// BenchmarkPrune is retention on PostgreSQL: fixes/s deleted in batches of 5,000 (one statement each), the
// table holding as many newer fixes as old ones; the test cluster runs with fsync=off. Run with
// -benchtime 200x.
func BenchmarkPrune(b *testing.B) {
	c := pgtest.Start(b)
	st := open(b, c.Database(b))
	n := b.N * 1000            // make bench's 200x: 200,000 old fixes among 400,000
	commitFixes(b, st, 1, 2*n) // one fix per 10 s from 2026-01-01
	before := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n) * 10 * time.Second)
	b.ResetTimer()
	total := 0
	for {
		got, err := st.PruneFixes(context.Background(), before, 5000)
		if err != nil {
			b.Fatal(err)
		}
		if total += got; got < 5000 {
			break
		}
	}
	if total != n {
		b.Fatalf("pruned %d, want %d", total, n)
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "fixes/s")
}
