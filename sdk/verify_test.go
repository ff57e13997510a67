package sdk

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/pki"
)

var ctx = context.Background()

// wantReason checks that err is a *RejectError with reason r, and that errors.Is finds it.
func wantReason(t *testing.T, what string, err error, r Reason) {
	t.Helper()
	var re *RejectError
	if !errors.As(err, &re) {
		t.Fatalf("%s: got %v, want a *RejectError %q", what, err, r)
	}
	if re.Reason != r || !errors.Is(err, r) {
		t.Fatalf("%s: got reason %q (%v), want %q", what, re.Reason, err, r)
	}
}

func algName(ed bool) string {
	if ed {
		return "ed25519"
	}
	return "ecdsa"
}

func TestVerifyAcceptsEachTypeOnceThenDuplicate(t *testing.T) {
	for _, ed := range []bool{false, true} {
		t.Run(algName(ed), func(t *testing.T) {
			f := newFleet(t, ed)
			o := testOrder("ord-42", 3, "truck-0001")
			orderMsg, err := f.dispatch.SignOrder(o)
			if err != nil {
				t.Fatal(err)
			}
			ev := testEvent(EventDelivered, 77)
			ev.OrderHash, _ = o.Hash()
			eventMsg, err := f.truck.SignEvent(ev)
			if err != nil {
				t.Fatal(err)
			}
			statusMsg, err := f.truck.SignStatus(&Status{State: StateOnline, Time: t0,
				Health: &Health{FixAge: 800 * time.Millisecond, Sats: 11, QueueDepth: 3, Link: "lte", Version: "v1",
					Unreceipted: 120, StoreEpoch: Epoch{9, 8}, StoreOrigin: "salvaged", StoreSince: t0.Add(-time.Hour),
					ClockSkew: -25 * 365 * 24 * time.Hour, Odometer: 123456789}})
			if err != nil {
				t.Fatal(err)
			}
			telMsg, err := f.truck.SignTelemetry(&Telemetry{Epoch: Epoch{1}, Fixes: drive(60, 1)})
			if err != nil {
				t.Fatal(err)
			}
			cases := []struct {
				topic string
				msg   []byte
				check func(*Message)
			}{
				{top(t, KindOrders, "truck-0001", "ord-42"), orderMsg, func(m *Message) {
					if m.Order == nil || m.Order.Revision != 3 || m.Order.Notes != o.Notes || m.Signer.Role != pki.RoleDispatch {
						t.Fatalf("order: %+v", m.Order)
					}
					if h, _ := o.Hash(); m.BodyHash() != h {
						t.Fatal("dispatch's and the truck's order hashes differ")
					}
				}},
				{top(t, KindEvents, "truck-0001"), eventMsg, func(m *Message) {
					if m.Event == nil || m.Event.Kind != EventDelivered || m.Event.OrderHash != ev.OrderHash ||
						m.Event.Fix == nil || m.Event.Fix.Lat != ev.Fix.Lat || m.ID != ev.MessageID() {
						t.Fatalf("event: %+v", m.Event)
					}
				}},
				{top(t, KindStatus, "truck-0001"), statusMsg, func(m *Message) {
					if m.Status == nil || m.Status.State != StateOnline || m.Status.Health.FixAge != 800*time.Millisecond ||
						m.Status.Health.Unreceipted != 120 || m.Status.Health.StoreEpoch != (Epoch{9, 8}) ||
						m.Status.Health.StoreOrigin != "salvaged" || !m.Status.Health.StoreSince.Equal(t0.Add(-time.Hour)) ||
						m.Status.Health.ClockSkew != -25*365*24*time.Hour || m.Status.Health.Odometer != 123456789 {
						t.Fatalf("status: %+v", m.Status)
					}
				}},
				{top(t, KindTelemetry, "truck-0001"), telMsg, func(m *Message) {
					if m.Telemetry == nil || len(m.Telemetry.Fixes) != 60 || m.Signer.Name != "truck-0001" {
						t.Fatalf("telemetry: %+v", m.Telemetry)
					}
				}},
			}
			for _, c := range cases {
				m, err := f.v.Verify(ctx, c.topic, c.msg)
				if err != nil {
					t.Fatalf("%s: %v", c.topic, err)
				}
				c.check(m)
				m, err = f.v.Verify(ctx, c.topic, c.msg)
				wantReason(t, c.topic+" again", err, ReasonDuplicate)
				if m == nil {
					t.Fatalf("%s: a duplicate must come with the message", c.topic)
				}
			}
			st := f.v.Stats()
			if st.Accepted != 4 || st.ByReason[ReasonDuplicate] != 4 || st.Rejected() != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestVerifyResentOrderIsDuplicate: dispatch's outbox signs each re-send anew (new sequence number); the
// truck sees the same message id and reports a duplicate, so the order is applied once.
func TestVerifyResentOrderIsDuplicate(t *testing.T) {
	f := newFleet(t, false)
	o := testOrder("ord-1", 1, "truck-0001")
	topic := top(t, KindOrders, "truck-0001", "ord-1")
	for i := range 3 {
		msg, err := f.dispatch.SignOrder(o)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.v.Verify(ctx, topic, msg)
		if i == 0 && err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			wantReason(t, "re-send", err, ReasonDuplicate)
		}
	}
	// A cancellation is a new revision: a new message.
	o.Revision, o.Status = 2, OrderCancelled
	msg, _ := f.dispatch.SignOrder(o)
	if m, err := f.v.Verify(ctx, topic, msg); err != nil || m.Order.Status != OrderCancelled {
		t.Fatalf("cancellation: %v", err)
	}
}

// fixedSeq is a Sequencer returning chosen numbers.
type fixedSeq struct{ next []uint64 }

func (s *fixedSeq) Next(MsgType) (uint64, error) {
	if len(s.next) == 0 {
		return 0, errors.New("out of numbers")
	}
	n := s.next[0]
	s.next = s.next[1:]
	return n, nil
}

func TestVerifyRefusesReplays(t *testing.T) {
	f := newFleet(t, false)
	seq := &fixedSeq{next: []uint64{10, 10, 5000, 4500, 10}}
	cert, key := f.truck.cert, f.truck.key
	s, err := NewSigner(SignerConfig{Certificate: cert, Key: key, Sequencer: seq, Clock: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	topic := top(t, KindStatus, "truck-0001")
	send := func() error {
		msg, err := s.SignStatus(&Status{State: StateOnline, Time: t0})
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.v.Verify(ctx, topic, msg)
		return err
	}
	if err := send(); err != nil { // seq 10
		t.Fatal(err)
	}
	wantReason(t, "same seq, new id", send(), ReasonReplayed)
	if err := send(); err != nil { // seq 5000 slides the window
		t.Fatal(err)
	}
	if err := send(); err != nil { // seq 4500: out of order but inside the window
		t.Fatal(err)
	}
	wantReason(t, "behind the window", send(), ReasonReplayed) // seq 10
	if got := f.v.Stats().ByReason[ReasonReplayed]; got != 2 {
		t.Fatalf("replayed counted %d times, want 2", got)
	}
}

func TestMemoryReplayWindow(t *testing.T) {
	r := NewMemoryReplay(64, 4)
	k := StreamKey{Sender: "truck-0001", Type: MsgTelemetry}
	id := func(n int) MsgID { return MsgID{byte(n), byte(n >> 8)} }
	check := func(seq uint64, n int, want ReplayVerdict) {
		t.Helper()
		if got, err := r.Check(ctx, k, seq, id(n)); err != nil || got != want {
			t.Fatalf("seq %d id %d: got %v (%v), want %v", seq, n, got, err, want)
		}
	}
	check(1, 1, ReplayNew)
	check(3, 3, ReplayNew)
	check(2, 2, ReplayNew)
	check(2, 2, ReplayDuplicate)
	check(2, 99, ReplayReused)
	check(64, 64, ReplayNew)
	check(1, 100, ReplayReused) // 64-1 < 64: still in the window, bit set
	check(65, 65, ReplayNew)
	check(1, 101, ReplayTooOld) // now behind
	check(200, 200, ReplayNew)  // jump clears everything
	check(150, 150, ReplayNew)
	check(136, 136, ReplayTooOld)
	// Only 4 ids are remembered: id 1 has been forgotten, so its old message is judged by sequence.
	check(1, 1, ReplayTooOld)
	// Other streams are independent.
	if v, _ := r.Check(ctx, StreamKey{Sender: "truck-0001", Type: MsgStatus}, 1, id(1)); v != ReplayNew {
		t.Fatalf("status stream: %v", v)
	}
}

func TestVerifyRefusesExpiredAndFuture(t *testing.T) {
	f := newFleet(t, false)
	tel := &Telemetry{Epoch: Epoch{1}, Fixes: drive(5, 3)}
	topic := top(t, KindTelemetry, "truck-0001")
	msg, _ := f.truck.SignTelemetry(tel)

	v := f.verifier(t, VerifierConfig{Clock: func() time.Time { return t0.Add(DefaultMaxAgeTelem + time.Second) }})
	_, err := v.Verify(ctx, topic, msg)
	wantReason(t, "old telemetry", err, ReasonExpired)

	v = f.verifier(t, VerifierConfig{Clock: func() time.Time { return t0.Add(-DefaultMaxClockSkew - time.Second) }})
	_, err = v.Verify(ctx, topic, msg)
	wantReason(t, "telemetry from the future", err, ReasonFromFuture)

	v = f.verifier(t, VerifierConfig{MaxAge: MaxAge{Telemetry: time.Minute},
		Clock: func() time.Time { return t0.Add(2 * time.Minute) }})
	_, err = v.Verify(ctx, topic, msg)
	wantReason(t, "configured max age", err, ReasonExpired)

	// An order past its own expiry, in a fresh envelope.
	o := testOrder("ord-9", 1, "truck-0001")
	o.Created, o.Expires = t0.Add(-3*time.Hour), t0.Add(-time.Hour)
	msg, _ = f.dispatch.SignOrder(o)
	_, err = f.v.Verify(ctx, top(t, KindOrders, "truck-0001", "ord-9"), msg)
	wantReason(t, "expired order", err, ReasonExpired)
}

func TestVerifyRefusesMisaddressedAndWrongSender(t *testing.T) {
	f := newFleet(t, false)
	o := testOrder("ord-7", 1, "truck-0002")
	orderFor2, _ := f.dispatch.SignOrder(o)
	tel, _ := f.truck.SignTelemetry(&Telemetry{Fixes: drive(3, 1)})
	tel2, _ := f.truck2.SignTelemetry(&Telemetry{Fixes: drive(3, 1)})
	ev, _ := f.truck.SignEvent(testEvent(EventArrived, 1))
	cases := []struct {
		name, topic string
		msg         []byte
		want        Reason
	}{
		{"order for truck 2 on truck 1's topic", top(t, KindOrders, "truck-0001", "ord-7"), orderFor2, ReasonMisaddressed},
		{"order on another order's topic", top(t, KindOrders, "truck-0002", "ord-8"), orderFor2, ReasonMisaddressed},
		{"order on a telemetry topic", top(t, KindTelemetry, "truck-0002"), orderFor2, ReasonMisaddressed},
		{"event on the telemetry topic", top(t, KindTelemetry, "truck-0001"), ev, ReasonMisaddressed},
		{"truck 2 publishing as truck 1", top(t, KindTelemetry, "truck-0001"), tel2, ReasonWrongSender},
		{"other prefix", "acme/trucks/truck-0001/telemetry", tel, ReasonBadTopic},
		{"wildcard topic", "fleet/trucks/+/telemetry", tel, ReasonBadTopic},
	}
	for _, c := range cases {
		_, err := f.v.Verify(ctx, c.topic, c.msg)
		wantReason(t, c.name, err, c.want)
	}
}

func TestVerifyRefusesWrongRole(t *testing.T) {
	f := newFleet(t, false)
	// A truck signs an order for itself.
	o := testOrder("ord-1", 1, "truck-0001")
	body, _ := o.MarshalBody()
	msg, err := f.truck.Sign(MsgOrder, o.MessageID(), body, true)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.v.Verify(ctx, top(t, KindOrders, "truck-0001", "ord-1"), msg)
	wantReason(t, "order signed by a truck", err, ReasonWrongRole)

	// Dispatch signs telemetry; a dispatch identity named like the truck does too.
	tel, _ := f.dispatch.SignTelemetry(&Telemetry{Fixes: drive(2, 1)})
	if err := f.v.AddCertificate(f.dispatch.Certificate()); err != nil {
		t.Fatal(err)
	}
	_, err = f.v.Verify(ctx, top(t, KindTelemetry, "dispatch-1"), tel)
	wantReason(t, "telemetry signed by dispatch", err, ReasonWrongRole)
	impostor := f.ca.signer(t, "truck-0003", pki.RoleDispatch, certOpts{}, f.clk.Now)
	st, _ := impostor.SignStatus(&Status{State: StateOffline, Time: t0})
	_, err = f.v.Verify(ctx, top(t, KindStatus, "truck-0003"), st)
	wantReason(t, "status from a dispatch cert named like a truck", err, ReasonWrongRole)
}

func TestVerifyRefusesForgedAndUntrusted(t *testing.T) {
	f := newFleet(t, false)
	orderTopic := top(t, KindOrders, "truck-0001", "ord-1")
	o := testOrder("ord-1", 1, "truck-0001")

	// A complete foreign PKI: its own CA and a "dispatch" certificate.
	foreign := newTestCA(t, "fleet-ca")
	evil := foreign.signer(t, "dispatch-1", pki.RoleDispatch, certOpts{}, f.clk.Now)
	msg, _ := evil.SignOrder(o)
	_, err := f.v.Verify(ctx, orderTopic, msg)
	wantReason(t, "order from a foreign CA", err, ReasonUntrustedCert)

	// The foreign key claims the real dispatch's key id and carries the real certificate.
	forger := *f.dispatch
	forger.key = evil.key
	msg, _ = forger.SignOrder(o)
	_, err = f.v.Verify(ctx, orderTopic, msg)
	wantReason(t, "order signed with another key", err, ReasonBadSignature)

	// Telemetry without a certificate from a key nobody knows.
	stranger := f.ca.signer(t, "truck-0009", pki.RoleTruck, certOpts{}, f.clk.Now)
	tel, _ := stranger.SignTelemetry(&Telemetry{Fixes: drive(2, 1)})
	_, err = f.v.Verify(ctx, top(t, KindTelemetry, "truck-0009"), tel)
	wantReason(t, "telemetry from an unknown key", err, ReasonUnknownSigner)
	// Once its status (which carries the certificate) has been seen, its telemetry verifies.
	st, _ := stranger.SignStatus(&Status{State: StateOnline, Time: t0})
	if _, err := f.v.Verify(ctx, top(t, KindStatus, "truck-0009"), st); err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(ctx, top(t, KindTelemetry, "truck-0009"), tel); err != nil {
		t.Fatalf("telemetry after learning the certificate: %v", err)
	}

	// Certificates that chain to the CA but must not sign: expired, not yet valid, server-only.
	for name, co := range map[string]certOpts{
		"expired":     {notBefore: t0.Add(-48 * time.Hour), notAfter: t0.Add(-time.Hour)},
		"not yet":     {notBefore: t0.Add(time.Hour), notAfter: t0.Add(48 * time.Hour)},
		"server only": {usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
	} {
		cert, key := f.ca.issue(t, "dispatch-2", pki.RoleDispatch, co)
		s := &Signer{cert: cert, key: key, id: pki.Identity{Name: "dispatch-2", Role: pki.RoleDispatch},
			keyID: pki.KeyIDOf(cert), alg: AlgECDSAP256, seq: NewMemorySequencer(0), clock: f.clk.Now}
		msg, _ := s.SignOrder(o)
		_, err := f.v.Verify(ctx, orderTopic, msg)
		wantReason(t, name, err, ReasonUntrustedCert)
		if err := f.v.AddCertificate(cert); err == nil {
			t.Errorf("%s: AddCertificate accepted it", name)
		}
	}

	// A certificate that was valid when learnt and has expired since.
	f.clk.Advance(366 * 24 * time.Hour)
	st, _ = f.truck.SignStatus(&Status{State: StateOnline, Time: f.clk.Now()})
	_, err = f.v.Verify(ctx, top(t, KindStatus, "truck-0001"), st)
	wantReason(t, "cached certificate expired", err, ReasonUntrustedCert)
}

func TestVerifyRefusesRevoked(t *testing.T) {
	f := newFleet(t, false)
	v := f.verifier(t, VerifierConfig{CRL: f.ca.crl(t, f.truck.Certificate())})
	tel, _ := f.truck.SignTelemetry(&Telemetry{Fixes: drive(2, 1)})
	_, err := v.Verify(ctx, top(t, KindTelemetry, "truck-0001"), tel)
	wantReason(t, "revoked truck", err, ReasonRevoked)
	tel2, _ := f.truck2.SignTelemetry(&Telemetry{Fixes: drive(2, 1)})
	if _, err := v.Verify(ctx, top(t, KindTelemetry, "truck-0002"), tel2); err != nil {
		t.Fatalf("other truck: %v", err)
	}
	// Revoking at run time applies to known certificates at once.
	if err := v.SetCRL(f.ca.crl(t, f.truck.Certificate(), f.truck2.Certificate())); err != nil {
		t.Fatal(err)
	}
	tel2, _ = f.truck2.SignTelemetry(&Telemetry{Fixes: drive(2, 1)})
	_, err = v.Verify(ctx, top(t, KindTelemetry, "truck-0002"), tel2)
	wantReason(t, "revoked at run time", err, ReasonRevoked)
	// A CRL from another CA is refused.
	if err := v.SetCRL(newTestCA(t, "other").crl(t)); err == nil {
		t.Fatal("a foreign CRL was accepted")
	}
}

func TestVerifyRefusesMalformedOversizedUnsigned(t *testing.T) {
	f := newFleet(t, false)
	topic := top(t, KindTelemetry, "truck-0001")
	good, _ := f.truck.SignTelemetry(&Telemetry{Fixes: drive(60, 1)})

	small := f.verifier(t, VerifierConfig{MaxMessageSize: len(good) - 1})
	_, err := small.Verify(ctx, topic, good)
	wantReason(t, "oversized", err, ReasonTooLarge)

	env, err := DecodeEnvelope(good)
	if err != nil {
		t.Fatal(err)
	}
	unsigned, _ := encMode.Marshal(wireEnvelope{Version: 1, Type: uint8(MsgTelemetry), Sender: "truck-0001",
		ID: env.ID[:], Seq: 99, Created: t0.UnixMilli(), Alg: 1, KeyID: env.KeyID[:], Body: env.Body})
	v2 := append([]byte{}, good...)
	v2[1] = 2
	badBody, _ := f.truck.Sign(MsgTelemetry, MsgID{1}, []byte{0x82, 0x41, 0x00, 0x40}, false)
	cases := map[string]struct {
		msg  []byte
		want Reason
	}{
		"empty":            {nil, ReasonMalformed},
		"json":             {[]byte(`{"lat":1}`), ReasonMalformed},
		"truncated":        {good[:len(good)-1], ReasonMalformed},
		"trailing byte":    {append(append([]byte{}, good...), 0), ReasonMalformed},
		"unsigned":         {unsigned, ReasonUnsigned},
		"version 2":        {v2, ReasonUnsupportedVersion},
		"body not a batch": {badBody, ReasonMalformed},
	}
	for name, c := range cases {
		_, err := f.v.Verify(ctx, topic, c.msg)
		wantReason(t, name, err, c.want)
	}
}

// flipEveryBit verifies msg with every single bit flipped in turn and requires a rejection each time, then
// the original message to be accepted exactly once.
func flipEveryBit(t *testing.T, v *Verifier, topic string, msg []byte) map[Reason]int {
	t.Helper()
	seen := map[Reason]int{}
	b := append([]byte{}, msg...)
	for i := range b {
		for bit := range 8 {
			b[i] ^= 1 << bit
			m, err := v.Verify(ctx, topic, b)
			var re *RejectError
			if !errors.As(err, &re) || re.Reason == ReasonDuplicate {
				t.Fatalf("byte %d bit %d flipped: accepted (%v, %v)", i, bit, m != nil, err)
			}
			seen[re.Reason]++
			b[i] ^= 1 << bit
		}
	}
	if _, err := v.Verify(ctx, topic, msg); err != nil {
		t.Fatalf("the original after the flips: %v", err)
	}
	_, err := v.Verify(ctx, topic, msg)
	wantReason(t, "original again", err, ReasonDuplicate)
	return seen
}

func TestVerifyRefusesEveryBitFlip(t *testing.T) {
	// An order carries the certificate (every flip there must fail too); Ed25519 keeps the ~7,000
	// verifications fast, and the telemetry run covers ECDSA.
	f := newFleet(t, true)
	o := testOrder("ord-42", 1, "truck-0001")
	msg, _ := f.dispatch.SignOrder(o)
	seen := flipEveryBit(t, f.v, top(t, KindOrders, "truck-0001", "ord-42"), msg)
	t.Logf("order, %d bytes: rejections by reason %v", len(msg), seen)

	f = newFleet(t, false)
	msg, _ = f.truck.SignTelemetry(&Telemetry{Epoch: Epoch{3}, Fixes: drive(10, 4)})
	seen = flipEveryBit(t, f.v, top(t, KindTelemetry, "truck-0001"), msg)
	t.Logf("telemetry, %d bytes: rejections by reason %v", len(msg), seen)
}

// TestVerifyConcurrent verifies from many goroutines (run with -race) and checks the counters add up.
func TestVerifyConcurrent(t *testing.T) {
	f := newFleet(t, true)
	topic := top(t, KindEvents, "truck-0001")
	const n = 64
	msgs := make([][]byte, n)
	for i := range msgs {
		var err error
		if msgs[i], err = f.truck.SignEvent(testEvent(EventArrived, uint64(i%(n/2)))); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range msgs {
				_, _ = f.v.Verify(ctx, topic, msgs[(i+g*7)%n])
			}
		})
	}
	wg.Wait()
	st := f.v.Stats()
	// n/2 distinct record seqs = n/2 distinct message ids: each accepted once, all else duplicates.
	if st.Accepted != n/2 || st.ByReason[ReasonDuplicate] != 4*n-n/2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRejectErrorText(t *testing.T) {
	err := &RejectError{Reason: ReasonWrongRole, Topic: "t", Sender: "truck-0001", Type: MsgOrder, Seq: 7,
		Detail: "orders come from dispatch", Err: fmt.Errorf("inner")}
	want := `sdk: message rejected: wrong role (order from "truck-0001" seq 7): orders come from dispatch: inner`
	if err.Error() != want {
		t.Fatalf("got %q", err.Error())
	}
	if !errors.Is(err, ReasonWrongRole) || errors.Is(err, ReasonRevoked) {
		t.Fatal("errors.Is")
	}
	for _, r := range Reasons() {
		if b, _ := r.MarshalText(); len(b) == 0 || r.String() == fmt.Sprintf("reason(%d)", uint8(r)) {
			t.Fatalf("reason %d has no name", r)
		}
	}
}

func TestNewSignerChecks(t *testing.T) {
	ca := newTestCA(t, "fleet-ca")
	cert, _ := ca.issue(t, "truck-0001", pki.RoleTruck, certOpts{})
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := NewSigner(SignerConfig{Certificate: cert, Key: other}); err == nil {
		t.Fatal("a key of another certificate was accepted")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := NewSigner(SignerConfig{Certificate: cert, Key: p384}); err == nil {
		t.Fatal("a P-384 key was accepted")
	}
	if _, err := NewVerifier(VerifierConfig{}); err == nil {
		t.Fatal("a verifier without CA was built")
	}
}

// Issue 10, 6: an order's own Created is checked against the receiver's clock like the envelope's, and an
// order whose Created is after its Expires is malformed (a self-contradicting body, refused whatever the clock).
func TestVerifyRefusesOrderCreatedInFuture(t *testing.T) {
	f := newFleet(t, false)
	topic := top(t, KindOrders, "truck-0001", "ord-11")
	skew := 2 * time.Minute
	v := f.verifier(t, VerifierConfig{MaxClockSkew: skew, Clock: func() time.Time { return t0 }})

	// A year ahead, in a fresh envelope (the envelope's own time is now): refused.
	o := testOrder("ord-11", 1, "truck-0001")
	o.Created, o.Expires = t0.AddDate(1, 0, 0), t0.AddDate(1, 0, 2)
	msg, err := f.dispatch.SignOrder(o)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(ctx, topic, msg)
	wantReason(t, "order created a year ahead", err, ReasonFromFuture)

	// Just past the skew: refused; just inside it: accepted.
	o.Revision, o.Created, o.Expires = 2, t0.Add(skew+time.Second), t0.Add(48*time.Hour)
	msg, _ = f.dispatch.SignOrder(o)
	_, err = v.Verify(ctx, topic, msg)
	wantReason(t, "order created just past the skew", err, ReasonFromFuture)
	o.Revision, o.Created = 3, t0.Add(skew-time.Second)
	msg, _ = f.dispatch.SignOrder(o)
	if m, err := v.Verify(ctx, topic, msg); err != nil || m.Order.Revision != 3 {
		t.Fatalf("order created within the skew: %v", err)
	}

	// Created after Expires (and Expires still ahead, so it is not merely expired): malformed. Signed by hand,
	// since Order.MarshalBody refuses to encode it.
	body, err := encMode.Marshal(orderWire{ID: "ord-11", Revision: 4, Truck: "truck-0001",
		Created: t0.Add(time.Hour).UnixMilli(), Expires: t0.Add(30 * time.Minute).UnixMilli(), RadiusM: 100})
	if err != nil {
		t.Fatal(err)
	}
	v = f.verifier(t, VerifierConfig{MaxClockSkew: 2 * time.Hour, Clock: func() time.Time { return t0 }})
	msg, err = f.dispatch.Sign(MsgOrder, randomID(), body, true)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(ctx, topic, msg)
	wantReason(t, "order created after it expires", err, ReasonMalformed)
	if o.Created, o.Expires = t0.Add(time.Hour), t0.Add(30*time.Minute); o.Validate() == nil {
		t.Fatal("Order.Validate accepts Created after Expires")
	}
}
