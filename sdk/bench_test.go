package sdk

import (
	"testing"
	"time"
)

// Benchmarks of one core's sign, verify and decode rates for a 60-fix telemetry batch (the bulk of a
// truck's traffic) and an order (which carries the dispatch certificate). Verify uses a replay state that
// remembers nothing, so every iteration does the full work. Run:
//
//	go test -run '^$' -bench . -benchmem ./sdk/

func benchFleet(b *testing.B, ed bool) (*fleet, *Verifier) {
	f := newFleet(b, ed)
	v := f.verifier(b, VerifierConfig{Replay: forgetful{}, Clock: func() time.Time { return t0.Add(time.Second) }})
	return f, v
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func benchAlgs(b *testing.B, run func(b *testing.B, ed bool)) {
	b.Run("ecdsa-p256", func(b *testing.B) { run(b, false) })
	b.Run("ed25519", func(b *testing.B) { run(b, true) })
}

func BenchmarkSignTelemetry60(b *testing.B) {
	benchAlgs(b, func(b *testing.B, ed bool) {
		f, _ := benchFleet(b, ed)
		tel := &Telemetry{Epoch: Epoch{1}, Fixes: drive(60, 1)}
		for b.Loop() {
			if _, err := f.truck.SignTelemetry(tel); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b)
	})
}

func BenchmarkVerifyTelemetry60(b *testing.B) {
	benchAlgs(b, func(b *testing.B, ed bool) {
		f, v := benchFleet(b, ed)
		msg, _ := f.truck.SignTelemetry(&Telemetry{Epoch: Epoch{1}, Fixes: drive(60, 1)})
		topic := top(b, KindTelemetry, "truck-0001")
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			if _, err := v.Verify(ctx, topic, msg); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b)
	})
}

func BenchmarkDecodeTelemetry60(b *testing.B) {
	f := newFleet(b, false)
	msg, _ := f.truck.SignTelemetry(&Telemetry{Epoch: Epoch{1}, Fixes: drive(60, 1)})
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := DecodeMessage(msg); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b)
	b.ReportMetric(float64(b.N)*60/b.Elapsed().Seconds(), "fixes/s")
}

func BenchmarkSignOrder(b *testing.B) {
	benchAlgs(b, func(b *testing.B, ed bool) {
		f, _ := benchFleet(b, ed)
		o := testOrder("ord-42", 1, "truck-0001")
		for b.Loop() {
			if _, err := f.dispatch.SignOrder(o); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b)
	})
}

func BenchmarkVerifyOrder(b *testing.B) {
	benchAlgs(b, func(b *testing.B, ed bool) {
		f, v := benchFleet(b, ed)
		msg, _ := f.dispatch.SignOrder(testOrder("ord-42", 1, "truck-0001"))
		topic := top(b, KindOrders, "truck-0001", "ord-42")
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			if _, err := v.Verify(ctx, topic, msg); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b)
	})
}

// BenchmarkTelemetryBytesPerFix reports the envelope and estimated wire bytes per fix for 1 and 60 fixes of
// city driving (see TestTelemetryBytesPerFix; exact socket counts come with the transport).
func BenchmarkTelemetryBytesPerFix(b *testing.B) {
	for _, n := range []int{1, 60} {
		b.Run(map[int]string{1: "1fix", 60: "60fixes"}[n], func(b *testing.B) {
			f := newFleet(b, false)
			var r sizeReport
			for b.Loop() {
				r = measureTelemetry(b, f.truck, n, 1)
			}
			b.ReportMetric(float64(r.envelope)/float64(n), "envelope-B/fix")
			b.ReportMetric(float64(r.wire1)/float64(n), "wire-B/fix")
			b.ReportMetric(float64(r.wire3)/float64(n), "wire3rec-B/fix")
		})
	}
}
