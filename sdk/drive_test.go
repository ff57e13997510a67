package sdk

import (
	"math"
	"math/rand/v2"
	"time"
)

// drive synthesises n 1 Hz fixes of a delivery truck in city traffic, deterministically from seed: it
// accelerates (up to 2 m/s²) to 8-14 m/s, sometimes 22 m/s on an arterial road, brakes to red lights and
// stops for 10-40 s, turns at 8-15 degrees per second, and climbs or descends gently. The receiver adds
// what real ones do: a slowly wandering position error of about 1-2 m, speed noise of 0.05-0.1 m/s,
// course noise of about 0.5 degree (no course when standing), altitude noise, a satellite count that
// changes every half minute or so and an HDOP that follows it.
func drive(n int, seed uint64) []TelemetryFix {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	const mPerDegLat = 111_320.0
	lat, lon := 52.520008, 13.404954 // Berlin
	heading := r.Float64() * 360
	speed, target := 0.0, 11.0
	stopFor, turnLeft, turnRate := 0, 0.0, 0.0
	errN, errE := 0.0, 0.0
	alt, climb := 38.0, 0.0
	sats, hdop := 10, 0.9
	t := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	out := make([]TelemetryFix, n)
	for i := range out {
		// Driver.
		switch {
		case stopFor > 0:
			stopFor--
			speed = 0
			if stopFor == 0 {
				target = 8 + r.Float64()*6
				if r.IntN(5) == 0 {
					target = 22
				}
			}
		case target == 0: // braking for a light
			speed = math.Max(0, speed-1.5-r.Float64())
			if speed == 0 {
				stopFor = 10 + r.IntN(30)
			}
		default:
			acc := math.Max(-2, math.Min(2, (target-speed)*0.4)) + r.NormFloat64()*0.15
			speed = math.Max(0, speed+acc)
			if r.IntN(60) == 0 {
				target = 0
			}
		}
		if turnLeft == 0 && speed > 3 && r.IntN(40) == 0 {
			turnLeft = 90
			turnRate = 8 + r.Float64()*7
			if r.IntN(2) == 0 {
				turnRate = -turnRate
			}
		}
		if turnLeft > 0 {
			step := math.Min(turnLeft, math.Abs(turnRate))
			heading += math.Copysign(step, turnRate)
			turnLeft -= step
		} else {
			heading += r.NormFloat64() * 0.3
		}
		heading = math.Mod(heading+360, 360)
		rad := heading * math.Pi / 180
		lat += speed * math.Cos(rad) / mPerDegLat
		lon += speed * math.Sin(rad) / (mPerDegLat * math.Cos(lat*math.Pi/180))
		if r.IntN(120) == 0 {
			climb = r.NormFloat64() * 0.04
		}
		alt += climb * speed

		// Receiver.
		errN = 0.95*errN + r.NormFloat64()*0.25
		errE = 0.95*errE + r.NormFloat64()*0.25
		if r.IntN(30) == 0 {
			sats = max(6, min(16, sats+r.IntN(3)-1))
			hdop = math.Round((0.6+8/float64(sats)*0.3+r.Float64()*0.1)*100) / 100
		}
		f := Fix{
			Time: t.Add(time.Duration(i) * time.Second),
			Lat:  lat + errN/mPerDegLat,
			Lon:  lon + errE/(mPerDegLat*math.Cos(lat*math.Pi/180)),
			Alt:  math.Round((alt+r.NormFloat64()*0.3)*10) / 10,
			Mode: 3, Sats: sats, HDOP: hdop,
			Has: FixAlt | FixSpeed | FixSats | FixHDOP,
		}
		// NMEA gives speed in knots with 1-3 decimals, positions to 1e-4 or 1e-5 minutes: round like a
		// receiver with 5-decimal minutes.
		f.Lat = math.Round(f.Lat*60e5) / 60e5
		f.Lon = math.Round(f.Lon*60e5) / 60e5
		f.Speed = math.Max(0, math.Round((speed+r.NormFloat64()*0.07)/0.514444*1000)*0.514444/1000)
		if speed > 0.5 {
			f.Course = math.Mod(math.Round((heading+r.NormFloat64()*0.5)*100)/100+360, 360)
			f.Has |= FixCourse
		}
		out[i] = TelemetryFix{Seq: 1000 + uint64(i), Fix: f}
	}
	return out
}
