package sdk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Telemetry is a batch of fixes from one truck store, composed by the uploader at upload time from its
// durable queue. After a crash the same fixes may come again in a differently cut batch, so consumers drop
// duplicate fixes by (truck, Epoch, Seq), not only duplicate messages.
type Telemetry struct {
	Epoch Epoch          `json:"epoch"` // the truck store's epoch
	Fixes []TelemetryFix `json:"fixes"`
	// Odometer is the truck's odometer in metres at the batch's newest fix (GPS distance, set from the
	// vehicle's odometer by the operator); zero: not reported.
	Odometer uint64 `json:"odometer_m,omitempty"`
}

// TelemetryFix is one fix and its record sequence number in the truck's store.
type TelemetryFix struct {
	Seq uint64 `json:"seq"`
	Fix Fix    `json:"fix"`
}

// MaxTelemetryFixes is the most fixes one telemetry message may carry (an hour at 1 Hz, plus room).
const MaxTelemetryFixes = 4096

// maxRecordSeq bounds record sequence numbers so that second differences of three of them fit the codec's
// 62-bit token values. A store adding 100 records a second needs 89,000 years to reach it.
const maxRecordSeq = 1 << 48

// telemetryFormat is the version byte at the start of the packed columns.
const telemetryFormat = 1

// The telemetry codec ("columns v1").
//
// A fix is ten integers in fixed-point units: time (Unix ms), record seq, lat and lon (1e-6 degree), a flags
// byte (which optional fields are present, and the mode), altitude (dm), speed (cm/s), course (0.1 degree),
// satellites and HDOP (0.01). An absent optional field repeats the previous value, so it costs nothing.
// The batch stores each quantity as a column: first the value, then differences. Time, seq, lat and lon
// use second differences (a truck at 1 Hz moves by about the same step each second, so they are near zero);
// the rest use first differences (course wraps at 360 degrees). Each column is a run of tokens, unsigned
// varints: token&1 == 0 is one value zigzag(v) = token>>1; token&1 == 1 is token>>1 + 1 zeros. Zero
// differences (steady time step, consecutive seqs, constant mode, satellites, HDOP) cost almost nothing.
//
// Position resolution is 1e-6 degree: 0.11 m of latitude, less than one twentieth of a consumer GNSS
// receiver's 2-3 m accuracy, and finer than the NMEA most receivers send (ddmm.mmmm, 1e-4 minute =
// 0.19 m). 1e-7 degree would carry only receiver noise, and every second difference would cost one more
// byte (a 15 m/s truck's second differences are tens of 1e-6 degree units, hundreds of 1e-7).
const (
	colTime = iota
	colSeq
	colLat
	colLon
	colFlags
	colAlt
	colSpeed
	colCourse
	colSats
	colHDOP
	numCols
)

// secondDiff marks the columns stored as second differences.
var secondDiff = [numCols]bool{colTime: true, colSeq: true, colLat: true, colLon: true}

const courseUnits = 360 * courseScale

var errTelemetry = errors.New("sdk: telemetry")

// MarshalBody returns the telemetry's CBOR body: [epoch, packed columns].
func (t *Telemetry) MarshalBody() ([]byte, error) {
	n := len(t.Fixes)
	if n == 0 || n > MaxTelemetryFixes {
		return nil, fmt.Errorf("%w: %d fixes, want 1..%d", errTelemetry, n, MaxTelemetryFixes)
	}
	vals := make([]int64, numCols*n) // column-major
	var prev [numCols]int64
	for i := range t.Fixes {
		tf := &t.Fixes[i]
		f := &tf.Fix
		if err := f.Validate(); err != nil {
			return nil, fmt.Errorf("%w: fix %d: %w", errTelemetry, i, err)
		}
		if tf.Seq >= maxRecordSeq {
			return nil, fmt.Errorf("%w: fix %d: record seq %d too large", errTelemetry, i, tf.Seq)
		}
		cur := prev
		cur[colTime] = f.Time.UnixMilli()
		cur[colSeq] = int64(tf.Seq)
		cur[colLat] = q(f.Lat, degScale)
		cur[colLon] = q(f.Lon, degScale)
		cur[colFlags] = int64(f.Has) | int64(modeBits(f.Mode))<<5
		if f.Has&FixAlt != 0 {
			cur[colAlt] = q(f.Alt, altScale)
		}
		if f.Has&FixSpeed != 0 {
			cur[colSpeed] = q(f.Speed, speedScale)
		}
		if f.Has&FixCourse != 0 {
			cur[colCourse] = ((q(f.Course, courseScale) % courseUnits) + courseUnits) % courseUnits
		}
		if f.Has&FixSats != 0 {
			cur[colSats] = int64(f.Sats)
		}
		if f.Has&FixHDOP != 0 {
			cur[colHDOP] = q(f.HDOP, hdopScale)
		}
		for c := range numCols {
			vals[c*n+i] = cur[c]
		}
		prev = cur
	}
	buf := make([]byte, 0, 16+12*n)
	buf = append(buf, telemetryFormat)
	buf = binary.AppendUvarint(buf, uint64(n))
	for c := range numCols {
		col := vals[c*n : (c+1)*n]
		diff(col, secondDiff[c], c == colCourse)
		buf = appendTokens(buf, col)
	}
	if t.Odometer == 0 {
		return encMode.Marshal(telemetryWire{Epoch: t.Epoch[:], Cols: buf})
	}
	return encMode.Marshal(telemetryWireExt{Epoch: t.Epoch[:], Cols: buf, Ext: telemetryExt{Odometer: t.Odometer}})
}

