package gps

import (
	"bytes"
	"cmp"
	"encoding/json"
	"math"
	"slices"
	"strconv"
)

// Constellation is a satellite system.
type Constellation uint8

// Constellations, numbered like NMEA 4.10's GSA/GSV system IDs where they have one.
const (
	ConstUnknown Constellation = iota
	ConstGPS
	ConstGLONASS
	ConstGalileo
	ConstBeiDou
	ConstQZSS
	ConstNavIC
	ConstSBAS
)

var constNames = [...]string{"?", "GPS", "GLONASS", "Galileo", "BeiDou", "QZSS", "NavIC", "SBAS"}

func (c Constellation) String() string {
	if int(c) < len(constNames) {
		return constNames[c]
	}
	return "?"
}

// MarshalJSON writes the name ("GPS").
func (c Constellation) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// UnmarshalJSON reads a name; an unknown one is ConstUnknown.
func (c *Constellation) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*c = ConstUnknown
	for i, n := range constNames {
		if n == s {
			*c = Constellation(i)
		}
	}
	return nil
}

// Satellite is one satellite in view, as the receiver's GSV and GSA sentences describe it.
type Satellite struct {
	Constellation Constellation `json:"constellation"`
	PRN           int           `json:"prn"`  // as the receiver numbers it (NMEA), 1..999
	Elevation     int           `json:"el"`   // degrees above the horizon, 0..90; -1: not given
	Azimuth       int           `json:"az"`   // degrees true, 0..359; -1: not given
	SNR           int           `json:"snr"`  // carrier to noise, dB-Hz, 0..99; 0: not tracked
	Used          bool          `json:"used"` // used in the fix (listed by GSA)
}

// Sky is the receiver's view of the sky: the satellites in view (GSV), which of them the fix uses and the
// dilutions of precision (GSA). It is what an installer looks at to place the antenna, as cgps shows it.
type Sky struct {
	Mode       Mode        `json:"mode"` // GSA fix type: 1 no fix, 2 2D, 3 3D; 0 before any GSA
	HDOP       float64     `json:"-"`    // NaN when not given
	PDOP       float64     `json:"-"`
	VDOP       float64     `json:"-"`
	Satellites []Satellite `json:"satellites"` // by constellation, then PRN; at most MaxSatellites
	// Updates counts the views completed so far: one per receiver epoch that carried GSV or GSA. A reader
	// of the view prints it again when Updates changes.
	Updates uint64 `json:"updates"`
}

// MaxSatellites bounds a sky view: more than every satellite a four-constellation receiver can see at once
// (about 60), so a stream of made-up PRNs cannot grow it.
const MaxSatellites = 128

// maxGSVMessages bounds one GSV cycle: NMEA allows 9 messages of 4 satellites; some multi-GNSS receivers
// send more.
const maxGSVMessages = 32

// staleAfter is how many views with a complete GSV cycle a constellation's satellites stay without one of
// their own: receivers send some constellations' GSV only every few epochs, but one that stopped
// (constellation switched off) must leave the view. Views without any GSV (receivers that send GSV every
// few seconds only, or stop sending it) keep the satellites as they were, as gpsd does.
const staleAfter = 5

// Used counts the satellites used in the fix.
func (s Sky) Used() int {
	n := 0
	for _, sat := range s.Satellites {
		if sat.Used {
			n++
		}
	}
	return n
}

type skyJSON struct {
	Mode       Mode        `json:"mode"`
	HDOP       *float64    `json:"hdop,omitempty"`
	PDOP       *float64    `json:"pdop,omitempty"`
	VDOP       *float64    `json:"vdop,omitempty"`
	Used       int         `json:"used"`
	Satellites []Satellite `json:"satellites"`
	Updates    uint64      `json:"updates"`
}

// MarshalJSON writes the view with absent DOPs omitted and the number of satellites used.
func (s Sky) MarshalJSON() ([]byte, error) {
	opt := func(v float64) *float64 {
		if math.IsNaN(v) {
			return nil
		}
		return &v
	}
	sats := s.Satellites
	if sats == nil {
		sats = []Satellite{}
	}
	return json.Marshal(skyJSON{Mode: s.Mode, HDOP: opt(s.HDOP), PDOP: opt(s.PDOP), VDOP: opt(s.VDOP), Used: s.Used(),
		Satellites: sats, Updates: s.Updates})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *Sky) UnmarshalJSON(b []byte) error {
	var j skyJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	opt := nanIfNil
	*s = Sky{Mode: j.Mode, HDOP: opt(j.HDOP), PDOP: opt(j.PDOP), VDOP: opt(j.VDOP), Satellites: j.Satellites, Updates: j.Updates}
	return nil
}

func emptySky() Sky { return Sky{HDOP: math.NaN(), PDOP: math.NaN(), VDOP: math.NaN()} }

// satKey identifies a satellite across sentences.
type satKey struct {
	c   Constellation
	prn int
}

// gsvCycle is a GSV cycle in progress, for one talker and signal.
type gsvCycle struct {
	total, next int
	sats        []Satellite
}

