package gps

import (
	"math"
	"time"
)

// epoch accumulates the sentences of one receiver cycle.
type epoch struct {
	t       tod
	n       int // sentences merged
	seen    [kindZDA + 1]bool
	rmcA    byte // RMC status
	gllA    byte // GLL status
	gnsMode byte // GNS mode (first constellation with a fix)
	faaN    bool // some sentence's FAA mode said "no fix"
	quality int  // GGA
	gsaFix  int  // GSA fix type (highest over the constellations' GSAs)
	posKind kind // which sentence gave the position
	lat     float64
	lon     float64
	hasPos  bool
	alt     float64
	speed   float64
	course  float64
	hdop    float64
	pdop    float64
	ggaSats int
	gsaSats int // summed over one GSA per constellation
	gnsSats int
	dgps    bool
}

func (e *epoch) reset(t tod) {
	nan := math.NaN()
	*e = epoch{t: t, quality: -1, ggaSats: -1, gnsSats: -1, alt: nan, speed: nan, course: nan, hdop: nan, pdop: nan}
}

// posRank orders the sentences that can give a position: GGA and GNS come with the altitude of the same
// solution, so they win over RMC, and RMC over GLL.
func posRank(k kind) int {
	switch k {
	case kindGGA, kindGNS:
		return 3
	case kindRMC:
		return 2
	case kindGLL:
		return 1
	}
	return 0
}

// assembler merges the sentences of each epoch into one Fix. It is pure: no clock, no I/O.
//
// An epoch is the set of sentences with the same UTC time of day, plus the sentences without a time (GSA,
// VTG) that arrive between them. It ends when a sentence with another time arrives or the caller calls
// flush (end of input, or silence on a live line: receivers send each epoch as one burst). Its Fix is the
// epoch as it stood at its last report (cycleDetector): gpsd's answer.
type assembler struct {
	cur      epoch
	lastT    tod   // time of the last epoch flushed, to drop its stragglers
	date     ymd   // last calendar date seen (RMC, ZDA)
	dateMS   int64 // time of day when date was seen
	haveDate bool
	noDate   uint64 // epochs with a position but no date yet (no Fix possible)
	noFix    uint64 // epochs in which the receiver said it had no fix
	prevMode Mode   // mode of the previous epoch
	gsaFix   int    // fix type of the last GSA, for epochs without one
	gsaMS    int64  // time of day of that GSA's epoch

	cyc          cycleDetector
	reported     bool  // cur has been reported (snap holds it as it was then)
	snap         epoch // cur at its last report
	snapDate     ymd   // the date known then: a fix reported before its date is untimed, as in gpsd
	snapDateMS   int64
	snapHaveDate bool
	unreported   uint64 // epochs with a position that the receiver's cycle never reported
}

// stickyGSAFor is how long a GSA's fix type stands for epochs that have none (milliseconds).
const stickyGSAFor = 5000

func absMS(d int64) int64 {
	if d < 0 {
		return -d
	}
	return d
}

func newAssembler() *assembler {
	a := &assembler{}
	a.cur.reset(tod{})
	return a
}

// sameEpoch reports whether two times of day belong to one epoch. Some receivers print the same instant
// with two and three decimals in different sentences (Magellan 315: GLL 120827.523, GGA 120827.52); no
// receiver produces epochs 10 ms apart.
func sameEpoch(a, b tod) bool { return absMS(a.ms-b.ms) < 10 }

// add merges one observation; it returns a Fix when the observation closed an epoch that had one.
// Observations of sentences without fix data (kindOther) only drive the cycle detector.
func (a *assembler) add(o obs) (Fix, bool) {
	var out Fix
	var ok bool
	if o.force {
		// A no-fix sentence without a time (receivers without a fix send empty RMC and GGA): the epoch
		// in progress ends with its last report, and this report has no time, so no fix.
		out, ok = a.flush()
		a.cyc.step(o)
		return out, ok
	}
	if o.timed {
		switch {
		case a.cur.t.valid && !sameEpoch(o.t, a.cur.t):
			out, ok = a.flush()
			a.cur.t = o.t
		case !a.cur.t.valid && a.lastT.valid && sameEpoch(o.t, a.lastT):
			return Fix{}, false // a straggler of an epoch already flushed
		default:
			a.cur.t = o.t // the later sentence's time wins, as everything else
		}
	}
	if o.date.valid && o.t.valid {
		a.date, a.dateMS, a.haveDate = o.date, o.t.ms, true
	}
	if o.kind != kindOther {
		a.merge(o)
	}
	if a.cyc.step(o) {
		a.report()
	}
	return out, ok
}

