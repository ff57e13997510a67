package gps

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/adrianmo/go-nmea"
)

// kind is a sentence type that carries part of a fix. Everything else (GSV, TXT, proprietary, AIS, ...)
// is counted and skipped without being parsed.
type kind uint8

const (
	kindOther kind = iota
	kindRMC
	kindGGA
	kindGSA
	kindVTG
	kindGNS
	kindGLL
	kindZDA
)

func (k kind) String() string {
	return [...]string{"other", "RMC", "GGA", "GSA", "VTG", "GNS", "GLL", "ZDA"}[k]
}

// sentenceKind reads the type from the address field ("$GNRMC," -> RMC) without parsing the sentence.
// Any two-letter talker is accepted (GP, GN, GL, GA, GB, BD, QZ, GI, ...).
func sentenceKind(s []byte) kind {
	if len(s) < 7 || s[0] != '$' || s[1] == 'P' || s[6] != ',' {
		return kindOther
	}
	switch string(s[3:6]) {
	case "RMC":
		return kindRMC
	case "GGA":
		return kindGGA
	case "GSA":
		return kindGSA
	case "VTG":
		return kindVTG
	case "GNS":
		return kindGNS
	case "GLL":
		return kindGLL
	case "ZDA":
		return kindZDA
	}
	return kindOther
}

// tod is a UTC time of day from a sentence.
type tod struct {
	valid bool
	ms    int64 // milliseconds since midnight
}

// ymd is a UTC calendar date from a sentence (RMC, ZDA).
type ymd struct {
	valid   bool
	y, m, d int // y is the full year
}

// obs is what one sentence says about its epoch. Absent values are NaN, -1 or the zero tod/ymd.
type obs struct {
	kind     kind
	t        tod
	date     ymd
	status   byte // 'A' valid, 'V' invalid (RMC, GLL); 0 when the sentence has none
	faa      byte // FAA mode indicator (RMC, GLL, VTG, GNS first char): 'N' no fix, 'D' differential, ...
	hasPos   bool
	lat, lon float64
	alt      float64
	speed    float64 // m/s
	course   float64
	quality  int // GGA fix quality, -1 absent
	sats     int // -1 absent
	hdop     float64
	pdop     float64
	fixType  int // GSA 1..3, 0 absent

	// What gpsd's cycle detector sees in the sentence (see cycleDetector).
	tag     string // sentence type without the talker ("RMC", "PSTI"); "" for types gpsd does not decode
	timed   bool   // the sentence registers a time of day for cycle detection (gpsd: register_fractional_time)
	posMode bool   // the sentence sets a position or a fix mode (gpsd: LATLON_SET or MODE_SET)
	force   bool   // a no-fix sentence without a time, reported at once (gpsd: REPORT_IS from the parser)
}

func newObs(k kind) obs {
	nan := math.NaN()
	return obs{kind: k, alt: nan, speed: nan, course: nan, hdop: nan, pdop: nan, quality: -1, sats: -1}
}

const knots = 1852.0 / 3600.0 // metres per second in one knot

// sentenceDecoder turns verified sentences into observations with go-nmea. It owns its nmea.SentenceParser
// (no global parser registry) with tolerant RMC and GGA parsers registered, because go-nmea v1.10.0 rejects
// fix sentences real receivers send (see testdata/nmea/README.md).
type sentenceDecoder struct {
	p nmea.SentenceParser
}

func newSentenceDecoder() *sentenceDecoder {
	d := &sentenceDecoder{}
	d.p.CustomParsers = map[string]nmea.ParserFunc{
		nmea.TypeRMC: parseRMC,
		nmea.TypeGGA: parseGGA,
	}
	// The framer has already verified the checksum (or accepted its absence): do not pay for it twice,
	// and do not reject checksum-less sentences that gpsd accepts.
	d.p.CheckCRC = func(nmea.BaseSentence, string) error { return nil }
	return d
}

// errNotFix is returned for sentences that carry nothing for a fix.
var errNotFix = errors.New("gps: not a fix sentence")

