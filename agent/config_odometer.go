package agent

import (
	"fmt"
	"math"
	"time"
)

// OdometerConfig is the GPS odometer: the truck's mileage, kept across restarts and power cuts, and the
// trips and stops derived from its movement.
type OdometerConfig struct {
	// SetKM sets the odometer to the vehicle's own reading, in kilometres. It is applied once: the agent
	// remembers the value it applied, so a restart does not apply it again; a changed value applies again.
	// Absent: never set from the configuration (`waybill-agent odometer set` works too).
	SetKM *float64 `toml:"set_km"`
	// SaveDistance is how many metres may be driven before the reading is written to flash on its own; it is
	// also written with every batch of fixes and whenever the truck stops, at no extra cost. A power cut
	// loses less than this plus one second of driving. Zero: 1000 m. At least 100, at most 10,000.
	SaveDistance float64 `toml:"save_distance"`
	// StopAfter: standing still (below 1 m/s) this long inside a trip is a stop, reported with its duration
	// when the truck moves on. Zero: 60 s (a red light is not a stop). At least 10 s, at most 1 h.
	StopAfter time.Duration `toml:"stop_after"`
	// TripEndAfter: standing still this long ends the trip. Zero: 10 minutes. At least StopAfter, at most 24 h.
	TripEndAfter time.Duration `toml:"trip_end_after"`
}

func (c *OdometerConfig) defaults() {
	if c.SaveDistance == 0 {
		c.SaveDistance = 1000
	}
	if c.StopAfter == 0 {
		c.StopAfter = time.Minute
	}
	if c.TripEndAfter == 0 {
		c.TripEndAfter = 10 * time.Minute
	}
}

// validate checks the odometer section after defaults; each error names the key and what to write.
func (c OdometerConfig) validate() error {
	switch {
	case c.SetKM != nil && (math.IsNaN(*c.SetKM) || *c.SetKM < 0 || *c.SetKM > maxOdometerKM):
		return fmt.Errorf("odometer.set_km = %v: want the vehicle's reading in km, 0 to %d", *c.SetKM, maxOdometerKM)
	case c.SaveDistance < 100 || c.SaveDistance > 10_000:
		return fmt.Errorf("odometer.save_distance = %v: want metres between 100 and 10000 (default 1000)", c.SaveDistance)
	case c.StopAfter < 10*time.Second || c.StopAfter > time.Hour:
		return fmt.Errorf("odometer.stop_after = %s: want between \"10s\" and \"1h\" (default \"1m\")", c.StopAfter)
	case c.TripEndAfter < c.StopAfter || c.TripEndAfter > 24*time.Hour:
		return fmt.Errorf("odometer.trip_end_after = %s: want at least odometer.stop_after (%s) and at most \"24h\" (default \"10m\")",
			c.TripEndAfter, c.StopAfter)
	}
	return nil
}

// maxOdometerKM is the largest reading accepted: ten million kilometres, far beyond any truck.
const maxOdometerKM = 10_000_000
