package agent

import (
	"time"

	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/gpsfix"
)

// Movement thresholds, as the reporting filter's (gps.FilterConfig): below stopSpeed a truck may be
// standing; above startSpeed, or startDistance of odometer from where it stood, it moves again. The gap
// between them keeps a standing receiver's wandering speed from flapping between the two.
const (
	stopSpeed     = 1.0 // m/s
	startSpeed    = 2.5 // m/s
	startDistance = 50  // metres
)

// tripDetector turns the fixes, the odometer and the ignition input into movement events (pure: time
// comes from the fixes and the ignition changes). Without an ignition input trips follow movement:
//
//   - trip_start when a parked truck (no trip open: after start, or after a trip ended) moves;
//   - stop when the truck moves on after standing StopAfter or longer inside a trip; its duration is idle
//     time, added to the trip's Idle;
//   - trip_end when it has stood TripEndAfter: dated where and when it stopped, with the trip's distance
//     (odometer at the stop minus at the start) and duration (start to that stop).
//
// An engine idling at a customer and one switched off look the same there. With an ignition input
// (followIgnition) the ignition decides instead:
//
//   - trip_start when the ignition comes on, at the latest fix; without a fix yet, at the first fix (time
//     and place), so there is no trip without a position;
//   - stop as above, standing with the engine on (idle time as fleets count it); a stop still going on at
//     ignition off is reported then, and counts to the trip's idle time if it lasted StopAfter;
//   - trip_end when the ignition goes off, at the latest fix, with the distance, duration (ignition on to
//     off) and idle time. Standing does not end the trip, however long.
//
// Movement with the ignition off (towed, or the input wired wrong) is not a trip: it is counted by the
// odometer and marked (towed) for the log. The state is in memory, so a restart in the middle of a trip
// begins a new trip (at the next movement, or at once when the ignition is on), without a trip_end for the
// old one; the odometer itself is kept.
type tripDetector struct {
	stopAfter, endAfter time.Duration
	ignition            bool // trips follow the ignition input
	ignOn               bool // the ignition's last known state (followIgnition)
	towed               bool // moving with the ignition off, since towOdo
	towOdo              float64
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
	lastV               float64 // the speed at last
}

func newTripDetector(cfg OdometerConfig) *tripDetector {
	return &tripDetector{stopAfter: cfg.StopAfter, endAfter: cfg.TripEndAfter}
}

// followIgnition makes trips follow the ignition input from now on; the ignition counts as off until
// ignite says otherwise. Call it before the first fix.
func (d *tripDetector) followIgnition() { d.ignition = true }

// standing reports whether the truck is stopped (StopAfter or more) or parked (not towed).
func (d *tripDetector) standing() bool { return d.started && (!d.inTrip && !d.towed || d.stopped) }

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
		// and trip times go on as if no time had passed across it. An ignition trip is timed by the
		// agent's clock, which the receiver's step does not move.
		step := f.Time.Sub(d.last.Time)
		if !d.ignition {
			d.tripStart = d.tripStart.Add(step)
		}
		d.slowFix.Time = d.slowFix.Time.Add(step)
		d.last.Time = f.Time
	}
	v := d.speed(f)
	if !d.started {
		d.started, d.parkOdo, d.last = true, odo, f
	}
	d.last, d.lastV = f, v
	switch {
	case d.inTrip:
	case d.ignition && d.ignOn: // the ignition came on before the first fix
		return d.start(f.Time, f, odo)
	case d.ignition:
		d.offMovement(f, v, odo)
		return nil
	case v < startSpeed && odo-d.parkOdo < startDistance:
		d.parkOdo = min(d.parkOdo, odo)
		return nil
	default:
		return d.start(f.Time, f, d.parkOdo)
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
	if stood >= d.endAfter && !d.ignition {
		d.inTrip, d.slow, d.stopped, d.parkOdo = false, false, false, d.slowOdo
		return []sdk.Event{{Kind: sdk.EventTripEnd, Time: d.slowFix.Time, Fix: tripFix(d.slowFix), Odometer: uint64(d.slowOdo),
			Distance: uint64(max(0, d.slowOdo-d.tripOdo)), Duration: d.slowFix.Time.Sub(d.tripStart), Idle: d.idle}}
	}
	if stood >= d.stopAfter {
		d.stopped = true
	}
	return nil
}

// start opens a trip at time at, place f and odometer odo. A trip started by the ignition usually starts
// standing: the engine idles from then (not from the fix's time, which may be long before).
func (d *tripDetector) start(at time.Time, f gps.Fix, odo float64) []sdk.Event {
	d.inTrip, d.tripStart, d.tripOdo, d.idle, d.slow, d.stopped, d.towed = true, at, odo, 0, false, false, false
	if d.ignition && d.lastV < stopSpeed {
		d.slow, d.slowFix, d.slowOdo = true, f, odo
		d.slowFix.Time = at
	}
	return []sdk.Event{{Kind: sdk.EventTripStart, Time: at, Fix: tripFix(f), Odometer: uint64(odo)}}
}

// offMovement follows a truck with the ignition off: moving as a trip would start is towed; standing
// StopAfter again ends that.
func (d *tripDetector) offMovement(f gps.Fix, v, odo float64) {
	switch {
	case !d.towed && (v >= startSpeed || odo-d.parkOdo >= startDistance):
		d.towed, d.towOdo, d.slow = true, d.parkOdo, false
	case !d.towed:
		d.parkOdo = min(d.parkOdo, odo)
	case v >= stopSpeed:
		d.slow = false
	case !d.slow:
		d.slow, d.slowFix, d.slowOdo = true, f, odo
	case f.Time.Sub(d.slowFix.Time) >= d.stopAfter:
		d.towed, d.slow, d.parkOdo = false, false, d.slowOdo
	}
}

// ignite takes a debounced change of the ignition input at time at (the agent's clock) with the odometer
// at odo, and returns the events it completes. Without followIgnition it does nothing.
func (d *tripDetector) ignite(on bool, at time.Time, odo float64) []sdk.Event {
	if !d.ignition || on == d.ignOn {
		return nil
	}
	d.ignOn = on
	if on {
		d.towed, d.slow = false, false
		if !d.started {
			return nil // no fix yet: the trip starts at the first
		}
		return d.start(at, d.last, odo)
	}
	if !d.inTrip {
		return nil // on and off again before the first fix
	}
	var evs []sdk.Event
	if d.slow {
		if stood := at.Sub(d.slowFix.Time); stood >= d.stopAfter {
			d.idle += stood
			evs = append(evs, sdk.Event{Kind: sdk.EventStop, Time: d.slowFix.Time, Fix: tripFix(d.slowFix),
				Odometer: uint64(d.slowOdo), Duration: stood})
		}
	}
	evs = append(evs, sdk.Event{Kind: sdk.EventTripEnd, Time: at, Fix: tripFix(d.last), Odometer: uint64(odo),
		Distance: uint64(max(0, odo-d.tripOdo)), Duration: max(0, at.Sub(d.tripStart)), Idle: d.idle})
	d.inTrip, d.slow, d.stopped, d.parkOdo = false, false, false, odo
	return evs
}

func tripFix(f gps.Fix) *sdk.Fix {
	s := gpsfix.From(f)
	return &s
}