// The body is the CBOR array [epoch, packed columns] or, when the batch carries batch-wide values,
// [epoch, packed columns, {key: value}]: the map is where new batch-wide values go, under new keys, and
// the decoder ignores keys and array elements it does not know, so later additions cost old decoders
// nothing. Decoders before the map existed (it came with Odometer) refuse a three-element body: upgrade
// dispatch and the tools before the trucks.
type telemetryWire struct {
	_     struct{} `cbor:",toarray"`
	Epoch []byte
	Cols  []byte
}

type telemetryWireExt struct {
	_     struct{} `cbor:",toarray"`
	Epoch []byte
	Cols  []byte
	Ext   telemetryExt
}

// telemetryExt holds the batch-wide values. Keys: 1 odometer in metres at the newest fix.
type telemetryExt struct {
	Odometer uint64 `cbor:"1,keyasint,omitempty"`
}

// UnmarshalTelemetry decodes and validates a telemetry body. It never panics, whatever the input.
func UnmarshalTelemetry(body []byte) (*Telemetry, error) {
	var elems []cbor.RawMessage
	if err := decMode.Unmarshal(body, &elems); err != nil {
		return nil, fmt.Errorf("%w body: %w", errTelemetry, err)
	}
	if len(elems) < 2 {
		return nil, fmt.Errorf("%w body: %d elements, want at least 2 (epoch, columns)", errTelemetry, len(elems))
	}
	var w telemetryWire
	var ext telemetryExt
	if err := decMode.Unmarshal(elems[0], &w.Epoch); err != nil {
		return nil, fmt.Errorf("%w body: epoch: %w", errTelemetry, err)
	}
	if err := decMode.Unmarshal(elems[1], &w.Cols); err != nil {
		return nil, fmt.Errorf("%w body: columns: %w", errTelemetry, err)
	}
	if len(elems) > 2 {
		if err := decMode.Unmarshal(elems[2], &ext); err != nil {
			return nil, fmt.Errorf("%w body: batch values: %w", errTelemetry, err)
		}
	}
	if len(w.Epoch) != len(Epoch{}) {
		return nil, fmt.Errorf("%w: epoch is %d bytes, want 8", errTelemetry, len(w.Epoch))
	}
	b := w.Cols
	if len(b) == 0 || b[0] != telemetryFormat {
		return nil, fmt.Errorf("%w: unknown column format", errTelemetry)
	}
	b = b[1:]
	un, k := binary.Uvarint(b)
	if k <= 0 || un == 0 || un > MaxTelemetryFixes {
		return nil, fmt.Errorf("%w: bad fix count", errTelemetry)
	}
	b = b[k:]
	n := int(un)
	// Each column needs at least one byte (a run token), so a count far above the input size is a lie.
	if len(b) < numCols {
		return nil, fmt.Errorf("%w: truncated columns", errTelemetry)
	}
	t := &Telemetry{Fixes: make([]TelemetryFix, n), Odometer: ext.Odometer}
	copy(t.Epoch[:], w.Epoch)
	col := make([]int64, n)
	for c := range numCols {
		var err error
		if b, err = readTokens(b, col); err != nil {
			return nil, fmt.Errorf("%w: column %d: %w", errTelemetry, c, err)
		}
		undiff(col, secondDiff[c], c == colCourse)
		for i, v := range col {
			if err := setColumn(&t.Fixes[i], c, v); err != nil {
				return nil, fmt.Errorf("%w: fix %d: %w", errTelemetry, i, err)
			}
		}
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last column", errTelemetry, len(b))
	}
	for i := range t.Fixes {
		f := &t.Fixes[i].Fix
		if err := f.Validate(); err != nil {
			return nil, fmt.Errorf("%w: fix %d: %w", errTelemetry, i, err)
		}
	}
	return t, nil
}

