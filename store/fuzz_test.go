package store

import (
	"encoding/binary"
	"testing"
	"time"
)

// FuzzDecodeRecord: any bytes from a damaged page decode to an error or to a record that re-encodes to the
// same bytes; never a panic.
func FuzzDecodeRecord(f *testing.F) {
	const storeEpoch = 0x1234
	f.Add(seqKey(1), encodeRecord(1, 0, 3, time.Unix(1700000000, 5), []byte("fix")))
	f.Add(seqKey(2), encodeRecord(2, 0xabcd, 3, time.Unix(1700000000, 5), []byte("salvaged fix")))
	f.Add(seqKey(9), []byte{})
	f.Add([]byte{1, 2, 3}, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(seqKey(3), []byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		r, err := decodeRecord(Normal, storeEpoch, key, value)
		if err != nil {
			return
		}
		origin := r.Epoch
		if value[0] == recordVersion {
			if r.Epoch != storeEpoch {
				t.Fatalf("version 1 record has epoch %x, not the store's", r.Epoch)
			}
			origin = 0
		}
		if got := encodeRecord(binary.BigEndian.Uint64(key), origin, r.Kind, r.Time, r.Data); string(got) != string(value) {
			t.Fatalf("decoded record does not re-encode to its bytes")
		}
	})
}

// FuzzDecodeState: the same for state values.
func FuzzDecodeState(f *testing.F) {
	f.Add("orders", []byte("o1"), encodeState("orders", []byte("o1"), []byte("v")))
	f.Add("b", []byte("k"), []byte{1})
	f.Fuzz(func(t *testing.T, bucket string, key, value []byte) {
		data, err := decodeState(bucket, key, value)
		if err != nil {
			return
		}
		if got := encodeState(bucket, key, data); string(got) != string(value) {
			t.Fatalf("decoded state does not re-encode to its bytes")
		}
	})
}
