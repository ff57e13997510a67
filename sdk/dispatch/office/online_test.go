package office_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/sdktest/faultproxy"
	"github.com/waybill-iot/waybill/sdk/sdktest/trucktest"
)

// A truck whose link is cut is offline at the office, on each engine: the broker's will arrives after
// the truck's status refreshes although it was signed when the truck connected; the truck is online again
// when its link comes back.
func TestTruckOfflineWhenItsLinkIsCut(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
			officeCl, trCl := b.ClientFiles("office"), b.Truck("truck-1")
			o := startOffice(t, b, officeCl, e.open(t, officeCl), "", trCl)
			link, err := faultproxy.Start(faultproxy.Config{Target: b.Addr})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { link.Close(context.Background()) })
			trucktest.Run(t, b, trCl, trucktest.Options{Broker: link.Addr(), StatusInterval: 200 * time.Millisecond})
			online := func() (bool, bool) {
				var ts []struct {
					Truck  string
					Online bool
				}
				json.Unmarshal(o.do(t, "GET", "/api/trucks", nil, 200), &ts)
				return len(ts) == 1 && ts[0].Online, len(ts) == 1
			}
			waitFor(t, "the truck online", func() bool { on, _ := online(); return on })
			time.Sleep(time.Second) // a few status refreshes (every 200 ms), each newer than the will
			link.SetBlackHole(true) // no reconnection while it lasts
			link.DropAll()
			waitFor(t, "the truck offline after its link was cut", func() bool { on, known := online(); return known && !on })
			link.Pass()
			waitFor(t, "the truck online again", func() bool { on, _ := online(); return on })
		})
	}
}