// gsvView is the last complete GSV cycle of one talker and signal.
type gsvView struct {
	sats []Satellite
	age  int // views published since it was complete
}

// SkyTracker builds sky views from NMEA sentences: feed it every sentence with Add, and mark the end of the
// input or a silent line with Flush. It tolerates partial GSV cycles (a cycle with a missing or repeated
// message is dropped, the previous complete one stays), GSV and GSA from several talkers (GP, GL, GA, GB,
// GN, ...) and NMEA 4.10 signal and system IDs; it is bounded (MaxSatellites) and never panics (fuzzed). It
// is not safe for concurrent use; Reader and the sources publish its views behind their own locks.
//
// A view is published at the end of each receiver epoch: when a sentence with another time of day arrives
// (RMC, GGA, GNS, GLL, ZDA), or at Flush.
type SkyTracker struct {
	cycles  map[string]*gsvCycle // by talker and signal ID: cycles in progress
	views   map[string]*gsvView  // by talker and signal ID: last complete cycles
	used    map[satKey]bool      // GSA of the current epoch
	gsaRun  bool                 // the previous sentence was a GSA: the next one adds to the same set
	mode    Mode
	hdop    float64
	pdop    float64
	vdop    float64
	t       tod  // time of the current epoch
	changed bool // GSV or GSA since the last published view
	gsvDone bool // a GSV cycle completed since the last published view
	sky     Sky  // the last published view
}

// NewSkyTracker returns an empty tracker.
func NewSkyTracker() *SkyTracker {
	return &SkyTracker{cycles: map[string]*gsvCycle{}, views: map[string]*gsvView{}, used: map[satKey]bool{},
		hdop: math.NaN(), pdop: math.NaN(), vdop: math.NaN(), sky: emptySky()}
}

// Sky returns the last published view (a copy).
func (t *SkyTracker) Sky() Sky {
	s := t.sky
	s.Satellites = slices.Clone(s.Satellites)
	return s
}

// Updates is the number of views published so far, without copying the view.
func (t *SkyTracker) Updates() uint64 { return t.sky.Updates }

// Add takes one sentence (as Framer returns it: from '$', checksum verified, "*hh" optional). It reports
// whether a new view was published.
func (t *SkyTracker) Add(line []byte) bool {
	if len(line) < 7 || line[0] != '$' || line[1] == 'P' || line[6] != ',' {
		return false
	}
	if i := bytes.IndexByte(line, '*'); i >= 0 {
		line = line[:i]
	}
	if len(line) < 7 {
		return false
	}
	talker, typ := string(line[1:3]), string(line[3:6])
	published := false
	switch typ {
	case "GSV":
		t.gsaRun = false
		t.addGSV(talker, line[7:])
	case "GSA":
		t.addGSA(talker, line[7:])
		t.gsaRun = true
	case "RMC", "GGA", "GNS", "ZDA", "GLL":
		t.gsaRun = false
		if tt := lineTime(line); tt.valid {
			if t.t.valid && !sameEpoch(tt, t.t) {
				published = t.Flush()
			}
			t.t = tt
		}
	default:
		t.gsaRun = false
	}
	return published
}