// report records the epoch as it stands: the fix gpsd would report at this sentence. An epoch's Fix is
// what it was at its last report; what arrives after that and before the next epoch is not part of it.
func (a *assembler) report() {
	a.snap, a.snapDate, a.snapDateMS, a.snapHaveDate, a.reported = a.cur, a.date, a.dateMS, a.haveDate, true
}

func (a *assembler) merge(o obs) {
	e := &a.cur
	e.n++
	e.seen[o.kind] = true
	if o.faa == 'N' {
		e.faaN = true
	}
	if o.faa == 'D' {
		e.dgps = true
	}
	switch o.kind {
	case kindRMC:
		e.rmcA = o.status
	case kindGLL:
		e.gllA = o.status
	case kindGNS:
		e.gnsMode = o.faa
		if o.sats >= 0 {
			e.gnsSats = o.sats
		}
	case kindGGA:
		e.quality = o.quality
		if o.quality == 2 {
			e.dgps = true
		}
		if o.sats >= 0 {
			e.ggaSats = o.sats
		}
	case kindGSA:
		if o.fixType > e.gsaFix {
			e.gsaFix = o.fixType
		}
		if o.sats > 0 {
			e.gsaSats += o.sats
		}
	}
	// Where two sentences of the epoch give the same value, the later one wins, as in gpsd: some receivers
	// (B&G Zeus) send GGA and GLL with different positions for the same second, and gpsd's answer is the
	// last one.
	if o.hasPos {
		e.hasPos, e.lat, e.lon, e.posKind = true, o.lat, o.lon, o.kind
	}
	setIfPresent(&e.alt, o.alt)
	setIfPresent(&e.speed, o.speed)
	setIfPresent(&e.course, o.course)
	setIfPresent(&e.hdop, o.hdop)
	setIfPresent(&e.pdop, o.pdop)
}

func setIfPresent(dst *float64, v float64) {
	if !math.IsNaN(v) {
		*dst = v
	}
}

func setIfAbsent(dst *float64, v float64) {
	if math.IsNaN(*dst) && !math.IsNaN(v) {
		*dst = v
	}
}

// mode decides the fix dimension of an epoch from what its sentences said. GGA is the most direct
// statement (quality, satellites used, and an altitude only with a 3D solution); then GSA's fix type; an
// epoch with only RMC or GLL takes the fix type of a GSA from the previous epochs (stickyGSA: receivers
// such as the i.Trek M3 send GSA only every few seconds), else 2D. This is also gpsd's reading.
func (e *epoch) mode(prev Mode, stickyGSA int) Mode {
	switch {
	case e.seen[kindGGA] && e.quality > 0 && e.ggaSats == 0:
		// "Fix, 0 satellites used": some receivers (Garmin, Hemisphere) say this while coasting or
		// before their first solution. Believe the previous epoch's state, as gpsd does.
		return prev
	case e.seen[kindGGA] && e.quality == 0,
		e.seen[kindRMC] && e.rmcA == 'V',
		e.seen[kindGNS] && !e.seen[kindGGA] && e.gnsMode == 'N':
		return ModeNoFix
	case e.seen[kindGGA] || e.seen[kindGNS]:
		if math.IsNaN(e.alt) {
			return Mode2D
		}
		return Mode3D
	case e.gsaFix >= 1:
		return Mode(e.gsaFix)
	case e.seen[kindRMC] && e.rmcA == 'A', e.seen[kindGLL] && e.gllA == 'A':
		if e.faaN {
			return ModeNoFix
		}
		if stickyGSA >= 2 {
			return Mode(stickyGSA)
		}
		return Mode2D
	}
	return ModeNoFix
}

