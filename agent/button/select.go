package button

import (
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/truck"
)

// Nearest is the default selection: the active order nearest to the fix when there is one, else the
// oldest received active order; ties go to the smaller id. The driver page lists active orders in the
// same order and marks this one Next.
func Nearest(entries []truck.Entry, fix sdk.Fix, hasFix bool) (truck.Entry, bool) {
	var best truck.Entry
	var bestD float64
	found := false
	for _, e := range entries {
		if e.State != truck.StateActive {
			continue
		}
		var d float64
		if hasFix {
			d = float64(int64(truck.Distance(fix.Lat, fix.Lon, e.Order.Lat, e.Order.Lon) + 0.5)) // whole metres, as the page shows
		}
		better := !found || d < bestD ||
			(d == bestD && (e.Received.Before(best.Received) || e.Received.Equal(best.Received) && e.Order.ID < best.Order.ID))
		if better {
			best, bestD, found = e, d, true
		}
	}
	return best, found
}
