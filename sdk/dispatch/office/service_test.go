package office_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	service "github.com/waybill-iot/waybill/sdk/dispatch/office"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/embedded"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/pgtest"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/postgres"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/sdktest/trucktest"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/sdk/truck"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "test-token-0123456789"

func transportConfig(b *sdktest.Broker, cl sdktest.Client) transport.Config {
	return transport.Config{Brokers: []string{"mqtts://" + b.Addr}, ClientID: cl.Name, CertFile: cl.CertFile,
		KeyFile: cl.KeyFile, CAFile: cl.CAFile, BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond}
}

// office runs a Service until the test ends.
type office struct {
	svc  *service.Service
	base string
	stop func()
}

func startOffice(t *testing.T, b *sdktest.Broker, cl sdktest.Client, st storage.Store, share string, trucks ...sdktest.Client) *office {
	t.Helper()
	return startOfficeConfig(t, b, cl, st, share, nil, trucks...)
}

// startOfficeConfig is startOffice with a change to the service's Config.
func startOfficeConfig(t *testing.T, b *sdktest.Broker, cl sdktest.Client, st storage.Store, share string, change func(*service.Config), trucks ...sdktest.Client) *office {
	t.Helper()
	ca, err := pki.LoadCertificates(cl.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	var certs []*x509.Certificate
	for _, tr := range trucks {
		c, _ := tr.CertKey(t)
		certs = append(certs, c)
	}
	cfg := service.Config{Store: st, Token: token, Listen: "127.0.0.1:0",
		Dispatch: dispatch.Config{Transport: transportConfig(b, cl), CA: ca, Certificates: certs, ShareGroup: share,
			ReceiptDelay: 100 * time.Millisecond}}
	if change != nil {
		change(&cfg)
	}
	svc, err := service.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	o := &office{svc: svc, base: "http://" + svc.Addr(), stop: func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("service Run: %v", err)
			}
		})
	}}
	t.Cleanup(o.stop)
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := svc.Client().Conn().Wait(wctx); err != nil {
		t.Fatalf("office never connected: %v", err)
	}
	return o
}

func (o *office) do(t *testing.T, method, path string, body any, want int) []byte {
	t.Helper()
	return sdktest.DoJSON(t, method, o.base+path, token, body, want)
}

type engine struct {
	name string
	open func(t *testing.T, cl sdktest.Client) storage.Store
}

