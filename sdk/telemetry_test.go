package sdk

import (
	"math"
	"strings"
	"testing"
	"time"
)

// sameFix reports whether got is want after the codec's quantisation.
func sameFix(t *testing.T, i int, got, want TelemetryFix, posScale float64) {
	t.Helper()
	w := want.Fix
	g := got.Fix
	near := func(a, b, unit float64) bool { return math.Abs(a-b) <= unit/2+1e-9 }
	if got.Seq != want.Seq || !g.Time.Equal(w.Time.Truncate(time.Millisecond)) || g.Has != w.Has || g.Mode != w.Mode ||
		!near(g.Lat, w.Lat, 1/posScale) || !near(g.Lon, w.Lon, 1/posScale) {
		t.Fatalf("fix %d: got %+v, want %+v", i, got, want)
	}
	check := func(name string, bit FixFields, gv, wv, unit float64) {
		if w.Has&bit == 0 {
			if gv != 0 {
				t.Fatalf("fix %d: absent %s decoded as %v, want 0", i, name, gv)
			}
			return
		}
		if name == "course" && math.Abs(gv-wv) > 180 {
			wv = math.Mod(wv, 360)
		}
		if !near(gv, wv, unit) {
			t.Fatalf("fix %d: %s %v, want %v", i, name, gv, wv)
		}
	}
	check("alt", FixAlt, g.Alt, w.Alt, 1.0/altScale)
	check("speed", FixSpeed, g.Speed, w.Speed, 1.0/speedScale)
	check("course", FixCourse, g.Course, w.Course, 1.0/courseScale)
	check("sats", FixSats, float64(g.Sats), float64(w.Sats), 0)
	check("hdop", FixHDOP, g.HDOP, w.HDOP, 1.0/hdopScale)
}

func TestTelemetryRoundTrip(t *testing.T) {
	for _, n := range []int{1, 2, 3, 60, 600} {
		tel := &Telemetry{Epoch: Epoch{9, 8, 7, 6, 5, 4, 3, 2}, Fixes: drive(n, uint64(n))}
		body, err := tel.MarshalBody()
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalTelemetry(body)
		if err != nil {
			t.Fatalf("%d fixes: %v", n, err)
		}
		if got.Epoch != tel.Epoch || len(got.Fixes) != n {
			t.Fatalf("%d fixes: epoch %x, %d fixes", n, got.Epoch, len(got.Fixes))
		}
		for i := range got.Fixes {
			sameFix(t, i, got.Fixes[i], tel.Fixes[i], degScale)
		}
		// Encoding the decoded batch gives the same bytes: quantisation is stable.
		again, err := got.MarshalBody()
		if err != nil || string(again) != string(body) {
			t.Fatalf("%d fixes: re-encoding differs (%v)", n, err)
		}
	}
}

func TestTelemetryEdges(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fixes := []TelemetryFix{
		// only the required fields, unknown mode
		{Seq: 0, Fix: Fix{Time: base, Lat: -90, Lon: -180}},
		// course through north both ways, irregular time steps, every field
		{Seq: 1, Fix: Fix{Time: base.Add(1500 * time.Millisecond), Lat: 90, Lon: 180, Alt: -412.3, Speed: 599.99,
			Course: 359.9, Mode: 2, Sats: 255, HDOP: 99.99, Has: fixAllFields}},
		{Seq: 2, Fix: Fix{Time: base.Add(1501 * time.Millisecond), Lat: 0, Lon: 0, Alt: 0, Speed: 0,
			Course: 0.1, Mode: 3, Sats: 0, HDOP: 0, Has: fixAllFields}},
		{Seq: 3, Fix: Fix{Time: base.Add(time.Hour), Lat: 1e-6, Lon: -1e-6, Course: 359.5, Mode: 3, Has: FixCourse}},
		// a big jump back in record seq and time (allowed: the uploader may re-cut batches)
		{Seq: maxRecordSeq - 1, Fix: Fix{Time: base.Add(-time.Hour), Lat: 45, Lon: 7, Course: 360, Has: FixCourse}},
		{Seq: 5, Fix: Fix{Time: base, Lat: 45, Lon: 7, Speed: 3, Has: FixSpeed}},
	}
	tel := &Telemetry{Fixes: fixes}
	body, err := tel.MarshalBody()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalTelemetry(body)
	if err != nil {
		t.Fatal(err)
	}
	for i := range fixes {
		want := fixes[i]
		if want.Fix.Course == 360 {
			want.Fix.Course = 0
		}
		sameFix(t, i, got.Fixes[i], want, degScale)
	}
}

