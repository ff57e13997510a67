package gps_test

import (
	"encoding/binary"
	"fmt"
	"github.com/waybill-iot/waybill/sdk/gpsfix"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// The track table: what each reporting mode costs on the wire per kilometre and how faithful the track
// it sends is. Run: go test ./gps -run TestTrackTable -v

// trackMode is one row's filter; nil cfg sends every fix.
type trackMode struct {
	name string
	cfg  *gps.FilterConfig
}

func trackModes() []trackMode {
	curve := func(m, kmh float64) *gps.FilterConfig {
		return &gps.FilterConfig{Mode: gps.FilterCurve, PositionError: m, SpeedError: kmh / 3.6}
	}
	return []trackMode{
		{"every fix (1 Hz)", nil},
		// Teltonika FMB "Data acquisition", vehicle on moving, their wiki's defaults: min period 300 s,
		// min distance 100 m, min angle 10 degrees, min speed delta 10 km/h; on stop, min period 3600 s.
		// No minimum interval; our stop/start detection and course gate (2.5 m/s) stand in for theirs.
		{"Teltonika defaults", &gps.FilterConfig{Mode: gps.FilterThresholds, Period: 300 * time.Second,
			MinDistance: 100, MinHeading: 10, MinSpeedChange: 10 / 3.6, MinInterval: -1, StoppedPeriod: time.Hour}},
		{"thresholds (gps defaults)", &gps.FilterConfig{Mode: gps.FilterThresholds}},
		{"curve 3 m, 3 km/h", curve(3, 3)},
		{"curve 5 m, 5 km/h", curve(5, 5)},
		{"curve 10 m, 10 km/h", curve(10, 10)},
	}
}

// trackDrive is one kind of drive: several 1 Hz tracks.
type trackDrive struct {
	name   string
	tracks [][]gps.Fix
}

func trackDrives(t testing.TB) []trackDrive {
	var ds []trackDrive
	for _, kind := range []string{routeCity, routeHighway, routeStopAndGo} {
		d := trackDrive{name: kind + " (generated, 3 seeds)"}
		for seed := uint64(1); seed <= 3; seed++ {
			fixes, _ := genRoute(kind, seed)
			d.tracks = append(d.tracks, fixes)
		}
		ds = append(ds, d)
	}
	d := trackDrive{name: "captures (moving stretches)"}
	d.tracks = captureStretches(t)
	return append(ds, d)
}

// captureStretches cuts the NMEA captures in testdata/nmea at gaps over 2 s and keeps the stretches of at
// least 60 fixes and 200 m: only bundg_zeus_9 (a chartplotter on the IJsselmeer, 148 fixes, 0.43 km) has
// one; the rest are receivers on a desk.
func captureStretches(t testing.TB) [][]gps.Fix {
	logs, err := filepath.Glob(filepath.Join("testdata", "nmea", "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatal("no captures")
	}
	var out [][]gps.Fix
	for _, l := range logs {
		f, err := os.Open(l)
		if err != nil {
			t.Fatal(err)
		}
		r := gps.NewReader(f, gps.Config{})
		var fixes []gps.Fix
		for {
			fix, err := r.Next()
			if err != nil {
				if err != io.EOF {
					t.Fatalf("%s: %v", l, err)
				}
				break
			}
			fixes = append(fixes, fix)
		}
		f.Close()
		start := 0
		for i := 1; i <= len(fixes); i++ {
			if i < len(fixes) && fixes[i].Time.Sub(fixes[i-1].Time) <= 2*time.Second {
				continue
			}
			if s := fixes[start:i]; len(s) >= 60 && odometer(s) >= 200 {
				out = append(out, s)
			}
			start = i
		}
	}
	return out
}

// odometer is the sum of the distances between consecutive fixes.
func odometer(fixes []gps.Fix) float64 {
	var d float64
	for i := 1; i < len(fixes); i++ {
		d += gps.Distance(fixes[i-1].Lat, fixes[i-1].Lon, fixes[i].Lat, fixes[i].Lon)
	}
	return d
}

// Wire costs of one telemetry message besides the signed envelope. TCP/IP headers are left out: they
// depend on the link and on how segments coalesce; msgs/km in the table lets a reader add them.
const (
	tlsRecord  = 22 // TLS 1.3 AES-GCM record: 5-byte header, content type byte, 16-byte tag
	pubackWire = 4 + tlsRecord
	truckName  = "truck-0001"
)

// publishWire is an MQTT v5 QoS 1 PUBLISH carrying an envelope on topic (no properties), in one TLS
// record (our transport buffers a packet's writes), plus the broker's PUBACK in its own record: cellular
// data is billed both ways.
func publishWire(topic string, envelope int) int {
	rest := 2 + len(topic) + 2 + 1 + envelope // topic, packet id, properties length, payload
	return 1 + len(binary.AppendUvarint(nil, uint64(rest))) + rest + tlsRecord + pubackWire
}

// wire cuts the logged fixes into the agent's batches (Store.FixBatch 30 fixes, or FixDelay 30 s after
// the first one was released, whichever first), encodes each as sdk.Telemetry, signs it as the truck
// does, and returns the messages and bytes on the wire.
func wire(t testing.TB, signer *sdk.Signer, topic string, es []emitted) (msgs, bytes int) {
	var batch []sdk.TelemetryFix
	var deadline time.Time
	seq := uint64(1)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		env, err := signer.SignTelemetry(&sdk.Telemetry{Epoch: sdk.Epoch{0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 7, 8}, Fixes: batch})
		if err != nil {
			t.Fatal(err)
		}
		msgs++
		bytes += publishWire(topic, len(env))
		batch = batch[:0]
	}
	for _, e := range es {
		if len(batch) > 0 && !e.at.Before(deadline) {
			flush()
		}
		if len(batch) == 0 {
			deadline = e.at.Add(30 * time.Second)
		}
		batch = append(batch, sdk.TelemetryFix{Seq: seq, Fix: gpsfix.From(e.Fix)})
		seq++
		if len(batch) == 30 {
			flush()
		}
	}
	flush()
	return msgs, bytes
}

// trackRow is one mode on one kind of drive.
type trackRow struct {
	drive, mode         string
	km                  float64 // by the 1 Hz odometer
	points, msgs, bytes int
	posMax, posP95      float64 // metres
	spdMax, spdP95      float64 // km/h
	odoErr              float64 // per cent: logged track length against the 1 Hz odometer
}

func (r trackRow) String() string {
	return fmt.Sprintf("| %-27s | %-25s | %6.1f | %5.2f | %6.0f | %7.1f | %5.1f | %7.1f | %8.1f | %+10.1f |",
		r.drive, r.mode, float64(r.points)/r.km, float64(r.msgs)/r.km, float64(r.bytes)/r.km,
		r.posMax, r.posP95, r.spdMax, r.spdP95, r.odoErr)
}

const trackHeader = "| drive                       | mode                      | pts/km | msg/km |   B/km | pos max | p95 m | spd max | p95 km/h | odometer % |"

func p95(v []float64) float64 {
	v = slices.DeleteFunc(slices.Clone(v), math.IsNaN)
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	return v[int(math.Ceil(0.95*float64(len(v))))-1]
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		if x > m { // NaN never is
			m = x
		}
	}
	return m
}

