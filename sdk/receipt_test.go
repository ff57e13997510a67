package sdk

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestReceiptRoundTripAndNormalize(t *testing.T) {
	rs := NormalizeRanges([]SeqRange{{10, 12}, {1, 3}, {4, 4}, {11, 20}, {30, 30}})
	want := []SeqRange{{1, 4}, {10, 20}, {30, 30}}
	if !reflect.DeepEqual(rs, want) {
		t.Fatalf("normalized %v, want %v", rs, want)
	}
	r := &Receipt{Truck: "truck-0001", Epochs: []ReceiptEpoch{{Epoch: Epoch{1, 2, 3, 4, 5, 6, 7, 8}, Ranges: rs},
		{Epoch: Epoch{9}, Ranges: []SeqRange{{1 << 40, 1<<40 + 59}}}}}
	body, err := r.MarshalBody()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalReceipt(body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip: %+v, want %+v", got, r)
	}
	if e := got.Epochs[0]; !e.Contains(4) || e.Contains(5) || !e.Contains(20) || !e.Contains(30) || e.Contains(31) || e.Count() != 16 {
		t.Fatalf("Contains/Count wrong for %v", e.Ranges)
	}
	// One receipt for a 60-fix batch is small: the epoch and two varints.
	one := &Receipt{Truck: "truck-0001", Epochs: []ReceiptEpoch{{Epoch: Epoch{1}, Ranges: []SeqRange{{100_000, 100_059}}}}}
	if b, _ := one.MarshalBody(); len(b) > 32 {
		t.Fatalf("a one-range receipt body is %d bytes", len(b))
	}
}

func TestReceiptRefusesBadBodies(t *testing.T) {
	bad := []*Receipt{
		{Truck: "truck-0001"}, // no epochs
		{Truck: "Truck/1", Epochs: []ReceiptEpoch{{Ranges: []SeqRange{{1, 2}}}}}, // bad name
		{Truck: "truck-0001", Epochs: []ReceiptEpoch{{}}},                        // no ranges
		{Truck: "truck-0001", Epochs: []ReceiptEpoch{{Ranges: []SeqRange{{0, 2}}}}},
		{Truck: "truck-0001", Epochs: []ReceiptEpoch{{Ranges: []SeqRange{{3, 2}}}}},
		{Truck: "truck-0001", Epochs: []ReceiptEpoch{{Ranges: []SeqRange{{1, 2}, {3, 4}}}}}, // adjacent: not merged
		{Truck: "truck-0001", Epochs: []ReceiptEpoch{{Ranges: []SeqRange{{5, 6}, {1, 2}}}}}, // unsorted
		{Truck: "truck-0001", Epochs: []ReceiptEpoch{{Ranges: []SeqRange{{1, maxRecordSeq}}}}},
	}
	for i, r := range bad {
		if _, err := r.MarshalBody(); err == nil {
			t.Errorf("case %d: %+v marshalled", i, r)
		}
	}
	for _, b := range [][]byte{nil, {0xa0}, {0xa2, 0x01, 0x61, 'x', 0x02, 0x80}, {0xa2, 0x01, 0x61, 'x', 0x02, 0x81, 0x41, 0x00}} {
		if _, err := UnmarshalReceipt(b); err == nil {
			t.Errorf("body %x decoded", b)
		}
	}
}