// Flush publishes the view when a GSV or GSA arrived since the last one, and reports whether it did.
func (t *SkyTracker) Flush() bool {
	if !t.changed {
		return false
	}
	t.changed = false
	age := t.gsvDone
	t.gsvDone = false
	sky := emptySky()
	sky.Mode, sky.HDOP, sky.PDOP, sky.VDOP, sky.Updates = t.mode, t.hdop, t.pdop, t.vdop, t.sky.Updates+1
	merged := map[satKey]int{} // index in sky.Satellites
	keys := make([]string, 0, len(t.views))
	for k := range t.views {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic merging order
	for _, k := range keys {
		v := t.views[k]
		if age {
			v.age++
		}
		if v.age > staleAfter {
			delete(t.views, k)
			continue
		}
		for _, s := range v.sats {
			key := satKey{s.Constellation, s.PRN}
			if i, ok := merged[key]; ok { // the same satellite on another signal: keep the stronger one
				sky.Satellites[i].SNR = max(sky.Satellites[i].SNR, s.SNR)
				continue
			}
			if len(sky.Satellites) == MaxSatellites {
				continue
			}
			merged[key] = len(sky.Satellites)
			sky.Satellites = append(sky.Satellites, s)
		}
	}
	for i := range sky.Satellites {
		s := &sky.Satellites[i]
		s.Used = t.used[satKey{s.Constellation, s.PRN}]
	}
	slices.SortFunc(sky.Satellites, func(a, b Satellite) int {
		return cmp.Or(cmp.Compare(a.Constellation, b.Constellation), cmp.Compare(a.PRN, b.PRN))
	})
	t.sky = sky
	return true
}

// fields splits the data part of a sentence (after the address and its comma, without the checksum).
func fields(data []byte) [][]byte { return bytes.Split(data, []byte{','}) }

// atoi reads a small non-negative decimal integer; ok is false when empty or not a number.
func atoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 6 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// addGSV takes one GSV message: total, number, satellites in view, then up to four (PRN, elevation,
// azimuth, SNR) groups, and with NMEA 4.10 a signal ID.
func (t *SkyTracker) addGSV(talker string, data []byte) {
	f := fields(data)
	if len(f) < 3 {
		return
	}
	total, ok1 := atoi(f[0])
	num, ok2 := atoi(f[1])
	if !ok1 || !ok2 || total < 1 || total > maxGSVMessages || num < 1 || num > total {
		return
	}
	groups := f[3:]
	signal := ""
	if len(groups)%4 == 1 { // NMEA 4.10: a trailing signal ID
		signal = string(groups[len(groups)-1])
		groups = groups[:len(groups)-1]
	}
	if len(groups) > 16 {
		return // four satellites per message at most
	}
	key := talker + "/" + signal
	c := t.cycles[key]
	if num == 1 {
		if c == nil {
			if len(t.cycles) >= 64 {
				return // bounded: made-up talkers and signals cannot grow the map
			}
			c = &gsvCycle{}
			t.cycles[key] = c
		}
		c.total, c.next, c.sats = total, 1, c.sats[:0]
	}
	if c == nil || c.next != num || c.total != total {
		if c != nil {
			c.next = 0 // a missing or repeated message: drop the cycle, keep the last complete view
		}
		return
	}
	for i := 0; i+3 < len(groups); i += 4 {
		prn, ok := atoi(groups[i])
		if !ok || prn < 1 || prn > 999 || len(c.sats) >= MaxSatellites {
			continue
		}
		s := Satellite{Constellation: constellationOf(talker, prn, 0), PRN: prn, Elevation: -1, Azimuth: -1}
		if el, ok := atoi(groups[i+1]); ok && el <= 90 {
			s.Elevation = el
		}
		if az, ok := atoi(groups[i+2]); ok && az < 360 {
			s.Azimuth = az
		}
		if snr, ok := atoi(groups[i+3]); ok && snr < 100 {
			s.SNR = snr
		}
		c.sats = append(c.sats, s)
	}
	c.next++
	t.changed = true
	if num == total {
		v := t.views[key]
		if v == nil {
			if len(t.views) >= 64 {
				return
			}
			v = &gsvView{}
			t.views[key] = v
		}
		v.sats, v.age = append(v.sats[:0], c.sats...), 0
		c.next = 0
		t.gsvDone = true
	}
}

// addGSA takes one GSA: mode, fix type, twelve PRN fields, PDOP, HDOP, VDOP, and with NMEA 4.10 a system ID.
// Consecutive GSAs (one per constellation) make one set of used satellites; a GSA after anything else
// starts a new one.
func (t *SkyTracker) addGSA(talker string, data []byte) {
	f := fields(data)
	if len(f) < 2 {
		return
	}
	if !t.gsaRun {
		clear(t.used)
		t.mode = 0
	}
	t.changed = true
	if ft, ok := atoi(f[1]); ok && ft >= 1 && ft <= 3 && Mode(ft) > t.mode {
		t.mode = Mode(ft)
	}
	sys := 0
	if len(f) >= 18 {
		sys, _ = atoi(f[17])
	}
	for i := 2; i < 14 && i < len(f); i++ {
		if prn, ok := atoi(f[i]); ok && prn >= 1 && prn <= 999 && len(t.used) < MaxSatellites {
			t.used[satKey{constellationOf(talker, prn, sys), prn}] = true
		}
	}
	dop := func(i int, dst *float64) {
		if i < len(f) && len(f[i]) > 0 && len(f[i]) < 10 {
			if v, err := strconv.ParseFloat(string(f[i]), 64); err == nil && v >= 0 && v < 100 {
				*dst = v
			}
		}
	}
	dop(14, &t.pdop)
	dop(15, &t.hdop)
	dop(16, &t.vdop)
}

// constellationOf says which system a PRN belongs to: from the NMEA 4.10 system ID when given, else the
// talker, else (GN, GP with other systems' satellites) the NMEA and u-blox numbering ranges.
func constellationOf(talker string, prn, sysID int) Constellation {
	switch sysID {
	case 1:
		if prn >= 33 && prn <= 64 {
			return ConstSBAS
		}
		return ConstGPS
	case 2:
		return ConstGLONASS
	case 3:
		return ConstGalileo
	case 4:
		return ConstBeiDou
	case 5:
		return ConstQZSS
	case 6:
		return ConstNavIC
	}
	switch talker {
	case "GL":
		return ConstGLONASS
	case "GA":
		return ConstGalileo
	case "GB", "BD":
		return ConstBeiDou
	case "GQ", "QZ":
		return ConstQZSS
	case "GI":
		return ConstNavIC
	}
	switch {
	case prn <= 32:
		return ConstGPS
	case prn <= 64:
		return ConstSBAS
	case prn <= 96:
		return ConstGLONASS
	case prn >= 120 && prn <= 158:
		return ConstSBAS
	case prn >= 193 && prn <= 202:
		return ConstQZSS
	case prn >= 201 && prn <= 263, prn >= 401 && prn <= 463:
		return ConstBeiDou
	case prn >= 301 && prn <= 336:
		return ConstGalileo
	}
	return ConstUnknown
}
