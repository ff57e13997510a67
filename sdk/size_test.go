package sdk

import (
	"encoding/binary"
	"maps"
	"slices"
	"testing"
)

// Wire overhead of one telemetry message, apart from the envelope (see wireBytes).
const (
	tlsRecordOverhead = 22 // TLS 1.3 AES-GCM: 5-byte header, 1-byte inner content type, 16-byte tag
	telemetryTopic    = "fleet/trucks/truck-0001/telemetry"
)

// mqttPublishLen is the size of an MQTT v5 QoS 1 PUBLISH packet carrying payload on topic, no properties.
func mqttPublishLen(topic string, payload int) int {
	rest := 2 + len(topic) + 2 + 1 + payload // topic, packet id, properties length, payload
	return 1 + len(binary.AppendUvarint(nil, uint64(rest))) + rest
}

// wireBytes estimates the bytes a telemetry envelope costs on the wire: the MQTT PUBLISH around it and
// records TLS records (1 when the connection buffers a packet's writes, as our transport does; paho alone
// wrote 3). TCP/IP headers are not counted: they depend on the link and on segment coalescing.
func wireBytes(envelope, records int) int {
	return mqttPublishLen(telemetryTopic, envelope) + records*tlsRecordOverhead
}

type sizeReport struct {
	fixes, envelope, body, wire1, wire3 int
}

func measureTelemetry(tb testing.TB, s *Signer, n int, seed uint64) sizeReport {
	tb.Helper()
	tel := &Telemetry{Epoch: Epoch{0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18}, Fixes: drive(n, seed)}
	body, err := tel.MarshalBody()
	if err != nil {
		tb.Fatal(err)
	}
	env, err := s.SignTelemetry(tel)
	if err != nil {
		tb.Fatal(err)
	}
	return sizeReport{fixes: n, envelope: len(env), body: len(body), wire1: wireBytes(len(env), 1), wire3: wireBytes(len(env), 3)}
}

// TestTelemetryBytesPerFix checks design's target: at most 16 bytes per fix on the wire in a 60-fix batch
// of 1 Hz city driving, counting TLS, MQTT, envelope and signature. It is a size check, not a timing one.
func TestTelemetryBytesPerFix(t *testing.T) {
	for _, ed := range []bool{false, true} {
		f := newFleet(t, ed)
		for _, n := range []int{1, 60} {
			worst := 0.0
			for seed := uint64(1); seed <= 20; seed++ {
				r := measureTelemetry(t, f.truck, n, seed)
				perFix := float64(r.wire1) / float64(n)
				worst = max(worst, perFix)
				if seed == 1 {
					t.Logf("%s, %2d fixes: body %4d B, envelope %4d B (%.1f B/fix), wire %4d B with 1 TLS record "+
						"(%.1f B/fix), %4d B with 3 (%.1f B/fix)", f.truck.alg, n, r.body, r.envelope,
						float64(r.envelope)/float64(n), r.wire1, perFix, r.wire3, float64(r.wire3)/float64(n))
				}
			}
			if n == 60 && worst > 16 {
				t.Errorf("%s: worst 60-fix batch costs %.2f bytes per fix on the wire, target 16", f.truck.alg, worst)
			}
		}
	}
}

// columnBytes returns the encoded size of one quantity over fixes, at a given scale, the codec's way.
func columnBytes(fixes []TelemetryFix, get func(*Fix) float64, scale float64, second bool) int {
	col := make([]int64, len(fixes))
	for i := range fixes {
		col[i] = q(get(&fixes[i].Fix), scale)
	}
	diff(col, second, false)
	return len(appendTokens(nil, col))
}

// TestTelemetryColumnCosts logs what each column costs in a 60-fix batch, and what latitude and longitude
// would cost at 1e-7 degree and with first differences only: the numbers behind the codec's choices.
func TestTelemetryColumnCosts(t *testing.T) {
	total := map[string]int{}
	const runs = 20
	for seed := uint64(1); seed <= runs; seed++ {
		fixes := drive(60, seed)
		lat := func(f *Fix) float64 { return f.Lat }
		lon := func(f *Fix) float64 { return f.Lon }
		total["lat+lon 1e-6 2nd diff"] += columnBytes(fixes, lat, 1e6, true) + columnBytes(fixes, lon, 1e6, true)
		total["lat+lon 1e-7 2nd diff"] += columnBytes(fixes, lat, 1e7, true) + columnBytes(fixes, lon, 1e7, true)
		total["lat+lon 1e-6 1st diff"] += columnBytes(fixes, lat, 1e6, false) + columnBytes(fixes, lon, 1e6, false)
		total["speed cm/s"] += columnBytes(fixes, func(f *Fix) float64 { return f.Speed }, speedScale, false)
		total["alt dm"] += columnBytes(fixes, func(f *Fix) float64 { return f.Alt }, altScale, false)
		total["sats"] += columnBytes(fixes, func(f *Fix) float64 { return float64(f.Sats) }, 1, false)
		total["hdop"] += columnBytes(fixes, func(f *Fix) float64 { return f.HDOP }, hdopScale, false)
	}
	for _, k := range slices.Sorted(maps.Keys(total)) {
		t.Logf("%-22s %5.2f bytes per fix", k, float64(total[k])/runs/60)
	}
	if total["lat+lon 1e-6 2nd diff"] >= total["lat+lon 1e-7 2nd diff"] ||
		total["lat+lon 1e-6 2nd diff"] >= total["lat+lon 1e-6 1st diff"] {
		t.Errorf("the codec's position encoding is not the cheapest of the three: %v", total)
	}
}