// decode parses one sentence. It never panics on any input (fuzzed).
func (d *sentenceDecoder) decode(raw []byte) (obs, error) {
	k := sentenceKind(raw)
	if k == kindOther {
		return otherObs(raw), errNotFix
	}
	s, err := d.p.Parse(string(raw))
	if err != nil {
		return obs{}, err
	}
	o := newObs(k)
	o.tag = k.String()
	switch m := s.(type) {
	case nmea.RMC:
		f := m.Fields
		o.t = todOf(m.Time)
		o.status = firstByte(m.Validity)
		o.faa = firstByte(m.FFAMode)
		valid := o.status == 'A' || o.status == 'D'
		// Only a valid RMC gives the time and date (MTK and SiRF send bogus ones with status V, as gpsd notes);
		// an invalid one without them is a no-fix report of its own.
		if m.Date.Valid && valid {
			o.date = ymd{valid: true, y: centuryYear(m.Date.YY), m: m.Date.MM, d: m.Date.DD}
		}
		o.timed = valid && o.t.valid && m.Date.Valid
		o.force = !valid && (!o.t.valid || !m.Date.Valid)
		o.posMode = true
		o.setPos(f, 2)
		if has(f, 6) {
			o.speed = m.Speed * knots
		}
		if has(f, 7) {
			o.course = m.Course
		}
	case nmea.GGA:
		f := m.Fields
		o.t = todOf(m.Time)
		o.timed, o.posMode = o.t.valid, true
		o.setPos(f, 1)
		if q, err := strconv.Atoi(m.FixQuality); err == nil {
			o.quality = q
		}
		o.force = o.quality == 0 && !o.t.valid
		if has(f, 6) {
			o.sats = int(m.NumSatellites)
		}
		if has(f, 7) {
			o.hdop = m.HDOP
		}
		if has(f, 8) {
			o.alt = m.Altitude
		}
	case nmea.GSA:
		o.posMode = true
		if n, err := strconv.Atoi(m.FixType); err == nil {
			o.fixType = n
		}
		if has(m.Fields, 14) {
			o.pdop = m.PDOP
		}
		if has(m.Fields, 15) {
			o.hdop = m.HDOP
		}
		o.sats = len(m.SV)
	case nmea.VTG:
		if has(m.Fields, 4) {
			o.speed = m.GroundSpeedKnots * knots
		} else if has(m.Fields, 6) {
			o.speed = m.GroundSpeedKPH / 3.6
		}
		if has(m.Fields, 0) {
			o.course = m.TrueTrack
		}
		if has(m.Fields, 8) {
			o.faa = firstByte(m.Fields[8])
		}
	case nmea.GNS:
		f := m.Fields
		o.t = todOf(m.Time)
		o.timed, o.posMode = o.t.valid, true
		o.setPos(f, 1)
		if len(m.Mode) > 0 {
			o.faa = firstByte(m.Mode[0])
			for _, c := range m.Mode { // any constellation with a fix counts
				if c != nmea.NoFixGNS {
					o.faa = firstByte(c)
					break
				}
			}
		}
		if has(f, 6) {
			o.sats = int(m.SVs)
		}
		if has(f, 7) {
			o.hdop = m.HDOP
		}
		if has(f, 8) {
			o.alt = m.Altitude
		}
	case nmea.GLL:
		o.t = todOf(m.Time)
		o.timed, o.posMode = o.t.valid, true
		o.status = firstByte(m.Validity)
		o.setPos(m.Fields, 0)
		if has(m.Fields, 6) {
			o.faa = firstByte(m.Fields[6])
		}
	case nmea.ZDA:
		o.t = todOf(m.Time)
		if m.Day > 0 && m.Month > 0 && m.Year > 0 {
			o.date = ymd{valid: true, y: int(m.Year), m: int(m.Month), d: int(m.Day)}
		}
	default:
		return obs{}, fmt.Errorf("gps: unexpected %T for %s", s, k)
	}
	return o, nil
}

// otherObs is what a sentence without fix data tells the cycle detector: its type, and the time of the two
// kinds that gpsd also uses to find cycles (GBS; Skytraq's PSTI,030 with a valid fix). Any talker.
func otherObs(raw []byte) obs {
	o := newObs(kindOther)
	if len(raw) < 2 || raw[0] != '$' {
		return o // AIS and the like: not NMEA fix traffic, gpsd hands them to another driver
	}
	body := string(raw[1:])
	if i := strings.IndexByte(body, '*'); i >= 0 {
		body = body[:i]
	}
	f := strings.Split(body, ",")
	switch {
	case len(f[0]) == 5 && f[0][0] != 'P':
		o.tag = f[0][2:]
	case f[0] == "PSTI" || strings.HasPrefix(f[0], "PGRM"):
		o.tag = f[0]
	}
	switch {
	case o.tag == "GBS" && len(f) > 1:
		o.t = parseTod(f[1])
	case o.tag == "PSTI" && len(f) == 16 && f[1] == "030" && f[3] == "A" && f[13] != "N" && f[12] != "":
		o.t = parseTod(f[2])
	}
	o.timed = o.t.valid
	return o
}

// parseTod reads hhmmss[.sss].
func parseTod(s string) tod {
	if len(s) < 6 {
		return tod{}
	}
	t, err := nmea.ParseTime(s)
	if err != nil {
		return tod{}
	}
	return todOf(t)
}

// setPos takes the position at fields i..i+3 when all four are present and valid. It parses them itself
// rather than trusting go-nmea's LatLong, which guesses decimal and DMS formats for GLL and GNS.
func (o *obs) setPos(f []string, i int) {
	if !has(f, i) || !has(f, i+1) || !has(f, i+2) || !has(f, i+3) {
		return
	}
	lat, ok1 := parseCoord(f[i], f[i+1])
	lon, ok2 := parseCoord(f[i+2], f[i+3])
	if ok1 && ok2 {
		o.hasPos, o.lat, o.lon = true, lat, lon
	}
}

