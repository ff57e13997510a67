package office_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	service "github.com/waybill-iot/waybill/sdk/dispatch/office"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// TestRetention, on each engine: a running office with keep_fixes prunes the fixes older than that by
// itself, in batches, at every pass (an old fix that comes again goes at the next), keeps the rest and
// every event, counts them in /metrics and logs the pass.
func TestRetention(t *testing.T) {
	_, officeCl := officePKI(t)
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			st := e.open(t, officeCl)
			ctx := context.Background()
			now := time.Now().UTC().Truncate(time.Second)
			keep := 30 * 24 * time.Hour
			var fs []dispatch.Fix
			for i := range 60 { // one a day: 30 older than keep_fixes (day 31 on), 30 newer
				fs = append(fs, dispatch.Fix{Truck: "truck-1", Epoch: sdk.Epoch{1}, Seq: uint64(i + 1),
					Fix: sdk.Fix{Time: now.Add(-time.Duration(i)*24*time.Hour - time.Minute), Lat: 51.5, Lon: -0.1, Mode: 3}})
			}
			if err := st.Commit(ctx, dispatch.Update{Fixes: fs}); err != nil {
				t.Fatal(err)
			}
			ev := dispatch.Event{Truck: "truck-1", Sent: now.Add(-50 * 24 * time.Hour), Event: sdk.Event{Kind: sdk.EventArrived,
				Epoch: sdk.Epoch{1}, RecordSeq: 100, Time: now.Add(-50 * 24 * time.Hour), OrderID: "o-1", Revision: 1, Via: sdk.ViaButton}}
			if err := st.Commit(ctx, dispatch.Update{Event: &ev}); err != nil {
				t.Fatal(err)
			}
			logs := &sdktest.SyncBuffer{}
			base := startBareOffice(t, officeCl, st, func(c *service.Config) {
				c.KeepFixes, c.PruneEvery, c.PruneBatch, c.Logger = keep, 50*time.Millisecond, 7, logger(logs)
			})
			pruned := func(want int) {
				t.Helper()
				waitFor(t, fmt.Sprintf("%d fixes pruned", want), func() bool {
					m := string(sdktest.DoJSON(t, "GET", base+"/metrics", token, nil, 200))
					return strings.Contains(m, fmt.Sprintf("waybill_dispatch_fixes_pruned_total %d\n", want)) &&
						!strings.Contains(m, "waybill_dispatch_prune_last_pass_seconds 0\n")
				})
			}
			pruned(30)
			rng := "from=" + now.Add(-100*24*time.Hour).Format(time.RFC3339) + "&to=" + now.Add(time.Hour).Format(time.RFC3339)
			var track struct {
				Features []struct{ Geometry struct{ Type string } }
			}
			json.Unmarshal(sdktest.DoJSON(t, "GET", base+"/api/trucks/truck-1/track?format=geojson&"+rng, token, nil, 200), &track)
			points := 0
			for _, f := range track.Features {
				if f.Geometry.Type == "Point" {
					points++
				}
			}
			if points != 30 {
				t.Fatalf("the track after pruning has %d points, want the 30 newer fixes", points)
			}
			var evs []dispatch.Event
			json.Unmarshal(sdktest.DoJSON(t, "GET", base+"/api/trucks/truck-1/events?"+rng, token, nil, 200), &evs)
			if len(evs) != 1 {
				t.Fatalf("events after pruning: %+v, want the one", evs)
			}
			if err := st.Commit(ctx, dispatch.Update{Fixes: fs[45:46]}); err != nil { // an old batch comes again
				t.Fatal(err)
			}
			pruned(31)
			if !strings.Contains(logs.String(), "retention: fixes pruned") || !strings.Contains(logs.String(), "keep_fixes=30d") {
				t.Fatalf("log:\n%s", logs)
			}
		})
	}
}
