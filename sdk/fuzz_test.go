package sdk

import (
	"bytes"
	"context"
	"crypto/ed25519"

	"github.com/waybill-iot/waybill/sdk/pki"
	"testing"
	"time"
)

// fuzzSeeds returns valid messages of every type, so the fuzzer starts from deep inside the format.
func fuzzSeeds(tb testing.TB) [][]byte {
	f := newFleet(tb, false)
	o, _ := f.dispatch.SignOrder(testOrder("ord-1", 1, "truck-0001"))
	e, _ := f.truck.SignEvent(testEvent(EventFailed, 4))
	s, _ := f.truck.SignStatus(&Status{State: StateOnline, Time: t0, Health: &Health{Sats: 9, Link: "lte"},
		Extra: map[string]string{"board": "rpi4"}})
	tel, _ := f.truck.SignTelemetry(&Telemetry{Epoch: Epoch{1}, Fixes: drive(60, 2)})
	tel1, _ := f.truck.SignTelemetry(&Telemetry{Epoch: Epoch{1}, Fixes: drive(1, 2)})
	return [][]byte{o, e, s, tel, tel1, {}, {0x8b, 0x01}, {0x8b, 0x02}}
}

// FuzzDecodeMessage: decoding any bytes never panics, and what decodes re-encodes to a message that decodes
// the same way.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			if _, ok := err.(*RejectError); !ok {
				t.Fatalf("error %T is not a *RejectError: %v", err, err)
			}
			return
		}
		if len(m.SignedBytes()) == 0 || len(m.Sig) != sigLen {
			t.Fatal("decoded without signed bytes or signature")
		}
		var body []byte
		switch {
		case m.Order != nil:
			body, err = m.Order.MarshalBody()
		case m.Event != nil:
			body, err = m.Event.MarshalBody()
		case m.Status != nil:
			body, err = m.Status.MarshalBody()
		case m.Telemetry != nil:
			body, err = m.Telemetry.MarshalBody()
		default:
			t.Fatal("decoded without a body")
		}
		if err != nil {
			t.Fatalf("a decoded %s body does not encode: %v", m.Type, err)
		}
		if m.Type == MsgTelemetry {
			if _, err := UnmarshalTelemetry(body); err != nil {
				t.Fatalf("re-encoded telemetry does not decode: %v", err)
			}
		}
	})
}

// FuzzUnmarshalTelemetry: the codec never panics; a decoded batch re-encodes to identical bytes
// when the input was canonical, and always to a batch with the same fixes.
func FuzzUnmarshalTelemetry(f *testing.F) {
	for _, n := range []int{1, 2, 60} {
		body, err := (&Telemetry{Epoch: Epoch{7}, Fixes: drive(n, uint64(n))}).MarshalBody()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	f.Add([]byte{0x82, 0x48, 0, 0, 0, 0, 0, 0, 0, 0, 0x4c, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		tel, err := UnmarshalTelemetry(b)
		if err != nil {
			return
		}
		again, err := tel.MarshalBody()
		if err != nil {
			t.Fatalf("decoded batch does not encode: %v", err)
		}
		tel2, err := UnmarshalTelemetry(again)
		if err != nil || len(tel2.Fixes) != len(tel.Fixes) {
			t.Fatalf("re-encoded batch: %v", err)
		}
		for i := range tel.Fixes {
			a, b := tel.Fixes[i], tel2.Fixes[i]
			if a.Seq != b.Seq || !a.Fix.Time.Equal(b.Fix.Time) || a.Fix.Lat != b.Fix.Lat || a.Fix.Lon != b.Fix.Lon ||
				a.Fix.Has != b.Fix.Has || a.Fix.Speed != b.Fix.Speed || a.Fix.Course != b.Fix.Course {
				t.Fatalf("fix %d changed: %+v -> %+v", i, a, b)
			}
		}
	})
}

// FuzzVerify: the whole verifier never panics and never accepts a message that is not one of the seeds. The
// fleet is all Ed25519 from fixed seeds, so every fuzz worker process builds the same certificates and
// the same signed seed messages.
func FuzzVerify(f *testing.F) {
	ca := newTestCAKey(f, "fleet-ca", ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize)))
	clk := newClock(t0)
	dispatch := ca.signer(f, "dispatch-1", pki.RoleDispatch, certOpts{ed25519: true, seed: 2}, clk.Now)
	truck := ca.signer(f, "truck-0001", pki.RoleTruck, certOpts{ed25519: true, seed: 3}, clk.Now)
	for _, s := range []*Signer{dispatch, truck} {
		s.seq = NewMemorySequencer(0)
	}
	fl := &fleet{ca: ca, clk: clk, dispatch: dispatch, truck: truck, truck2: truck}
	sign := func(s *Signer, t MsgType, body []byte, err error, withCert bool) []byte {
		if err != nil {
			f.Fatal(err)
		}
		b, err := s.Sign(t, MsgID{byte(t)}, body, withCert)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	topics := []string{top(f, KindOrders, "truck-0001", "ord-1"), top(f, KindEvents, "truck-0001"),
		top(f, KindStatus, "truck-0001"), top(f, KindTelemetry, "truck-0001")}
	ob, err := testOrder("ord-1", 1, "truck-0001").MarshalBody()
	o := sign(dispatch, MsgOrder, ob, err, true)
	eb, err := testEvent(EventFailed, 4).MarshalBody()
	e := sign(truck, MsgEvent, eb, err, true)
	sb, err := (&Status{State: StateOnline, Time: t0}).MarshalBody()
	s := sign(truck, MsgStatus, sb, err, true)
	tb, err := (&Telemetry{Epoch: Epoch{1}, Fixes: drive(20, 2)}).MarshalBody()
	tel := sign(truck, MsgTelemetry, tb, err, false)
	valid := map[string]bool{}
	for i, m := range [][]byte{o, e, s, tel} {
		valid[string(m)] = true
		f.Add(uint8(i), m)
	}
	// No replay memory, so the seeds verify every time.
	v := fl.verifier(f, VerifierConfig{Clock: func() time.Time { return t0.Add(time.Minute) }, Replay: forgetful{}})
	f.Fuzz(func(t *testing.T, ti uint8, b []byte) {
		m, err := v.Verify(ctx, topics[int(ti)%len(topics)], b)
		if err == nil && !valid[string(b)] {
			t.Fatalf("accepted a message nobody signed: %+v", m.Envelope)
		}
	})
}

// forgetful is a ReplayState that remembers nothing.
type forgetful struct{}

func (forgetful) Check(context.Context, StreamKey, uint64, MsgID) (ReplayVerdict, error) {
	return ReplayNew, nil
}
