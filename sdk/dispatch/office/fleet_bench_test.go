package office_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	service "github.com/waybill-iot/waybill/sdk/dispatch/office"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/embedded"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/pgtest"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/postgres"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// BenchmarkFleetMap is the console's "fleet on the map" request, GET /api/fleet, with 10,000 trucks'
// last positions and online statuses, on each engine: each request's time through the handler (reading
// the store and encoding the JSON), reported as p50 and p99.
//
//	go test -run XXX -bench FleetMap ./sdk/dispatch/office/
func BenchmarkFleetMap(b *testing.B) {
	p, err := pki.Init(pki.Config{Dir: filepath.Join(b.TempDir(), "pki")}, pki.CAOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := p.Issue(pki.RoleDispatch, "office", pki.IssueOptions{}); err != nil {
		b.Fatal(err)
	}
	cert, _ := pki.LoadCertificate(p.CertPath("office"))
	key, err := pki.LoadPrivateKey(p.KeyPath("office"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("embedded", func(b *testing.B) {
		st, err := embedded.Open(embedded.Options{Dir: b.TempDir(), Outbox: dispatch.OutboxConfig{Certificate: cert, Key: key}})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		fleetMap(b, p, st)
	})
	b.Run("postgres", func(b *testing.B) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st, err := postgres.Open(ctx, postgres.Options{DSN: pgtest.Start(b).Database(b), Certificate: cert, Key: key})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		fleetMap(b, p, st)
	})
}

func fleetMap(b *testing.B, p *pki.PKI, st storage.Store) {
	const trucks = 10000
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	for i := range trucks {
		name := fmt.Sprintf("truck-%05d", i)
		f := dispatch.Fix{Truck: name, Epoch: sdk.Epoch{1}, Seq: 1, Fix: sdk.Fix{Time: now, Lat: 48 + float64(i%100)*0.05,
			Lon: 2 + float64(i/100)*0.05, Mode: 3, Speed: 12, Has: sdk.FixSpeed}}
		if err := st.Commit(ctx, dispatch.Update{Fixes: []dispatch.Fix{f}}); err != nil {
			b.Fatal(err)
		}
		if err := st.Commit(ctx, dispatch.Update{Status: &dispatch.Status{Truck: name,
			Status: sdk.Status{State: sdk.StateOnline, Time: now}}}); err != nil {
			b.Fatal(err)
		}
	}
	svc, err := service.New(service.Config{Store: st, Token: token, Listen: "127.0.0.1:0",
		Dispatch: dispatch.Config{Transport: transport.Config{Brokers: []string{"mqtts://127.0.0.1:1"}, ClientID: "office",
			CertFile: p.CertPath("office"), KeyFile: p.KeyPath("office"), CAFile: p.CAPath()}, CA: []*x509.Certificate{p.CACert()}}})
	if err != nil {
		b.Fatal(err)
	}
	h := svc.Handler()
	var durs []time.Duration
	var size int
	for b.Loop() {
		req := httptest.NewRequest("GET", "/api/fleet", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		t0 := time.Now()
		h.ServeHTTP(rec, req)
		durs = append(durs, time.Since(t0))
		if rec.Code != http.StatusOK {
			b.Fatalf("GET /api/fleet: %d %s", rec.Code, rec.Body.Bytes())
		}
		size = rec.Body.Len()
	}
	slices.Sort(durs)
	q := func(p float64) float64 { return float64(durs[int(p*float64(len(durs)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(size), "bytes/response")
}