func engines(parent *testing.T) []engine {
	var once sync.Once
	var cluster *pgtest.Cluster
	return []engine{
		{"embedded", func(t *testing.T, cl sdktest.Client) storage.Store {
			cert, key := cl.CertKey(t)
			st, err := embedded.Open(embedded.Options{Dir: t.TempDir(), Outbox: dispatch.OutboxConfig{
				Certificate: cert, Key: key, Poll: 50 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}},
		{"postgres", func(t *testing.T, cl sdktest.Client) storage.Store {
			once.Do(func() { cluster = pgtest.Start(parent) })
			return openPG(t, cluster.Database(t), cl)
		}},
	}
}

func openPG(t *testing.T, dsn string, cl sdktest.Client) *postgres.Store {
	cert, key := cl.CertKey(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := postgres.Open(ctx, postgres.Options{DSN: dsn, Certificate: cert, Key: key,
		Poll: 50 * time.Millisecond, OnlineGrace: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	sdktest.WaitFor(t, 20*time.Second, what, cond)
}

// An order created over the API reaches a real truck; the driver's delivery comes back into the API with
// its proof; the truck's fixes come back as a track in GeoJSON, GPX and CSV holding every fix.
func TestOrderRoundTrip(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	officeCl := b.ClientFiles("office")
	trCl := b.Truck("truck-1")
	for n, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			st := e.open(t, officeCl)
			o := startOffice(t, b, officeCl, st, "", trCl)
			tr, tst := trucktest.Run(t, b, trCl, trucktest.Options{Health: true})
			id := "o-" + e.name
			o.do(t, "POST", "/api/orders", map[string]any{"truck": "truck-1", "id": id, "recipient": "A. Jones",
				"address": "1 Quay St", "lat": 51.5, "lon": -0.1, "radius_m": 80}, http.StatusCreated)
			o.do(t, "POST", "/api/orders", map[string]any{"truck": "truck-1", "id": id, "lat": 95.0, "lon": 0}, http.StatusBadRequest)
			waitFor(t, "the truck's order book has the order", func() bool {
				_, ok, _ := tr.Book().Get(id)
				return ok
			})
			waitFor(t, "the office sees it received", func() bool {
				var v struct{ State string }
				json.Unmarshal(o.do(t, "GET", "/api/orders/truck-1/"+id, nil, 200), &v)
				return v.State == "received"
			})
			// Fixes, then the delivery with a fix 20 m from the destination.
			// Each subtest's fixes in their own hours: the office's persistent session (same identity, same
			// broker) may hand this office what the last subtest's truck sent after its office stopped.
			t0 := time.Now().UTC().Add(-10*time.Minute - time.Duration(n)*3*time.Hour).Truncate(time.Second)
			for i := range 30 {
				enc, err := truck.EncodeFix(sdk.Fix{Time: t0.Add(time.Duration(i) * 10 * time.Second), Lat: 51.49 + float64(i)*1e-4,
					Lon: -0.1, Mode: 3, Speed: 10, Has: sdk.FixSpeed})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tst.Append(context.Background(), enc); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := tr.Book().Act(context.Background(), truck.Action{OrderID: id, Kind: sdk.EventDelivered, Via: sdk.ViaButton,
				Fix: &sdk.Fix{Time: time.Now().UTC(), Lat: 51.50018, Lon: -0.1, Mode: 3}}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the office sees it delivered", func() bool {
				var v struct {
					State   string
					History []dispatch.Event
				}
				json.Unmarshal(o.do(t, "GET", "/api/orders/truck-1/"+id, nil, 200), &v)
				return v.State == "delivered" && len(v.History) >= 2
			})
			var proofs []struct {
				Order    string
				Verified struct {
					Signature    bool
					OrderHash    bool     `json:"order_hash"`
					DistanceM    *float64 `json:"distance_m"`
					WithinRadius *bool    `json:"within_radius"`
				}
			}
			json.Unmarshal(o.do(t, "GET", "/api/proofs?truck=truck-1", nil, 200), &proofs)
			// The office's persistent session may bring the other subtest's events too (same identities).
			for i := 0; i < len(proofs); i++ {
				if proofs[i].Order != id {
					proofs = append(proofs[:i], proofs[i+1:]...)
					i--
				}
			}
			if len(proofs) != 1 || proofs[0].Order != id || !proofs[0].Verified.OrderHash || proofs[0].Verified.DistanceM == nil ||
				*proofs[0].Verified.DistanceM > 25 || !*proofs[0].Verified.WithinRadius {
				t.Fatalf("proofs: %+v", proofs)
			}
			rng := fmt.Sprintf("from=%s&to=%s", t0.Format(time.RFC3339), t0.Add(time.Hour).Format(time.RFC3339))
			waitFor(t, "every fix archived", func() bool {
				var fc struct {
					Features []struct{ Geometry struct{ Type string } }
				}
				json.Unmarshal(o.do(t, "GET", "/api/trucks/truck-1/track?format=geojson&"+rng, nil, 200), &fc)
				pts := 0
				for _, f := range fc.Features {
					if f.Geometry.Type == "Point" {
						pts++
					}
				}
				return pts == 30
			})
			var g struct {
				Points []struct {
					Lat  float64 `xml:"lat,attr"`
					Time string  `xml:"time"`
				} `xml:"trk>trkseg>trkpt"`
			}
			if err := xml.Unmarshal(o.do(t, "GET", "/api/trucks/truck-1/track?format=gpx&"+rng, nil, 200), &g); err != nil || len(g.Points) != 30 {
				t.Fatalf("gpx: %v, %d points", err, len(g.Points))
			}
			csv := o.do(t, "GET", "/api/trucks/truck-1/track?format=csv&"+rng, nil, 200)
			if n := bytes.Count(csv, []byte("\n")); n != 31 {
				t.Fatalf("csv has %d lines, want 31", n)
			}
			o.do(t, "GET", "/api/trucks/truck-1/track?from=yesterday", nil, http.StatusBadRequest)
			var trucks []struct {
				Name        string
				Online      bool
				QueueDepth  *int       `json:"queue_depth"`
				StoreEpoch  string     `json:"store_epoch"`
				StoreOrigin string     `json:"store_origin"`
				StoreSince  *time.Time `json:"store_since"`
			}
			json.Unmarshal(o.do(t, "GET", "/api/trucks", nil, 200), &trucks)
			if len(trucks) != 1 || !trucks[0].Online || trucks[0].Name != "truck-1" {
				t.Fatalf("trucks: %+v", trucks)
			}
			// The truck's store: a new one (the test truck's first start), with its epoch and since when.
			if tr := trucks[0]; tr.StoreOrigin != "created" || len(tr.StoreEpoch) != 16 || tr.StoreSince == nil ||
				time.Since(*tr.StoreSince) > 10*time.Minute {
				t.Errorf("truck's store: origin %q epoch %q since %v; want created, 8 bytes in hex, just now",
					tr.StoreOrigin, tr.StoreEpoch, tr.StoreSince)
			}
			o.do(t, "DELETE", "/api/orders/truck-1/"+id, nil, http.StatusConflict) // delivered: cannot cancel
			metrics := o.do(t, "GET", "/metrics", nil, 200)
			if !bytes.Contains(metrics, []byte(`waybill_dispatch_orders{state="delivered"} 1`)) {
				t.Fatalf("metrics:\n%s", metrics)
			}
			req, _ := http.NewRequest("GET", o.base+"/api/orders", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("no token: %d", resp.StatusCode)
			}
		})
	}
}
