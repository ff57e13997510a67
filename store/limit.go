package store

import (
	"encoding/binary"
	"fmt"
)

// makeRoom keeps the store within MaxBytes after an append. When over, it frees space down to 90 % of
// MaxBytes (so the next appends do not pay for this again) in the order of least value:
//
//  1. thin: in the oldest half of the normal lane, delete every second record. Repeated rounds make old
//     history sparser and sparser (a track with a fix every 2 s, then 4 s, ...) while recent fixes stay dense;
//  2. drop the oldest normal records;
//  3. never a critical record: if that is not enough, the append fails with ErrFull.
//
// Records handed out to a reader are left alone, and so are the records being appended (seq >= newFrom):
// an append never "succeeds" by dropping what it appended. Every thinned and dropped record is counted.
func (w *writeTx) makeRoom(newFrom uint64) error {
	limit := w.s.opts.MaxBytes
	total := w.totalBytes()
	if total <= limit {
		return nil
	}
	need := total - limit*9/10
	b := w.tx.Bucket(laneBuckets[Normal])

	type victim struct {
		key  []byte
		size int64
	}
	var thin, drop []victim
	var freed int64

	// 1. Thin the oldest half.
	stretch := w.records(Normal) / 2
	c := b.Cursor()
	keep := true
	var i int64
	for k, v := c.First(); k != nil && i < stretch && freed < need; k, v = c.Next() {
		i++
		if seq := binary.BigEndian.Uint64(k); seq >= newFrom || w.inFlight(seq) {
			continue
		}
		if keep {
			keep = false
			continue
		}
		keep = true
		size := int64(len(k) + len(v))
		thin = append(thin, victim{append([]byte(nil), k...), size})
		freed += size
	}
	// 2. Drop the oldest.
	if freed < need {
		thinned := make(map[string]bool, len(thin))
		for _, t := range thin {
			thinned[string(t.key)] = true
		}
		for k, v := c.First(); k != nil && freed < need; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			if seq >= newFrom {
				break
			}
			if thinned[string(k)] || w.inFlight(seq) {
				continue
			}
			size := int64(len(k) + len(v))
			drop = append(drop, victim{append([]byte(nil), k...), size})
			freed += size
		}
	}
	// Free what the limit needs, not merely 90 %: the hysteresis is a bonus, the limit is the rule.
	if total-freed > limit {
		return fmt.Errorf("%w: %d bytes stored, limit %d, and no normal record left that may be thinned or "+
			"dropped (critical records are never dropped: the uploader must deliver them, or raise the limit)",
			ErrFull, total, limit)
	}
	for _, group := range []struct {
		victims []victim
		counter *uint64
	}{{thin, &w.d.counters.thinned}, {drop, &w.d.counters.dropped}} {
		for _, v := range group.victims {
			if err := b.Delete(v.key); err != nil {
				return err
			}
			w.d.lanes[Normal].records--
			w.d.lanes[Normal].bytes -= v.size
			w.d.removed = append(w.d.removed, binary.BigEndian.Uint64(v.key))
			*group.counter++
		}
	}
	return nil
}