func modeBits(mode uint8) uint8 {
	switch mode {
	case 2:
		return 1
	case 3:
		return 2
	}
	return 0
}

// setColumn stores one decoded column value in a fix, checking its range first so that no conversion can
// overflow. Absent fields are cleared after the flags column is read (it comes before them).
func setColumn(tf *TelemetryFix, c int, v int64) error {
	f := &tf.Fix
	in := func(lo, hi int64) error {
		if v < lo || v > hi {
			return fmt.Errorf("value %d out of range", v)
		}
		return nil
	}
	switch c {
	case colTime:
		// 1980 .. 2200, as Fix.Validate
		if err := in(315532800000, 7258118400000); err != nil {
			return err
		}
		f.Time = time.UnixMilli(v).UTC()
	case colSeq:
		if err := in(0, maxRecordSeq-1); err != nil {
			return err
		}
		tf.Seq = uint64(v)
	case colLat:
		if err := in(-90*degScale, 90*degScale); err != nil {
			return err
		}
		f.Lat = float64(v) / degScale
	case colLon:
		if err := in(-180*degScale, 180*degScale); err != nil {
			return err
		}
		f.Lon = float64(v) / degScale
	case colFlags:
		if err := in(0, 0x5f); err != nil || v&0x60 == 0x60 {
			return fmt.Errorf("bad flags %#x", v)
		}
		f.Has = FixFields(v & 0x1f)
		f.Mode = [...]uint8{0, 2, 3}[v>>5]
	case colAlt:
		if err := in(-10000*altScale, 100000*altScale); err != nil {
			return err
		}
		f.Alt = present(f.Has, FixAlt, float64(v)/altScale)
	case colSpeed:
		if err := in(0, 600*speedScale); err != nil {
			return err
		}
		f.Speed = present(f.Has, FixSpeed, float64(v)/speedScale)
	case colCourse:
		f.Course = present(f.Has, FixCourse, float64(v)/courseScale)
	case colSats:
		if err := in(0, 255); err != nil {
			return err
		}
		f.Sats = int(present(f.Has, FixSats, float64(v)))
	case colHDOP:
		if err := in(0, 9999); err != nil {
			return err
		}
		f.HDOP = present(f.Has, FixHDOP, float64(v)/hdopScale)
	}
	return nil
}

func present(has, bit FixFields, v float64) float64 {
	if has&bit == 0 {
		return 0
	}
	return v
}

// diff turns values into first or second differences in place. Course differences wrap to -180..180
// degrees, so a heading through north is a small step.
func diff(col []int64, second, wrap bool) {
	for i := len(col) - 1; i >= 1; i-- {
		col[i] -= col[i-1]
		if wrap {
			col[i] = wrapCourse(col[i])
		}
	}
	if second {
		for i := len(col) - 1; i >= 2; i-- {
			col[i] -= col[i-1]
		}
	}
}

// undiff reverses diff. Arithmetic wraps on hostile input; setColumn then range-checks every value.
func undiff(col []int64, second, wrap bool) {
	if second {
		for i := 2; i < len(col); i++ {
			col[i] += col[i-1]
		}
	}
	for i := 1; i < len(col); i++ {
		col[i] += col[i-1]
		if wrap {
			col[i] = ((col[i] % courseUnits) + courseUnits) % courseUnits
		}
	}
	if wrap && len(col) > 0 {
		col[0] = ((col[0] % courseUnits) + courseUnits) % courseUnits
	}
}

func wrapCourse(d int64) int64 {
	d = ((d % courseUnits) + courseUnits) % courseUnits
	if d >= courseUnits/2 {
		d -= courseUnits
	}
	return d
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

func appendTokens(buf []byte, col []int64) []byte {
	for i := 0; i < len(col); {
		if col[i] == 0 {
			j := i + 1
			for j < len(col) && col[j] == 0 {
				j++
			}
			buf = binary.AppendUvarint(buf, uint64(j-i-1)<<1|1)
			i = j
			continue
		}
		buf = binary.AppendUvarint(buf, zigzag(col[i])<<1)
		i++
	}
	return buf
}

// readTokens fills col from b and returns the rest of b.
func readTokens(b []byte, col []int64) ([]byte, error) {
	for i := 0; i < len(col); {
		tok, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, errors.New("truncated or overlong varint")
		}
		b = b[k:]
		if tok&1 == 0 {
			col[i] = unzigzag(tok >> 1)
			i++
			continue
		}
		run := tok >> 1
		if run >= uint64(len(col)-i) {
			return nil, errors.New("run of zeros past the column's end")
		}
		for end := i + int(run) + 1; i < end; i++ {
			col[i] = 0
		}
	}
	return b, nil
}
