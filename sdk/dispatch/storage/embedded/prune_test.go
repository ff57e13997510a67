package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/embedded"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

func openStore(tb testing.TB) *embedded.Store {
	office := sdktest.NewOffice(tb)
	st, err := embedded.Open(embedded.Options{Dir: tb.TempDir(), Outbox: dispatch.OutboxConfig{Certificate: office.Certificate, Key: office.Key}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// commitFixes commits n fixes of truck, one per 10 s from t0, in batches of 60.
func commitFixes(tb testing.TB, st *embedded.Store, truck string, epoch sdk.Epoch, t0 time.Time, n int) {
	for b := 0; b < n; b += 60 {
		var fs []dispatch.Fix
		for i := b; i < min(b+60, n); i++ {
			fs = append(fs, dispatch.Fix{Truck: truck, Epoch: epoch, Seq: uint64(i + 1), Fix: sdk.Fix{
				Time: t0.Add(time.Duration(i) * 10 * time.Second), Lat: 51.5, Lon: -0.1, Mode: 3}})
		}
		if err := st.Commit(context.Background(), dispatch.Update{Fixes: fs}); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestPruneManyFixes: a pass over more fixes than the archive reads in one transaction (three trucks of
// 12,000) in batches of 5,000 deletes exactly the old ones, each call going on where the last stopped.
func TestPruneManyFixes(t *testing.T) {
	st := openStore(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, tr := range []string{"truck-a", "truck-b", "truck-c"} {
		commitFixes(t, st, tr, sdk.Epoch{byte(3 - i)}, t0, 12000)
	}
	before := t0.Add(20 * time.Hour) // 7,200 of each truck's
	total, calls := 0, 0
	for {
		n, err := st.PruneFixes(context.Background(), before, 5000)
		if err != nil {
			t.Fatal(err)
		}
		total, calls = total+n, calls+1
		if n < 5000 {
			break
		}
	}
	if total != 3*7200 || calls != 5 {
		t.Fatalf("pruned %d in %d calls, want %d in 5", total, calls, 3*7200)
	}
	for _, tr := range []string{"truck-a", "truck-b", "truck-c"} {
		fs, err := st.Archive().Fixes(tr)
		if err != nil || len(fs) != 12000-7200 {
			t.Fatalf("%s: %v, %d fixes left, want %d", tr, err, len(fs), 12000-7200)
		}
		for _, f := range fs {
			if f.Fix.Time.Before(before) {
				t.Fatalf("%s kept a fix of %v", tr, f.Fix.Time)
			}
		}
	}
}

// BenchmarkPrune is retention on the embedded engine: fixes/s deleted in batches of 5,000 (one fsync'd
// bbolt transaction each), the archive holding as many newer fixes as old ones (compare
// sdk/dispatch/storage/postgres BenchmarkPrune). Run with -benchtime 200x.
func BenchmarkPrune(b *testing.B) {
	st := openStore(b)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := b.N * 1000 // make bench's 200x: 200,000 old fixes among 400,000
	commitFixes(b, st, "truck-1", sdk.Epoch{1}, t0, 2*n)
	before := t0.Add(time.Duration(n) * 10 * time.Second)
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