// messageSizes says what one message costs on the wire with 1 fix and with 30 consecutive 1 Hz fixes.
func messageSizes(t testing.TB) string {
	p := sdktest.NewPKI(t, truckName)
	signer := sdktest.Client{CertFile: p.CertPath(truckName), KeyFile: p.KeyPath(truckName)}.Signer(t)
	topic, _ := sdk.Topics{}.Telemetry(truckName)
	fixes, _ := genRoute(routeCity, 1)
	one := func(n int) int {
		var es []emitted
		for _, f := range fixes[100 : 100+n] {
			es = append(es, emitted{gps.Logged{Fix: f}, fixes[100].Time})
		}
		_, b := wire(t, signer, topic, es)
		return b
	}
	b1, b30 := one(1), one(30)
	return fmt.Sprintf("one message on the wire: %d bytes with 1 fix, %d with 30 (%.1f per added fix)",
		b1, b30, float64(b30-b1)/29)
}

// measureTracks computes every row of the table.
func measureTracks(t testing.TB) []trackRow {
	p := sdktest.NewPKI(t, truckName)
	signer := sdktest.Client{CertFile: p.CertPath(truckName), KeyFile: p.KeyPath(truckName)}.Signer(t)
	topic, err := sdk.Topics{}.Telemetry(truckName)
	if err != nil {
		t.Fatal(err)
	}
	var rows []trackRow
	for _, d := range trackDrives(t) {
		for _, m := range trackModes() {
			row := trackRow{drive: d.name, mode: m.name}
			var pos, spd []float64
			var odo1, odoLogged float64
			for _, fixes := range d.tracks {
				var es []emitted
				if m.cfg == nil {
					for _, f := range fixes {
						es = append(es, emitted{gps.Logged{Fix: f}, f.Time})
					}
				} else {
					es = runFilter(*m.cfg, fixes)
				}
				logged := loggedFixes(es)
				pe, se := trackErrors(fixes, logged)
				pos, spd = append(pos, pe...), append(spd, se...)
				odo1 += odometer(fixes)
				odoLogged += odometer(logged)
				row.points += len(es)
				msgs, bytes := wire(t, signer, topic, es)
				row.msgs += msgs
				row.bytes += bytes
			}
			row.km = odo1 / 1000
			row.posMax, row.posP95 = maxOf(pos), p95(pos)
			row.spdMax, row.spdP95 = maxOf(spd)*3.6, p95(spd)*3.6
			row.odoErr = 100 * (odoLogged - odo1) / odo1
			rows = append(rows, row)
		}
	}
	return rows
}

