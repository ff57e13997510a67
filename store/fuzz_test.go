package store

import (
	"encoding/binary"
	"testing"
	"time"
)

// FuzzDecodeRecord: any bytes from a damaged page decode to an error or to a record that re-encodes to the
// same bytes; never a panic.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(seqKey(1), encodeRecord(1, 3, time.Unix(1700000000, 5), []byte("fix")))
	f.Add(seqKey(9), []byte{})
	f.Add([]byte{1, 2, 3}, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		r, err := decodeRecord(Normal, key, value)
		if err != nil {
			return
		}
		if got := encodeRecord(binary.BigEndian.Uint64(key), r.Kind, r.Time, r.Data); string(got) != string(value) {
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
