package office_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// TestCreateDefaultsAndPartialRevision, on both engines: an order created without radius_m gets
// dispatch.DefaultRadiusM (not 0, which the truck would never arrive within); a revision (PUT) changes
// only what it names, an empty string clears a text field, and lat and lon are required on create only.
func TestCreateDefaultsAndPartialRevision(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	officeCl := b.ClientFiles("office")
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			o := startOffice(t, b, officeCl, e.open(t, officeCl), "")
			get := func(body []byte) dispatch.Entry {
				t.Helper()
				var v dispatch.Entry
				if err := json.Unmarshal(body, &v); err != nil {
					t.Fatal(err)
				}
				return v
			}
			c := get(o.do(t, "POST", "/api/orders", map[string]any{"truck": "truck-1", "id": "o-1", "recipient": "A. Jones",
				"address": "1 Quay St", "lat": 51.5, "lon": -0.1, "notes": "ring twice"}, http.StatusCreated))
			if c.Order.RadiusM != dispatch.DefaultRadiusM {
				t.Errorf("created without radius_m: radius %d m, want %d", c.Order.RadiusM, dispatch.DefaultRadiusM)
			}
			o.do(t, "POST", "/api/orders", map[string]any{"truck": "truck-1", "id": "o-2", "address": "x"}, http.StatusBadRequest)

			r := get(o.do(t, "PUT", "/api/orders/truck-1/o-1", map[string]any{"address": "2 Quay St", "lat": 51.5002},
				http.StatusOK))
			if r.Order.Revision != 2 || r.Order.Address != "2 Quay St" || r.Order.Lat != 51.5002 || r.Order.Lon != -0.1 ||
				r.Order.Recipient != "A. Jones" || r.Order.Notes != "ring twice" || r.Order.RadiusM != dispatch.DefaultRadiusM ||
				!r.Order.Expires.Equal(c.Order.Expires) {
				t.Errorf("revision 2 %+v: want the new address and latitude, everything else kept", r.Order)
			}
			r = get(o.do(t, "PUT", "/api/orders/truck-1/o-1", map[string]any{"notes": "", "radius_m": 40}, http.StatusOK))
			if r.Order.Revision != 3 || r.Order.Notes != "" || r.Order.RadiusM != 40 || r.Order.Address != "2 Quay St" {
				t.Errorf("revision 3 %+v: want the notes cleared and a 40 m radius", r.Order)
			}
			o.do(t, "PUT", "/api/orders/truck-1/o-9", map[string]any{"notes": "x"}, http.StatusNotFound)
		})
	}
}