// TestTrackTable prints the table of gps/doc.go and checks the claims made from it: curve logging at
// 5 m and 5 km/h keeps every generated drive within those bounds for fewer bytes per kilometre than
// Teltonika's defaults, which are further off.
func TestTrackTable(t *testing.T) {
	if testing.Short() {
		t.Skip("signs a few thousand messages")
	}
	rows := measureTracks(t)
	var b strings.Builder
	b.WriteString("\n" + trackHeader + "\n")
	for _, r := range rows {
		b.WriteString(r.String() + "\n")
	}
	t.Log(b.String())
	t.Log(messageSizes(t))
	byKey := map[[2]string]trackRow{}
	for _, r := range rows {
		byKey[[2]string{r.drive, r.mode}] = r
	}
	for _, d := range trackDrives(t) {
		c, tel := byKey[[2]string{d.name, "curve 5 m, 5 km/h"}], byKey[[2]string{d.name, "Teltonika defaults"}]
		if c.posMax > 5.01 || c.spdMax > 5+1e-6 {
			t.Errorf("%s: curve 5 m is %.2f m and %.2f km/h off", d.name, c.posMax, c.spdMax)
		}
		if strings.Contains(d.name, "generated") && float64(c.bytes)/c.km >= float64(tel.bytes)/tel.km {
			t.Errorf("%s: curve 5 m costs %.0f B/km, Teltonika %.0f", d.name, float64(c.bytes)/c.km, float64(tel.bytes)/tel.km)
		}
	}
}

// benchPush measures a filter's cost per 1 Hz fix over generated city drives (the busiest for curve
// mode: bends and stops make it simplify often), with dst reused as the agent would.
func benchPush(b *testing.B, cfg gps.FilterConfig) {
	fixes, _ := genRoute(routeCity, 1)
	f := gps.NewFilter(cfg)
	dst := make([]gps.Logged, 0, 256)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(fixes) {
			b.StopTimer()
			f, i = gps.NewFilter(cfg), 0
			b.StartTimer()
		}
		dst = f.Push(fixes[i], dst[:0])
		i++
	}
}

// BenchmarkCurvePush is curve logging's cost per fix (at 1 Hz the budget is a second).
func BenchmarkCurvePush(b *testing.B) { benchPush(b, gps.FilterConfig{Mode: gps.FilterCurve}) }

// BenchmarkCurvePushThresholds is thresholds mode's, for comparison.
func BenchmarkCurvePushThresholds(b *testing.B) {
	benchPush(b, gps.FilterConfig{Mode: gps.FilterThresholds})
}
