package embedded_test

import (
	"context"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/embedded"
)

// BenchmarkIngest is archive ingest on the embedded engine: fixes/s in telemetry batches of 60, one
// fsync'd bbolt transaction each (compare sdk/dispatch/storage/postgres BenchmarkIngest).
func BenchmarkIngest(b *testing.B) {
	office := sdktest.NewOffice(b)
	cert, key := office.Certificate, office.Key
	st, err := embedded.Open(embedded.Options{Dir: b.TempDir(), Outbox: dispatch.OutboxConfig{Certificate: cert, Key: key}})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ResetTimer()
	for i := range b.N {
		fs := make([]dispatch.Fix, 60)
		for j := range fs {
			n := i*60 + j
			fs[j] = dispatch.Fix{Truck: "truck-1", Epoch: sdk.Epoch{1}, Seq: uint64(n + 1), Fix: sdk.Fix{
				Time: t0.Add(time.Duration(n) * 10 * time.Second), Lat: 51.5, Lon: -0.1, Mode: 3}}
		}
		if err := st.Commit(context.Background(), dispatch.Update{Fixes: fs}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*60)/b.Elapsed().Seconds(), "fixes/s")
}
