package postgres_test

import (
	"context"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/pgtest"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/postgres"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t testing.TB, dsn string) *postgres.Store {
	t.Helper()
	office := sdktest.NewOffice(t)
	cert, key := office.Certificate, office.Key
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := postgres.Open(ctx, postgres.Options{DSN: dsn, Certificate: cert, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// commitFixes commits n fixes of each of trucks trucks in batches of 60, one fix per 10 s.
func commitFixes(tb testing.TB, st *postgres.Store, trucks, n int) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for tr := range trucks {
		name := "truck-" + string(rune('a'+tr%26)) + string(rune('a'+tr/26))
		for b := 0; b < n; b += 60 {
			var fs []dispatch.Fix
			for i := b; i < min(b+60, n); i++ {
				fs = append(fs, dispatch.Fix{Truck: name, Epoch: sdk.Epoch{byte(tr), 1}, Seq: uint64(i + 1), Fix: sdk.Fix{
					Time: t0.Add(time.Duration(i) * 10 * time.Second), Lat: 51.5 + float64(i)*1e-5, Lon: -0.1,
					Speed: 13.4, Course: 181.3, Sats: 10, HDOP: 0.8, Alt: 20.5, Mode: 3,
					Has: sdk.FixAlt | sdk.FixSpeed | sdk.FixCourse | sdk.FixSats | sdk.FixHDOP}})
			}
			if err := st.Commit(ctx, dispatch.Update{Fixes: fs}); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// TestFixBytes measures what a stored fix costs on disk (heap, primary key and time index) and states
// what a year of 1,000 trucks at one fix per 10 s takes.
func TestFixBytes(t *testing.T) {
	c := pgtest.Start(t)
	st := open(t, c.Database(t))
	const trucks, per = 4, 6000
	commitFixes(t, st, trucks, per)
	ctx := context.Background()
	if _, err := st.Pool().Exec(ctx, "VACUUM ANALYZE fixes"); err != nil {
		t.Fatal(err)
	}
	var total int64
	if err := st.Pool().QueryRow(ctx, "SELECT pg_total_relation_size('fixes')").Scan(&total); err != nil {
		t.Fatal(err)
	}
	var heap, pk int64
	_ = st.Pool().QueryRow(ctx, "SELECT pg_relation_size('fixes'), pg_relation_size('fixes_pkey')").Scan(&heap, &pk)
	t.Logf("heap %d, primary key (store, time, seq) %d bytes per fix", heap/(trucks*per), pk/(trucks*per))
	perFix := float64(total) / (trucks * per)
	year := perFix * 1000 * (365 * 24 * 3600 / 10)
	t.Logf("PostgreSQL fix storage: %.1f bytes per fix (heap and primary key); a year of 1,000 trucks "+
		"at one fix per 10 s (3.15e9 fixes): %.0f GB", perFix, year/1e9)
	if perFix > 125 {
		t.Errorf("%.1f bytes per fix: the layout grew (it was about 100)", perFix)
	}
}

// BenchmarkIngest is archive ingest on PostgreSQL: fixes/s in telemetry batches of 60, one transaction each.
func BenchmarkIngest(b *testing.B) {
	c := pgtest.Start(b)
	st := open(b, c.Database(b))
	b.ResetTimer()
	commitFixes(b, st, 1, b.N*60)
	b.ReportMetric(float64(b.N*60)/b.Elapsed().Seconds(), "fixes/s")
}
