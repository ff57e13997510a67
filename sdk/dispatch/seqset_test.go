package dispatch

import (
	"encoding/binary"
	"testing"

	"github.com/waybill-iot/waybill/sdk"
)

func TestSeqSetNewestFirstThenBacklog(t *testing.T) {
	s := seqSet{max: 4}
	if !s.add(5000) {
		t.Fatal("first add refused")
	}
	for n := uint64(1); n < 5000; n++ {
		if s.contains(n) || !s.add(n) {
			t.Fatalf("backlog record %d taken for a duplicate", n)
		}
	}
	if len(s.r) != 1 || s.r[0] != [2]uint64{1, 5000} {
		t.Fatalf("ranges %v, want one run 1..5000", s.r)
	}
	if s.add(17) || !s.contains(5000) || s.contains(5001) {
		t.Fatal("membership wrong")
	}
}

func TestSeqSetBounded(t *testing.T) {
	s := seqSet{max: 3}
	for _, n := range []uint64{10, 20, 30, 40} {
		s.add(n)
	}
	if len(s.r) != 3 {
		t.Fatalf("%d ranges, bound 3", len(s.r))
	}
	// The two lowest runs were merged: the gap 11..19 now counts as seen, the rest does not.
	if !s.contains(15) || s.contains(25) || s.contains(5) {
		t.Fatalf("ranges %v", s.r)
	}
}

func TestDedupEpochs(t *testing.T) {
	d := newDedup(8, 2)
	e1, e2, e3 := sdk.Epoch{1}, sdk.Epoch{2}, sdk.Epoch{3}
	d.mark("t", e1, 1)
	d.mark("t", e2, 1)
	if !d.seen("t", e1, 1) || d.seen("t", e1, 2) || d.seen("u", e1, 1) {
		t.Fatal("membership wrong")
	}
	d.mark("t", e3, 1) // e2 is the least recently used: forgotten
	if d.seen("t", e2, 1) || !d.seen("t", e1, 1) || !d.seen("t", e3, 1) {
		t.Fatal("epoch eviction wrong")
	}
}

// FuzzSeqSet checks the set against a map while it stays under its bound, and that it never forgets a
// number it was given (the bound only ever adds numbers).
func FuzzSeqSet(f *testing.F) {
	f.Add([]byte{0, 5, 0, 1, 0, 3, 0, 2, 0, 4})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := seqSet{max: 8}
		model := map[uint64]bool{}
		merged := false // once the bound merged runs, gaps count as seen: no exact comparison
		for len(data) >= 2 {
			n := uint64(binary.BigEndian.Uint16(data)) % 512
			data = data[2:]
			merged = merged || len(s.r) == 8
			added := s.add(n)
			if added == model[n] && !merged {
				t.Fatalf("add(%d) = %v, model says seen=%v", n, added, model[n])
			}
			model[n] = true
			for i := range s.r {
				if s.r[i][0] > s.r[i][1] || i > 0 && s.r[i-1][1]+1 >= s.r[i][0] {
					t.Fatalf("ranges not sorted, disjoint and apart: %v", s.r)
				}
			}
			if len(s.r) > 8 {
				t.Fatalf("%d ranges, bound 8", len(s.r))
			}
		}
		for n := range model {
			if !s.contains(n) {
				t.Fatalf("forgot %d", n)
			}
		}
	})
}
