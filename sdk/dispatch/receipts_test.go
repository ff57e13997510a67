package dispatch

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/waybill-iot/waybill/sdk"
)

// TestReceiptCoalescing: consecutive records coalesce into one range; a truck with many sparse records is
// due at once, and its receipts stay within sdk.MaxReceiptRanges and sdk.MaxReceiptEpochs and cover exactly
// what was added.
func TestReceiptCoalescing(t *testing.T) {
	r := newReceipter(nil, sdk.Topics{}, nil, 0, slog.New(slog.DiscardHandler))
	r.add("truck-1", sdk.Epoch{1}, []uint64{1, 2, 3})
	r.add("truck-1", sdk.Epoch{1}, []uint64{4, 5, 7})
	if got := split("truck-1", r.pending["truck-1"]); len(got) != 1 || len(got[0].Epochs[0].Ranges) != 2 {
		t.Fatalf("receipts %+v, want one with 1-5 and 7", got)
	}
	if len(r.take(false)) != 0 {
		t.Fatal("due before the delay")
	}
	select {
	case <-r.wake:
		t.Fatal("woken for a handful of ranges")
	default:
	}

	const n = 5000
	want := map[sdk.Epoch]map[uint64]bool{}
	for e := range 20 { // more epochs than one receipt may carry
		ep := sdk.Epoch{byte(e + 2)}
		want[ep] = map[uint64]bool{}
		for q := uint64(1); q < n/20*2; q += 2 { // sparse: every record its own range
			r.add("truck-2", ep, []uint64{q})
			want[ep][q] = true
		}
	}
	select {
	case <-r.wake:
	default:
		t.Fatal("not woken for a truck with many ranges")
	}
	due := r.take(false)
	if due["truck-2"] == nil {
		t.Fatal("truck-2 not due at once")
	}
	got := map[sdk.Epoch]map[uint64]bool{}
	for _, rc := range split("truck-2", due["truck-2"]) {
		if _, err := rc.MarshalBody(); err != nil { // Validate: bounds, normalized
			t.Fatal(err)
		}
		for _, e := range rc.Epochs {
			if got[e.Epoch] == nil {
				got[e.Epoch] = map[uint64]bool{}
			}
			for _, rg := range e.Ranges {
				for q := rg.First; q <= rg.Last; q++ {
					got[e.Epoch][q] = true
				}
			}
		}
	}
	for ep, qs := range want {
		if len(got[ep]) != len(qs) {
			t.Fatalf("epoch %x: %d receipted, want %d", ep[:1], len(got[ep]), len(qs))
		}
		for q := range qs {
			if !got[ep][q] {
				t.Fatalf("epoch %x: %d not receipted", ep[:1], q)
			}
		}
	}
}

func TestRandomShareGroup(t *testing.T) {
	a, b := RandomShareGroup(), RandomShareGroup()
	if a == b || len(a) != len("dispatch-")+24 || strings.ContainsAny(a, "/+#") {
		t.Fatalf("share groups %q and %q", a, b)
	}
}
