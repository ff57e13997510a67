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
// last GSA's fix type: the same reading as gpsd. An epoch's fix is what it was at its last report point,
// found as gpsd finds it: the learned cycle-ender sentence, or any position or mode sentence until one is
// known, or with marine instruments (DBT) every untimed data sentence. A cycle cut short before its ender,
// and a fix reported before the first date, yield nothing, as in gpsd. On the 51 captures that matches
// 1,077 of gpsd's 1,078 fix epochs (TestParityWithGpsd). The other is an epoch of bt451, a spliced
// recording whose time goes back 52 minutes: gpsd, with only the time of day in that GGA, dated it a
// day late; we date it by the ZDA of the same epoch, at the same position and mode
// (TestParityGpsdMisdatesSplice). We report no fix gpsd did not.
//
// Checks: a date before Config.RolloverFloor (default DefaultRolloverFloor, 2026-01-01) is the GPS
// week-rollover bug and is moved forward by 1024 weeks, logged once; fixes out of range or at exactly
// 0,0, at the very time of the previous fix (a repeat), or further from it than Config.MaxSpeed allows
// over the time between them are dropped and counted in Stats (after five in a row the new position is
// believed, so one bad fix cannot block the rest). A receiver's time may step back (a receiver that
// corrects its clock, moves its epoch or restarts): the fix is delivered, as gpsd does, logged and counted
// in Stats.Backwards; the Filter and the Odometer start their timings over from it instead of ignoring
// every fix until the receiver's time catches up.
//
// # Reporting filter
//
// Filter.Push(fix, dst) takes every fix and appends the fixes to send, with their Reason; Flush releases
// what it holds when the input ends. It is pure: time comes from the fixes (GPS time, no RTC needed) or
// an injected FilterConfig.Clock. FilterConfig.Mode picks one of two filters; the default is curve
// logging, because on every drive measured it sends fewer bytes than either threshold filter and keeps
// the track within its bounds where they are off by tens of metres (table below).
//
// Curve logging (FilterCurve, Geotab's kind of filter) buffers the 1 Hz fixes after the last logged one
// and runs Ramer-Douglas-Peucker on position and speed together whenever the buffer fills, the newest fix
// departs from what the last logged fix predicts (straight on at its speed and course) by more than a
// bound, Timeout passes, or the truck stops or starts; it keeps only the fixes needed to redraw the drive
// within PositionError (5 m) and SpeedError (5 km/h). The distance is time-synchronised: a dropped fix is
// compared with the point of the redrawn line at its own time, as a map replaying the drive shows it.
//
//   - Timeout 100 s (Geotab's): a fix at least that often while moving, even on a straight road.
//   - MaxDelay 60 s: vertices found in bends wait and leave with the next full commit, which comes at
//     the latest 60 s after the first fix following the last release and always carries the newest fix.
//     Dispatch's newest position is thus never older than with the thresholds' 60 s Period (plus the
//     agent's batching in both cases), and a drive's fixes leave in one burst a minute: one signed
//     message where a vertex at a time would make several.
//   - Buffer 128 fixes, allocated with the filter (about 16 KiB), plus as many ready vertices: memory
//     is bounded whatever the drive; a full buffer commits. Push allocates nothing.
//   - Stopped and moving as below; each transition is a full commit. While stopped, fixes within half
//     the bounds of the stop point are not buffered (only the last is held, logged when the truck
//     leaves), so a long stop costs two fixes and a heartbeat every StoppedPeriod.
//
// Cost: 0.45 us per fix on a 2.3 GHz Xeon, 32 us under qemu-arm-static for ARMv7 (BenchmarkCurvePush).
//
// Thresholds (FilterThresholds; Next is this filter whatever Mode says) reports a fix as soon as a
// criterion fires. Teltonika's defaults are the reference: while moving a record every 300 s, 100 m,
// 10 degrees or 10 km/h of speed change; stopped, every 3600 s. Ours, and why:
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
//
// Both modes:
//
//   - Stopped and moving with hysteresis: stopped after StopAfter 30 s below 1 m/s, moving again above
//     2.5 m/s or 50 m from the stop point. Each transition is reported at once: the exact place and time
//     of a delivery stop matter to dispatch, which Teltonika only shows at the next period.
//   - StoppedPeriod 15 min (3600 s): a truck at a customer is what dispatch asks about; a heartbeat
//     every quarter hour shows the unit is alive for 4 messages an hour.
//   - MaxHDOP 5: worse fixes (tens of metres of error, urban canyons) are dropped, not reported.
//
// Zero means the default, a negative value disables a criterion.
//
// The table (go test ./gps -run TestTrackTable -v) runs each mode over generated 1 Hz drives (three
// seeds each: 8 km of city streets with turns, lights, a roundabout and a 5-minute delivery; 30 km of
// motorway at 85-90 km/h with ramps; 4 km of stop-and-go) with receiver noise (Gauss-Markov wander of
// 1.5-2 m, 60 s, plus Doppler speed noise), and over the only moving stretch in testdata/nmea
// (bundg_zeus_9, a chartplotter on a boat: 148 fixes, 0.43 km). Teltonika is FMB "on moving" data
// acquisition at its wiki's defaults (above) run through our thresholds filter, with our stop detection
// and our 2.5 m/s course gate. Per km of the 1 Hz odometer: fixes, messages, and bytes on the wire:
// sdk.Telemetry encoded and signed (ECDSA P-256) as the truck does, cut as the agent commits (30 fixes
// or 30 s after the first), in an MQTT v5 QoS 1 PUBLISH in one TLS 1.3 record (22 bytes), plus the
// PUBACK in its own record; TCP/IP headers are not counted. Errors: distance of each 1 Hz fix from the
// redrawn track (straight lines, time-interpolated) and of its speed, maximum and 95th percentile, and
// the logged track's length against the 1 Hz odometer (the odometer itself is computed from every fix on
// the truck; this column shows what a consumer summing the logged fixes would get).
//
//	drive        mode                 fix/km  msg/km  B/km  pos max  p95 m  spd max  p95 km/h  odometer
//	city         every fix (1 Hz)      149.7    5.03  2220      0.0    0.0      0.0       0.0    +0.0 %
//	city         Teltonika defaults     25.7    4.05  1276      7.2    3.2     13.8       7.9    -2.1 %
//	city         thresholds             12.8    3.83  1110     10.6    4.8     18.7       9.4    -2.6 %
//	city         curve 3 m, 3 km/h      25.2    2.53   902      2.9    1.7      2.7       1.3    -1.8 %
//	city         curve 5 m, 5 km/h      20.4    2.50   852      4.8    2.1      5.0       1.7    -1.9 %
//	city         curve 10 m, 10 km/h    14.8    2.42   781      8.2    3.6      9.9       5.5    -2.2 %
//	highway      every fix (1 Hz)       45.7    1.53   655      0.0    0.0      0.0       0.0    +0.0 %
//	highway      Teltonika defaults      9.4    1.45   445      5.9    1.3      9.9       1.9    -0.1 %
//	highway      thresholds              5.1    1.27   369      6.4    3.1     10.9       3.3    -0.1 %
//	highway      curve 3 m, 3 km/h       3.6    0.77   231      2.9    1.8      3.0       1.3    -0.1 %
//	highway      curve 5 m, 5 km/h       2.8    0.77   225      5.0    2.5      4.6       1.8    -0.1 %
//	highway      curve 10 m, 10 km/h     2.2    0.77   218      9.9    4.3      9.9       2.8    -0.1 %
//	stop-and-go  every fix (1 Hz)      294.9    9.97  4421      0.0    0.0      0.0       0.0    +0.0 %
//	stop-and-go  Teltonika defaults     24.7    7.67  2206     47.8    9.0     18.1      10.2    -5.7 %
//	stop-and-go  thresholds             20.4    7.24  2048     45.7   12.5     19.6      11.6    -5.6 %
//	stop-and-go  curve 3 m, 3 km/h      50.1    5.09  1813      3.0    1.7      3.0       1.4    -4.6 %
//	stop-and-go  curve 5 m, 5 km/h      39.8    5.09  1719      5.0    2.1      4.9       2.1    -4.7 %
//	stop-and-go  curve 10 m, 10 km/h    29.8    5.09  1624      9.4    4.7      9.8       5.8    -4.9 %
//	capture      every fix (1 Hz)      346.5   11.71  4842      0.0    0.0      0.0       0.0    +0.0 %
//	capture      Teltonika defaults     30.4    9.36  2655     19.9    2.4      3.6       2.2    -4.9 %
//	capture      thresholds             18.7    7.02  1953     56.4   36.5      3.1       1.9   -13.4 %
//	capture      curve 3 m, 3 km/h      25.8    7.02  2018      2.2    1.1      2.8       2.4    -0.2 %
//	capture      curve 5 m, 5 km/h       9.4    7.02  1845      1.9    1.5      2.8       2.0    -0.3 %
//	capture      curve 10 m, 10 km/h     9.4    7.02  1845      1.9    1.5      2.8       2.0    -0.3 %
//
// Messages, not fixes, set the price: a signed message with one fix costs 258 bytes on the wire, each
// further consecutive 1 Hz fix 6, an irregularly spaced one (what any filter sends) about 12. Curve logging sends more fixes than the thresholds in stop-and-go traffic, yet fewer
// bytes, because its fixes leave in one burst a minute. The odometer column is mostly receiver noise
// while stopped, which the 1 Hz sum counts and any logged track drops.
//
// # Caveats
//
//   - An epoch ends when a sentence with another time arrives, at the end of the input, or when a
//     live line is silent for 100 ms (the serial read timeout). A fix therefore leaves one epoch late
//     on a replay, and within about 100 ms of the burst's end on a serial port; a cycle whose report
//     sentence never arrives yields no fix.
//   - Fixes before the first date (RMC or ZDA) cannot be timed and are dropped (Stats.NoDate).
//   - The GPSD source reports what gpsd reports: gpsd computes speeds the receiver did not give, and it
//     applies its own week-rollover rule before ours.
//   - The serial source holds the port exclusively (TIOCEXCL); do not run it against a port gpsd owns.
package gps
