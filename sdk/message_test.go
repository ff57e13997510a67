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
