package office_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/dispatch/storage/pgtest"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/sdktest/trucktest"
)

// twoOffices is two office processes, "office-a" and "office-b" (separate identities, pools and MQTT
// connections), on one PostgreSQL database and one share group, with real Mosquitto.
type twoOffices struct {
	b      *sdktest.Broker
	dsn    string
	a, bo  *office
	trucks []sdktest.Client // issued, and known to both offices
}

func startTwoOffices(t *testing.T, trucks ...string) twoOffices {
	t.Helper()
	r := twoOffices{b: sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office-a", "office-b"}})}
	for _, name := range trucks {
		r.trucks = append(r.trucks, r.b.Truck(name))
	}
	r.dsn = pgtest.Start(t).Database(t)
	const group = "dispatch-test-0123456789abcdef"
	clA, clB := r.b.ClientFiles("office-a"), r.b.ClientFiles("office-b")
	r.a = startOffice(t, r.b, clA, openPG(t, r.dsn, clA), group, r.trucks...)
	r.bo = startOffice(t, r.b, clB, openPG(t, r.dsn, clB), group, r.trucks...)
	return r
}

// Two office processes (separate identities, pools and MQTT connections) on one PostgreSQL database and
// one share group; one is stopped in the middle. Every order still reaches the truck and is delivered, and
// every event is in the database exactly once.
func TestTwoOfficesOneDatabase(t *testing.T) {
	r := startTwoOffices(t, "truck-1")
	b, a, bo, trCl := r.b, r.a, r.bo, r.trucks[0]
	dsn, clA := r.dsn, r.b.ClientFiles("office-a")
	tr, _ := trucktest.Run(t, b, trCl, trucktest.Options{})

	const n = 12
	for i := range n {
		o := a
		if i%2 == 1 && i < n/2 {
			o = bo
		}
		o.do(t, "POST", "/api/orders", map[string]any{"truck": "truck-1", "id": fmt.Sprintf("o-%d", i),
			"address": "Quay", "lat": 51.5, "lon": -0.1, "radius_m": 80}, http.StatusCreated)
		if i == n/2 {
			bo.stop() // mid-run: it created orders, holds some claims and some of the share group's messages
		}
	}
	delivered := map[string]bool{}
	start := time.Now()
	waitFor(t, "every order delivered on the truck", func() bool {
		for i := range n {
			trucktest.Deliver(t, tr, delivered, fmt.Sprintf("o-%d", i))
		}
		if len(delivered) < n && time.Since(start) > 15*time.Second {
			var list []struct {
				Order     struct{ ID string }
				State     string
				Sends     int
				LastError string `json:"last_error"`
			}
			json.Unmarshal(a.do(t, "GET", "/api/orders", nil, 200), &list)
			t.Logf("office: %+v", list)
			start = time.Now()
		}
		return len(delivered) == n
	})
	waitFor(t, "every order delivered in the office", func() bool {
		var list []struct{ State string }
		json.Unmarshal(a.do(t, "GET", "/api/orders", nil, 200), &list)
		done := 0
		for _, e := range list {
			if e.State == "delivered" {
				done++
			}
		}
		return len(list) == n && done == n
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := openPG(t, dsn, clA).Pool()
	var events, distinct int
	// A received event the broker handed to the stopped office comes back with the truck's re-send.
	waitFor(t, "every event in the database", func() bool {
		if err := conn.QueryRow(ctx, "SELECT count(*), count(DISTINCT (order_id, body->'event'->>'kind')) FROM events").Scan(&events, &distinct); err != nil {
			t.Fatal(err)
		}
		return events >= 2*n
	})
	if events != 2*n || distinct != 2*n {
		t.Fatalf("%d events (%d distinct order/kind) in the database, want %d received + delivered", events, distinct, 2*n)
	}
}
