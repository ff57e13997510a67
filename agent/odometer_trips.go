package agent

import (
	"github.com/waybill-iot/waybill/sdk/gpsfix"
	"time"

	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/sdk"
)

// Movement thresholds, as the reporting filter's (gps.FilterConfig): below stopSpeed a truck may be
// standing; above startSpeed, or startDistance of odometer from where it stood, it moves again. The gap
// between them keeps a standing receiver's wandering speed from flapping between the two.
const (
	stopSpeed     = 1.0 // m/s
	startSpeed    = 2.5 // m/s
	startDistance = 50  // metres
)

// tripDetector turns the fixes and the odometer into movement events (pure: time from the fixes):
//
//   - trip_start when a parked truck (no trip open: after start, or after a trip ended) moves;
//   - stop when the truck moves on after standing StopAfter or longer inside a trip; its duration is idle
//     time, added to the trip's Idle;
//   - trip_end when it has stood TripEndAfter: dated where and when it stopped, with the trip's distance
//     (odometer at the stop minus at the start) and duration (start to that stop).
//
// Without an ignition input this is all movement: an engine idling at a customer and one switched off look
// the same. The state is in memory, so a restart in the middle of a trip begins a new trip at the next
// movement, without a trip_end for the old one; the odometer itself is kept.
type tripDetector struct {
	stopAfter, endAfter time.Duration
	started             bool
	inTrip              bool
	tripStart           time.Time
	tripOdo             float64 // odometer where the trip began
	idle                time.Duration
	slow                bool // standing since slowFix
	slowFix             gps.Fix
	slowOdo             float64
	stopped             bool // standing for StopAfter
	parkOdo             float64
	last                gps.Fix
}

func newTripDetector(cfg OdometerConfig) *tripDetector {
	return &tripDetector{stopAfter: cfg.StopAfter, endAfter: cfg.TripEndAfter}
}

// standing reports whether the truck is stopped (StopAfter or more) or parked.
func (d *tripDetector) standing() bool { return d.started && (!d.inTrip || d.stopped) }

func (d *tripDetector) speed(f gps.Fix) float64 {
	if f.HasSpeed() {
		return f.Speed
	}
	if dt := f.Time.Sub(d.last.Time).Seconds(); d.started && dt > 0 {
		return gps.Distance(d.last.Lat, d.last.Lon, f.Lat, f.Lon) / dt
	}
	return 0
}

func (d *tripDetector) next(f gps.Fix, odo float64) []sdk.Event {
	if d.started && f.Time.Before(d.last.Time) {
		// The receiver's time stepped back: move what is timed on the old clock by the step, so standing
		// and trip times go on as if no time had passed across it.
		step := f.Time.Sub(d.last.Time)
		d.tripStart, d.slowFix.Time = d.tripStart.Add(step), d.slowFix.Time.Add(step)
		d.last.Time = f.Time
	}
	v := d.speed(f)
	if !d.started {
		d.started, d.parkOdo, d.last = true, odo, f
	}
	d.last = f
	if !d.inTrip {
		if v < startSpeed && odo-d.parkOdo < startDistance {
			d.parkOdo = min(d.parkOdo, odo)
			return nil
		}
		d.inTrip, d.tripStart, d.tripOdo, d.idle, d.slow, d.stopped = true, f.Time, d.parkOdo, 0, false, false
		return []sdk.Event{{Kind: sdk.EventTripStart, Time: f.Time, Fix: tripFix(f), Odometer: uint64(d.parkOdo)}}
	}
	if !d.slow {
		if v < stopSpeed {
			d.slow, d.slowFix, d.slowOdo = true, f, odo
		}
		return nil
	}
	stood := f.Time.Sub(d.slowFix.Time)
	if d.stopped && (v >= startSpeed || odo-d.slowOdo >= startDistance) {
		d.slow, d.stopped = false, false
		d.idle += stood
		return []sdk.Event{{Kind: sdk.EventStop, Time: d.slowFix.Time, Fix: tripFix(d.slowFix), Odometer: uint64(d.slowOdo), Duration: stood}}
	}
	if !d.stopped && v >= stopSpeed {
		d.slow = false // slowed down, did not stop
		return nil
	}
	if stood >= d.endAfter {
		d.inTrip, d.slow, d.stopped, d.parkOdo = false, false, false, d.slowOdo
		return []sdk.Event{{Kind: sdk.EventTripEnd, Time: d.slowFix.Time, Fix: tripFix(d.slowFix), Odometer: uint64(d.slowOdo),
			Distance: uint64(max(0, d.slowOdo-d.tripOdo)), Duration: d.slowFix.Time.Sub(d.tripStart), Idle: d.idle}}
	}
	if stood >= d.stopAfter {
		d.stopped = true
	}
	return nil
}

func tripFix(f gps.Fix) *sdk.Fix {
	s := gpsfix.From(f)
	return &s
}