func has(f []string, i int) bool { return i < len(f) && f[i] != "" }

func firstByte(s string) byte {
	if s == "" {
		return 0
	}
	return s[0]
}

func todOf(t nmea.Time) tod {
	if !t.Valid {
		return tod{}
	}
	return tod{valid: true, ms: int64(((t.Hour*60+t.Minute)*60+t.Second)*1000 + t.Millisecond)}
}

// centuryYear maps RMC's two-digit year the way gpsd does: 80..99 are 1980..1999, the rest 2000..2079.
// GPS did not exist before 1980; the week-rollover correction handles receivers that are 1024 weeks late.
func centuryYear(yy int) int {
	if yy >= 80 {
		return 1900 + yy
	}
	return 2000 + yy
}

// parseRMC is go-nmea's RMC parser made tolerant: a short sentence (NMEA 2.0 without the mode field, or
// motorola-t805's 11 fields) is padded, and an invalid magnetic-variation direction ("N") is ignored
// instead of rejecting the whole sentence, as gpsd does.
func parseRMC(s nmea.BaseSentence) (nmea.Sentence, error) {
	f := padFields(s.Fields, 13)
	p := nmea.NewParser(nmea.BaseSentence{Talker: s.Talker, Type: s.Type, Fields: f, Raw: s.Raw})
	m := nmea.RMC{
		BaseSentence: s,
		Time:         p.Time(0, "time"),
		Validity:     p.EnumString(1, "validity", nmea.ValidRMC, nmea.InvalidRMC),
		Latitude:     latLong(p, f, 2),
		Longitude:    latLong(p, f, 4),
		Speed:        p.Float64(6, "speed"),
		Course:       p.Float64(7, "course"),
		FFAMode:      p.String(11, "FAA mode"),
	}
	// gpsd's merge_ddmmyy takes only ddmmyy: a garbled date ("2208-1", Telit HE910) is no date, and the
	// sentence no time, but its position stands.
	if sixDigits(f[8]) {
		m.Date = p.Date(8, "date")
	}
	// Magnetic variation (fields 9, 10) and navigation status (12) are not used for a fix: not parsed, so
	// their oddities cannot cost us the position.
	return m, p.Err()
}

func sixDigits(s string) bool {
	if len(s) != 6 {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseGGA is go-nmea's GGA parser made tolerant: any single-digit fix quality (7 manual, 8 simulator) and
// trailing fields cut off after the altitude.
func parseGGA(s nmea.BaseSentence) (nmea.Sentence, error) {
	f := padFields(s.Fields, 14)
	p := nmea.NewParser(nmea.BaseSentence{Talker: s.Talker, Type: s.Type, Fields: f, Raw: s.Raw})
	m := nmea.GGA{
		BaseSentence:  s,
		Time:          p.Time(0, "time"),
		Latitude:      latLong(p, f, 1),
		Longitude:     latLong(p, f, 3),
		FixQuality:    p.EnumString(5, "fix quality", "0", "1", "2", "3", "4", "5", "6", "7", "8"),
		NumSatellites: p.Int64(6, "number of satellites"),
		HDOP:          p.Float64(7, "hdop"),
		Altitude:      p.Float64(8, "altitude"),
	}
	return m, p.Err()
}

// latLong parses an NMEA ddmm.mmmm,H pair at f[i], f[i+1] (empty gives 0 and no error: the caller checks
// presence). go-nmea's LatLong also guesses decimal and DMS formats, which is wrong for these fields.
func latLong(p *nmea.Parser, f []string, i int) float64 {
	if f[i] == "" || f[i+1] == "" {
		return 0
	}
	x, ok := parseCoord(f[i], f[i+1])
	if !ok {
		p.SetErr("coordinate", f[i]+","+f[i+1])
	}
	return x
}

// parseCoord reads ddmm.mmmm (or dddmm.mmmm) and a hemisphere letter into signed degrees.
func parseCoord(v, h string) (float64, bool) {
	x, err := strconv.ParseFloat(v, 64)
	if err != nil || !(x >= 0 && x < 18100) {
		return 0, false
	}
	deg := math.Floor(x / 100)
	x = deg + (x-deg*100)/60
	switch h {
	case nmea.North, nmea.South:
		if x > 90 {
			return 0, false
		}
	case nmea.East, nmea.West:
		if x > 180 {
			return 0, false
		}
	default:
		return 0, false
	}
	if h == nmea.South || h == nmea.West {
		x = -x
	}
	return x, true
}

func padFields(f []string, n int) []string {
	if len(f) >= n {
		return f
	}
	g := make([]string, n)
	copy(g, f)
	return g
}

// talker returns the talker of a sentence ("GN"), for logs.
func talker(raw []byte) string {
	if len(raw) < 3 {
		return ""
	}
	return strings.ToUpper(string(raw[1:3]))
}
