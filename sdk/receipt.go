package sdk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// Receipt is dispatch's signed statement that records of one truck are in its own durable record: the end of
// the end-to-end promise. A truck removes a record from its store only when a receipt names it; the broker's
// PUBACK only marks it as sent. Receipts are idempotent and may be lost: a record that stays unreceipted is
// sent again, and dispatch receipts a duplicate it already committed, so a lost receipt costs one re-send.
type Receipt struct {
	Truck  string         `json:"truck"`
	Epochs []ReceiptEpoch `json:"epochs"`
}

// ReceiptEpoch lists committed record sequence numbers of one store epoch.
type ReceiptEpoch struct {
	Epoch  Epoch      `json:"epoch"`
	Ranges []SeqRange `json:"ranges"` // sorted, disjoint, not adjacent (Normalize)
}

// SeqRange is an inclusive run of record sequence numbers.
type SeqRange struct {
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
}

// MaxReceiptRanges bounds the ranges of one receipt (all epochs together): a few kilobytes at most.
const MaxReceiptRanges = 2048

// MaxReceiptEpochs bounds the epochs of one receipt.
const MaxReceiptEpochs = 16

var errReceipt = errors.New("sdk: receipt")

// Contains reports whether seq is in one of the ranges (which must be normalized).
func (e ReceiptEpoch) Contains(seq uint64) bool {
	_, found := slices.BinarySearchFunc(e.Ranges, seq, func(r SeqRange, s uint64) int {
		switch {
		case r.Last < s:
			return -1
		case r.First > s:
			return 1
		}
		return 0
	})
	return found
}

// Count is the number of sequence numbers the ranges cover.
func (e ReceiptEpoch) Count() uint64 {
	var n uint64
	for _, r := range e.Ranges {
		n += r.Last - r.First + 1
	}
	return n
}

// NormalizeRanges sorts ranges and merges overlapping and adjacent ones, in place; it returns the result.
func NormalizeRanges(rs []SeqRange) []SeqRange {
	if len(rs) < 2 {
		return rs
	}
	slices.SortFunc(rs, func(a, b SeqRange) int {
		switch {
		case a.First < b.First:
			return -1
		case a.First > b.First:
			return 1
		}
		return 0
	})
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.First <= last.Last+1 {
			last.Last = max(last.Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Validate checks the receipt: a valid truck name, 1..MaxReceiptEpochs epochs, each with normalized,
// non-empty ranges of record sequence numbers, MaxReceiptRanges in all.
func (r *Receipt) Validate() error {
	if err := pki.ValidateName(r.Truck); err != nil {
		return fmt.Errorf("%w: %w", errReceipt, err)
	}
	if len(r.Epochs) == 0 || len(r.Epochs) > MaxReceiptEpochs {
		return fmt.Errorf("%w: %d epochs, want 1..%d", errReceipt, len(r.Epochs), MaxReceiptEpochs)
	}
	n := 0
	for _, e := range r.Epochs {
		if len(e.Ranges) == 0 {
			return fmt.Errorf("%w: epoch %x has no ranges", errReceipt, e.Epoch[:])
		}
		n += len(e.Ranges)
		for i, rg := range e.Ranges {
			if rg.First == 0 || rg.First > rg.Last || rg.Last >= maxRecordSeq {
				return fmt.Errorf("%w: bad range %d-%d", errReceipt, rg.First, rg.Last)
			}
			if i > 0 && rg.First <= e.Ranges[i-1].Last+1 {
				return fmt.Errorf("%w: ranges not sorted and merged at %d-%d", errReceipt, rg.First, rg.Last)
			}
		}
	}
	if n > MaxReceiptRanges {
		return fmt.Errorf("%w: %d ranges, at most %d", errReceipt, n, MaxReceiptRanges)
	}
	return nil
}

// receiptWire is the body: {1: truck, 2: [[epoch, packed ranges], ...]}. Packed ranges are unsigned varints,
// for each range the gap from the previous range's end (the first from 0) and its length minus one: a
// typical receipt of one telemetry run costs a few bytes.
type receiptWire struct {
	Truck  string   `cbor:"1,keyasint"`
	Epochs [][]byte `cbor:"2,keyasint"` // each: 8-byte epoch, then packed ranges
}

// MarshalBody returns the receipt's CBOR body.
func (r *Receipt) MarshalBody() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	w := receiptWire{Truck: r.Truck, Epochs: make([][]byte, len(r.Epochs))}
	for i, e := range r.Epochs {
		b := append(make([]byte, 0, 8+4*len(e.Ranges)), e.Epoch[:]...)
		var prev uint64
		for _, rg := range e.Ranges {
			b = binary.AppendUvarint(b, rg.First-prev)
			b = binary.AppendUvarint(b, rg.Last-rg.First)
			prev = rg.Last
		}
		w.Epochs[i] = b
	}
	return encMode.Marshal(w)
}

// UnmarshalReceipt decodes and validates a receipt body. It never panics, whatever the input.
func UnmarshalReceipt(body []byte) (*Receipt, error) {
	var w receiptWire
	if err := decMode.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("%w body: %w", errReceipt, err)
	}
	if len(w.Epochs) > MaxReceiptEpochs {
		return nil, fmt.Errorf("%w: %d epochs, at most %d", errReceipt, len(w.Epochs), MaxReceiptEpochs)
	}
	r := &Receipt{Truck: w.Truck, Epochs: make([]ReceiptEpoch, len(w.Epochs))}
	total := 0
	for i, b := range w.Epochs {
		if len(b) < 8 {
			return nil, fmt.Errorf("%w: epoch entry of %d bytes", errReceipt, len(b))
		}
		copy(r.Epochs[i].Epoch[:], b[:8])
		b = b[8:]
		var prev uint64
		for len(b) > 0 {
			gap, k := binary.Uvarint(b)
			if k <= 0 {
				return nil, fmt.Errorf("%w: bad varint", errReceipt)
			}
			b = b[k:]
			length, k := binary.Uvarint(b)
			if k <= 0 {
				return nil, fmt.Errorf("%w: bad varint", errReceipt)
			}
			b = b[k:]
			if total++; total > MaxReceiptRanges {
				return nil, fmt.Errorf("%w: more than %d ranges", errReceipt, MaxReceiptRanges)
			}
			// Bound each step so that the sums cannot wrap; Validate checks the rest.
			if gap >= maxRecordSeq || length >= maxRecordSeq || prev+gap+length >= maxRecordSeq {
				return nil, fmt.Errorf("%w: range past the largest record sequence number", errReceipt)
			}
			first := prev + gap
			r.Epochs[i].Ranges = append(r.Epochs[i].Ranges, SeqRange{First: first, Last: first + length})
			prev = first + length
		}
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}