// flush ends the current epoch and returns its Fix, as it was at the epoch's last report, if it had one.
func (a *assembler) flush() (Fix, bool) {
	cur := &a.cur
	defer func() {
		if cur.t.valid {
			a.lastT = cur.t
		}
		cur.reset(tod{})
		a.reported = false
	}()
	if cur.n == 0 || !cur.t.valid {
		return Fix{}, false
	}
	if cur.gsaFix > 0 { // every GSA counts for the next epochs, reported or not
		a.gsaFix, a.gsaMS = cur.gsaFix, cur.t.ms
	} else if a.gsaFix > 0 && absMS(cur.t.ms-a.gsaMS) > stickyGSAFor {
		a.gsaFix = 0
	}
	if !a.reported {
		// The receiver's cycle ended before its report sentence (a burst cut short, the end of a
		// capture): gpsd reports nothing for it, and neither do we.
		if cur.hasPos {
			a.unreported++
		}
		return Fix{}, false
	}
	e := &a.snap
	m := e.mode(a.prevMode, a.gsaFix)
	a.prevMode = m
	if m < Mode2D || !e.hasPos || !e.t.valid {
		a.noFix++
		return Fix{}, false
	}
	if !a.snapHaveDate {
		a.noDate++
		return Fix{}, false
	}
	day := time.Date(a.snapDate.y, time.Month(a.snapDate.m), a.snapDate.d, 0, 0, 0, 0, time.UTC)
	if e.t.ms < a.snapDateMS-12*3600*1000 { // midnight passed since the date was seen
		day = day.AddDate(0, 0, 1)
	}
	f := emptyFix()
	f.Time = day.Add(time.Duration(e.t.ms) * time.Millisecond)
	f.Lat, f.Lon, f.Mode, f.DGPS = e.lat, e.lon, m, e.dgps
	if m == Mode3D {
		f.Alt = e.alt
	}
	f.Speed, f.Course, f.HDOP, f.PDOP = e.speed, e.course, e.hdop, e.pdop
	switch {
	case e.ggaSats > 0:
		f.Sats = e.ggaSats
	case e.gnsSats > 0:
		f.Sats = e.gnsSats
	case e.gsaSats > 0:
		f.Sats = e.gsaSats
	}
	return f, true
}

// cycleDetector finds the sentences at which a receiver's cycle is complete, as gpsd does
// (driver_nmea0183.c, nmea_parse). gpsd merges every sentence into its fix and reports the fix at these
// sentences only; its answer for an epoch is the fix at the epoch's last report.
//
//   - A cycle starts when a sentence registers a time of day other than the previous one (RMC with a
//     valid fix, GGA, GLL, GNS, GBS, Skytraq PSTI,030; not ZDA, not an invalid RMC).
//   - The type of the last timed sentence before that change becomes a cycle ender (each type once); a
//     timed sentence of an ender type reports.
//   - Until the first ender is known (cycle detection unreliable), every sentence that sets a position
//     or a mode reports.
//   - A DBT (depth, from marine instruments sharing the bus) marks a receiver whose untimed sentences
//     continue the cycle: from then on no new ender is learned, and every untimed sentence becomes the
//     ender in place of the last timed type, and reports if it carries data gpsd decodes (reportsData).
//   - An invalid RMC, or a GGA without a fix, that has no time reports at once and makes detection
//     unreliable again (receivers without a fix that send empty sentences).
type cycleDetector struct {
	enders   map[string]bool
	lastTag  string // type of the last timed sentence; "" before any
	lastTime tod    // its time
	cont     bool   // a continuation sentence (DBT) has been seen
	reliable bool   // an ender is known
}

// reportsData lists the untimed sentence types from which gpsd decodes something; a report needs new data
// (gpsd sends a TPV only when a sentence changed something), so the others never report.
var reportsData = map[string]bool{"GSA": true, "GSV": true, "VTG": true, "ZDA": true, "GST": true, "HDG": true,
	"HDT": true, "DBT": true, "MWD": true, "MWV": true, "PGRME": true, "PGRMZ": true, "PGRMM": true}

// step takes the next sentence and reports whether the cycle is reported at it.
func (c *cycleDetector) step(o obs) bool {
	if c.enders == nil {
		c.enders = map[string]bool{}
	}
	report := false
	if o.force {
		c.reliable = false
		report = true
	}
	if o.tag == "DBT" {
		c.cont = true
	}
	if o.timed {
		if !c.lastTime.valid || absMS(o.t.ms-c.lastTime.ms) > 10 {
			if c.lastTag != "" && !c.enders[c.lastTag] && !c.cont {
				c.enders[c.lastTag] = true
				c.reliable = true
			}
		}
		c.lastTime = o.t
	} else if c.cont {
		c.enders[c.lastTag] = false
		c.enders[o.tag] = true
		c.reliable = true
	}
	if (o.timed || c.cont && reportsData[o.tag]) && c.enders[o.tag] {
		report = true
	}
	if o.timed {
		c.lastTag = o.tag
	}
	if !c.reliable && o.posMode {
		report = true
	}
	return report
}