func TestTelemetryRefusesBadFixes(t *testing.T) {
	good := Fix{Time: t0, Lat: 1, Lon: 2}
	cases := map[string]func(*TelemetryFix){
		"zero time":    func(f *TelemetryFix) { f.Fix.Time = time.Time{} },
		"lat NaN":      func(f *TelemetryFix) { f.Fix.Lat = math.NaN() },
		"lon 181":      func(f *TelemetryFix) { f.Fix.Lon = 181 },
		"mode 1":       func(f *TelemetryFix) { f.Fix.Mode = 1 },
		"speed -1":     func(f *TelemetryFix) { f.Fix.Speed, f.Fix.Has = -1, FixSpeed },
		"sats 300":     func(f *TelemetryFix) { f.Fix.Sats, f.Fix.Has = 300, FixSats },
		"hdop 100":     func(f *TelemetryFix) { f.Fix.HDOP, f.Fix.Has = 100, FixHDOP },
		"unknown bit":  func(f *TelemetryFix) { f.Fix.Has = 1 << 6 },
		"seq too big":  func(f *TelemetryFix) { f.Seq = maxRecordSeq },
		"alt infinite": func(f *TelemetryFix) { f.Fix.Alt, f.Fix.Has = math.Inf(1), FixAlt },
	}
	for name, mutate := range cases {
		tf := TelemetryFix{Fix: good}
		mutate(&tf)
		if _, err := (&Telemetry{Fixes: []TelemetryFix{tf}}).MarshalBody(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
	if _, err := (&Telemetry{}).MarshalBody(); err == nil {
		t.Error("empty batch encoded")
	}
	if _, err := (&Telemetry{Fixes: make([]TelemetryFix, MaxTelemetryFixes+1)}).MarshalBody(); err == nil {
		t.Error("oversized batch encoded")
	}
}

func TestTelemetryDecodeRefusesCorruptColumns(t *testing.T) {
	tel := &Telemetry{Fixes: drive(60, 7)}
	body, err := tel.MarshalBody()
	if err != nil {
		t.Fatal(err)
	}
	var w telemetryWire
	if err := decMode.Unmarshal(body, &w); err != nil {
		t.Fatal(err)
	}
	mk := func(cols []byte) []byte {
		b, err := encMode.Marshal(telemetryWire{Epoch: w.Epoch, Cols: cols})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := map[string][]byte{
		"truncated":         mk(w.Cols[:len(w.Cols)-1]),
		"trailing":          mk(append(append([]byte{}, w.Cols...), 0)),
		"format 2":          mk(append([]byte{2}, w.Cols[1:]...)),
		"zero fixes":        mk([]byte{1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}),
		"count too high":    mk([]byte{1, 0x81, 0x40, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}),
		"run past end":      mk([]byte{1, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1}),
		"time out of range": mk([]byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}), // every value 0: time 1970
		"short epoch":       func() []byte { b, _ := encMode.Marshal(telemetryWire{Epoch: []byte{1}, Cols: w.Cols}); return b }(),
		"not cbor":          {0xff},
	}
	for name, b := range cases {
		if _, err := UnmarshalTelemetry(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// TestTelemetryOdometer: a batch carries the odometer at its newest fix in the batch-values map; a batch
// without it keeps the two-element body byte for byte; unknown keys and later elements are ignored; the
// odometer costs a few bytes per message, so a 60-fix batch stays within the 16 bytes per fix of
// TestTelemetryBytesPerFix.
func TestTelemetryOdometer(t *testing.T) {
	fixes := drive(60, 3)
	plain := &Telemetry{Epoch: Epoch{1, 2, 3, 4, 5, 6, 7, 8}, Fixes: fixes}
	plainBody, err := plain.MarshalBody()
	if err != nil {
		t.Fatal(err)
	}
	if plainBody[0] != 0x82 {
		t.Fatalf("a batch without odometer is no longer the two-element array: %x", plainBody[:1])
	}
	withOdo := *plain
	withOdo.Odometer = 123_456_789 // 123,456.789 km
	body, err := withOdo.MarshalBody()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalTelemetry(body)
	if err != nil {
		t.Fatal(err)
	}
	if got.Odometer != withOdo.Odometer || len(got.Fixes) != 60 {
		t.Fatalf("odometer %d, %d fixes; want %d, 60", got.Odometer, len(got.Fixes), withOdo.Odometer)
	}
	extra := len(body) - len(plainBody)
	t.Logf("odometer %d m costs %d bytes per message (%.2f per fix in 60)", withOdo.Odometer, extra, float64(extra)/60)
	if extra > 8 {
		t.Errorf("the odometer costs %d bytes per message, want at most 8", extra)
	}
	got, err = UnmarshalTelemetry(plainBody)
	if err != nil || got.Odometer != 0 {
		t.Fatalf("a body without odometer: %v, odometer %d", err, got.Odometer)
	}

	// A newer sender: unknown batch keys and a fourth element are ignored.
	type newer struct {
		_     struct{} `cbor:",toarray"`
		Epoch []byte
		Cols  []byte
		Ext   map[int]any
		More  string
	}
	var w telemetryWireExt
	if err := decMode.Unmarshal(body, &w); err != nil {
		t.Fatal(err)
	}
	future, err := encMode.Marshal(newer{Epoch: w.Epoch, Cols: w.Cols, Ext: map[int]any{1: uint64(42), 99: "x"}, More: "later"})
	if err != nil {
		t.Fatal(err)
	}
	got, err = UnmarshalTelemetry(future)
	if err != nil || got.Odometer != 42 || len(got.Fixes) != 60 {
		t.Fatalf("a newer body: %v, odometer %d", err, got.Odometer)
	}

	// Bad batch values are refused with a reason, not a panic.
	bad, _ := encMode.Marshal([]any{w.Epoch, w.Cols, "not a map"})
	if _, err := UnmarshalTelemetry(bad); err == nil || !strings.Contains(err.Error(), "batch values") {
		t.Fatalf("batch values that are not a map: %v", err)
	}
	short, _ := encMode.Marshal([]any{w.Epoch})
	if _, err := UnmarshalTelemetry(short); err == nil {
		t.Fatal("a one-element body was accepted")
	}

	// The signed 60-fix batch with an odometer, on the wire.
	for _, ed := range []bool{false, true} {
		f := newFleet(t, ed)
		env, err := f.truck.SignTelemetry(&withOdo)
		if err != nil {
			t.Fatal(err)
		}
		if perFix := float64(wireBytes(len(env), 1)) / 60; perFix > 16 {
			t.Errorf("%s: a 60-fix batch with odometer costs %.2f bytes per fix on the wire, target 16", f.truck.alg, perFix)
		}
	}
}