func TestVerifyReceiptsAndDispatchStatus(t *testing.T) {
	f := newFleet(t, false)
	r := &Receipt{Truck: "truck-0001", Epochs: []ReceiptEpoch{{Epoch: Epoch{1}, Ranges: []SeqRange{{1, 60}}}}}
	rec, err := f.dispatch.SignReceipt(r, true)
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.v.Verify(ctx, top(t, KindReceipts, "truck-0001"), rec)
	if err != nil || m.Receipt == nil || m.Receipt.Epochs[0].Count() != 60 {
		t.Fatalf("receipt refused or empty: %v %+v", err, m)
	}
	// A receipt without the certificate verifies once the certificate is known.
	rec2, _ := f.dispatch.SignReceipt(r, false)
	if _, err := f.v.Verify(ctx, top(t, KindReceipts, "truck-0001"), rec2); err != nil {
		t.Fatalf("receipt without certificate: %v", err)
	}
	_, err = f.verifier(t, VerifierConfig{}).Verify(ctx, top(t, KindReceipts, "truck-0001"), rec2)
	wantReason(t, "receipt without a certificate, signer unknown", err, ReasonUnknownSigner)

	rec3, _ := f.dispatch.SignReceipt(r, true)
	_, err = f.v.Verify(ctx, top(t, KindReceipts, "truck-0002"), rec3)
	wantReason(t, "receipt for truck 1 on truck 2's topic", err, ReasonMisaddressed)
	forged, _ := f.truck.SignReceipt(r, true)
	_, err = f.v.Verify(ctx, top(t, KindReceipts, "truck-0001"), forged)
	wantReason(t, "receipt signed by a truck", err, ReasonWrongRole)

	dtopic, err := Topics{}.DispatchStatus("dispatch-1")
	if err != nil || dtopic != "fleet/dispatch/dispatch-1/status" {
		t.Fatalf("dispatch status topic %q %v", dtopic, err)
	}
	st, _ := f.dispatch.SignStatus(&Status{State: StateOnline, Time: t0})
	if m, err := f.v.Verify(ctx, dtopic, st); err != nil || m.Topic.Dispatch != "dispatch-1" {
		t.Fatalf("dispatch status refused: %v", err)
	}
	other, _ := Topics{}.DispatchStatus("dispatch-2")
	st2, _ := f.dispatch.SignStatus(&Status{State: StateOnline, Time: t0})
	_, err = f.v.Verify(ctx, other, st2)
	wantReason(t, "dispatch-1 on dispatch-2's status", err, ReasonWrongSender)
	tst, _ := f.truck.SignStatus(&Status{State: StateOnline, Time: t0})
	_, err = f.v.Verify(ctx, dtopic, tst)
	wantReason(t, "truck on a dispatch status topic", err, ReasonWrongRole)
	for _, bad := range []string{"fleet/dispatch/dispatch-1", "fleet/dispatch/a/b/status", "fleet/dispatch/+/status", "fleet/dispatch//status"} {
		if _, err := (Topics{}).Parse(bad); !errors.Is(err, ErrBadTopic) {
			t.Errorf("Parse(%q) = %v, want ErrBadTopic", bad, err)
		}
	}
}

// The will is signed when the connection is made; a truck refreshing its status every 5 minutes signs
// thousands of online statuses before the will fires. It must still be accepted.
func TestVerifyWillAfterManyStatusRefreshes(t *testing.T) {
	f := newFleet(t, false)
	topic := top(t, KindStatus, "truck-0001")
	if _, err := f.v.Verify(ctx, topic, mustSign(t, f.truck, StateOnline)); err != nil {
		t.Fatal(err)
	}
	will := mustSign(t, f.truck, StateOffline) // signed at connect
	for i := range 1100 {
		f.clk.Advance(time.Second)
		if _, err := f.v.Verify(ctx, topic, mustSign(t, f.truck, StateOnline)); err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
	}
	if _, err := f.v.Verify(ctx, topic, will); err != nil {
		t.Fatalf("the will after 1,100 refreshes: %v", err)
	}
	_, err := f.v.Verify(ctx, topic, will)
	wantReason(t, "the same will again", err, ReasonDuplicate)
}

func mustSign(t *testing.T, s *Signer, st State) []byte {
	t.Helper()
	b, err := s.SignStatus(&Status{State: st, Time: t0})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzUnmarshalReceipt: the receipt decoder never panics, and what it accepts encodes back to the same bytes
// (the encoding is canonical: one receipt, one body).
func FuzzUnmarshalReceipt(f *testing.F) {
	for _, r := range []*Receipt{
		{Truck: "truck-0001", Epochs: []ReceiptEpoch{{Epoch: Epoch{1}, Ranges: []SeqRange{{1, 60}}}}},
		{Truck: "t", Epochs: []ReceiptEpoch{{Epoch: Epoch{2}, Ranges: []SeqRange{{5, 5}, {9, 1000}}}, {Epoch: Epoch{3}, Ranges: []SeqRange{{1 << 47, 1<<47 + 1}}}}},
	} {
		b, err := r.MarshalBody()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := UnmarshalReceipt(b)
		if err != nil {
			return
		}
		again, err := r.MarshalBody()
		if err != nil {
			t.Fatalf("decoded receipt does not encode: %v", err)
		}
		r2, err := UnmarshalReceipt(again)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("re-encoded receipt differs: %v", err)
		}
	})
}
