// Package gps turns the bytes of a real NMEA 0183 receiver into one trustworthy Fix per epoch, and
// decides which fixes are worth sending over an expensive, weak link.
//
// # Basics
//
// Sources deliver fixes on a channel; each has the same shape, so the agent can declare a one-method
// interface for whichever it runs:
//
//		Run(ctx context.Context, out chan<- gps.Fix) error // closes out when it returns
//		Health() gps.Health                                 // "no GPS since ...", counters
//
//	  - Serial (NewSerial): a serial port via go.bug.st/serial (the only file importing it), fixed or
//	    automatic baud rate, reopened with backoff when it fails or disappears.
//	  - GPSD (NewGPSD): gpsd's JSON on TCP 2947, for units where gpsd owns the receiver.
//	  - Replay (NewReplay): a capture file at the receiver's pace (or faster), or as fast as possible.
//
// Underneath, Reader does the work on any io.Reader: Framer cuts sentences (resynchronising on '$',
// bounding the line length, verifying checksums, skipping NULs and binary), go-nmea decodes them with
// tolerant RMC and GGA parsers registered on a private nmea.SentenceParser (go-nmea v1.10.0 rejects
// RMC with 11 fields, GGA quality 8 and truncated GGA, all sent by real receivers), and the sentences of
// one epoch (RMC, GGA, GSA, VTG, GNS, GLL, ZDA; any talker: GP, GN, GL, GA, GB, BD, QZ, ...) are merged
// into one Fix. An epoch without a fix yields nothing, never zeros. Optional fields the receiver did not
// give are NaN (Sats: 0); see Fix.
//
// Every capture in testdata/nmea (gpsd's regression captures, BSD-2-Clause, see COPYING.gpsd) is
// decoded and compared with gpsd's own answers; each remaining disagreement is listed with its reason
// in captures_test.go. Where several sentences of an epoch give a value, the last one wins; the mode
// comes from GGA (quality, satellites used, altitude present), else GSA, else RMC/GLL status with the
// last GSA's fix type: the same reading as gpsd.
//
// Checks: a date before Config.RolloverFloor (default DefaultRolloverFloor, 2026-01-01) is the GPS
// week-rollover bug and is moved forward by 1024 weeks, logged once; fixes out of range or at exactly
// 0,0, not later than the previous fix, or further from it than Config.MaxSpeed allows are dropped and
// counted in Stats (after five in a row the new position is believed, so one bad fix cannot block the
// rest).
//
// # Reporting filter
//
// Filter.Next(fix) (bool, Reason) is pure: time comes from the fixes (GPS time, no RTC needed) or an
// injected FilterConfig.Clock. Teltonika's defaults are the reference: while moving a record every 300 s,
// 100 m, 10 degrees or 10 km/h of speed change; stopped, every 3600 s. Ours, and why:
//
//   - Period 60 s (Teltonika 300 s): dispatch watches a live map and estimates arrival times; fixes
//     are batched into few messages, so a minute costs little and five is too stale in a city.
//   - MinDistance 200 m (100 m): the heading criterion already draws every corner, so distance only
//     has to cover straight roads; 100 m at 90 km/h would be a fix every 4 s on a motorway.
//   - MinHeading 15 degrees (10), but only above HeadingMinSpeed 2.5 m/s: below walking pace a GPS
//     course is noise and Teltonika's 10 degrees fires constantly in traffic jams and car parks.
//   - MinSpeedChange 10 km/h: as Teltonika.
//   - MinInterval 5 s: distance, heading and speed reports are held back that long, so a roundabout
//     does not produce a burst; state changes and periods are not held back.
//   - Stopped and moving with hysteresis: stopped after StopAfter 30 s below 1 m/s, moving again above
//     2.5 m/s or 50 m from the stop point. Each transition is reported at once: the exact place and time
//     of a delivery stop matter to dispatch, which Teltonika only shows at the next period.
//   - StoppedPeriod 15 min (3600 s): a truck at a customer is what dispatch asks about; a heartbeat
//     every quarter hour shows the unit is alive for 4 messages an hour.
//   - MaxHDOP 5: worse fixes (tens of metres of error, urban canyons) are dropped, not reported.
//
// Zero means the default, a negative value disables a criterion.
//
// # Caveats
//
//   - An epoch ends when a sentence with another time arrives, at the end of the input, or when a
//     live line is silent for 100 ms (the serial read timeout). A fix therefore leaves one epoch late
//     on a replay, and within about 100 ms of the burst's end on a serial port.
//   - Fixes before the first date (RMC or ZDA) cannot be timed and are dropped (Stats.NoDate).
//   - The GPSD source reports what gpsd reports: gpsd computes speeds the receiver did not give, and it
//     applies its own week-rollover rule before ours.
//   - The serial source holds the port exclusively (TIOCEXCL); do not run it against a port gpsd owns.
package gps
