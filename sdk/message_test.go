package sdk

import (
	"encoding/json"
	"testing"
)

func TestIdentifiersRoundTripThroughJSON(t *testing.T) {
	type ids struct {
		ID    MsgID
		Epoch Epoch
		Hash  OrderHash
	}
	in := ids{MsgID{1, 2, 3, 15: 0xff}, Epoch{9, 8, 7}, OrderHash{0xab, 31: 0xcd}}
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out ids
	if err := json.Unmarshal(raw, &out); err != nil || out != in {
		t.Fatalf("round trip: %+v, %v (json %s)", out, err, raw)
	}
	if err := json.Unmarshal([]byte(`{"Hash":"abcd"}`), &out); err == nil {
		t.Fatal("a short hash was accepted")
	}
}

// Issue 10, 6: text that is not valid UTF-8 is refused, not replaced: an event's Reason (the driver's words,
// part of the signed proof) and an order's recipient, address and notes, when encoding and when decoding.
func TestInvalidUTF8Refused(t *testing.T) {
	bad := "left at door \xff\xfe"
	e := testEvent(EventFailed, 9)
	e.Reason = bad
	if err := e.Validate(); err == nil {
		t.Fatal("Event.Validate accepts a reason that is not UTF-8")
	}
	if _, err := e.MarshalBody(); err == nil {
		t.Fatal("Event.MarshalBody encodes a reason that is not UTF-8")
	}
	f := newFleet(t, false)
	if _, err := f.truck.SignEvent(e); err == nil {
		t.Fatal("SignEvent signs a reason that is not UTF-8")
	}
	// The same event encoded by hand (another implementation): refused on decoding.
	body, err := encMode.Marshal(eventWire{Kind: uint8(EventFailed), Epoch: e.Epoch[:], RecordSeq: 9,
		Time: t0.UnixMilli(), OrderID: "ord-42", Revision: 1, OrderHash: make([]byte, 32), Reason: bad})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UnmarshalEvent(body); err == nil {
		t.Fatal("UnmarshalEvent accepts a reason that is not UTF-8")
	}
	e.Reason = "Empfänger nicht da – Paket beim Nachbarn 📦"
	if _, err := e.MarshalBody(); err != nil {
		t.Fatalf("valid UTF-8 reason refused: %v", err)
	}

	for _, set := range []func(*Order){
		func(o *Order) { o.Recipient = bad },
		func(o *Order) { o.Address = bad },
		func(o *Order) { o.Notes = bad },
	} {
		o := testOrder("ord-5", 1, "truck-0001")
		set(o)
		if err := o.Validate(); err == nil {
			t.Fatalf("Order.Validate accepts text that is not UTF-8: %+v", o)
		}
		if _, err := f.dispatch.SignOrder(o); err == nil {
			t.Fatal("SignOrder signs an order with text that is not UTF-8")
		}
	}
}
