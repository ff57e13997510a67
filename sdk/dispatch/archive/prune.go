package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"
)

// pruneScan is how many fixes one read transaction of PruneFixes looks at: short, so that the pages
// Commit frees are soon free to reuse.
const pruneScan = 10000

// PruneFixes deletes at most limit fixes whose GPS time is before `before` and returns how many it
// deleted. It finds them in read transactions, which do not hold up Commit, and deletes them in one write
// transaction, so a Commit waits for one batch at most. Each call goes on where the last one stopped, so
// a pass reads each fix once, whatever the order of epochs and times; fewer than limit means the pass got
// to the end (the next call starts another). A fix whose time cannot be read is kept. Events and statuses
// are never deleted. The file does not shrink: bbolt reuses the freed pages for new records.
func (a *Archive) PruneFixes(ctx context.Context, before time.Time, limit int) (int, error) {
	a.pruneMu.Lock()
	defer a.pruneMu.Unlock()
	found := map[string][][]byte{} // truck -> keys of fixes to delete
	n, end := 0, false
	for n < limit && !end {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		err := a.db.View(func(tx *bolt.Tx) error {
			top := tx.Bucket(bucketTrucks)
			if top == nil {
				end = true
				return nil
			}
			truck, key, _ := bytes.Cut(a.pruneAt, []byte{0})
			looked := 0
			tc := top.Cursor()
			for t, _ := tc.Seek(truck); t != nil; t, _ = tc.Next() {
				if !bytes.Equal(t, truck) {
					key = nil // a truck after the one the last scan stopped in: from its first fix
				}
				b := records(tx, string(t), bucketFixes)
				if b == nil {
					continue
				}
				fc := b.Cursor()
				k, v := fc.First()
				if key != nil {
					k, v = fc.Seek(key)
				}
				for ; k != nil; k, v = fc.Next() {
					if n == limit || looked == pruneScan {
						a.pruneAt = append(append(append([]byte{}, t...), 0), k...)
						return nil
					}
					looked++
					if at, ok := fixTime(v); ok && at.Before(before) {
						found[string(t)] = append(found[string(t)], bytes.Clone(k))
						n++
					}
				}
			}
			end = true
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	if end {
		a.pruneAt = nil
	}
	if n == 0 {
		return 0, nil
	}
	deleted := 0
	err := a.db.Update(func(tx *bolt.Tx) error {
		deleted = 0
		for truck, keys := range found {
			b := records(tx, truck, bucketFixes)
			for _, k := range keys {
				if b.Get(k) == nil {
					continue
				}
				if err := b.Delete(k); err != nil {
					return err
				}
				deleted++
			}
		}
		return nil
	})
	return deleted, err
}

// fixTime reads a stored fix's GPS time: the first field as sdk.Fix writes it, else by decoding.
func fixTime(v []byte) (time.Time, bool) {
	const p = `{"time":"`
	if rest, ok := bytes.CutPrefix(v, []byte(p)); ok {
		if i := bytes.IndexByte(rest, '"'); i > 0 {
			if t, err := time.Parse(time.RFC3339Nano, string(rest[:i])); err == nil {
				return t, true
			}
		}
	}
	var f struct {
		Time time.Time `json:"time"`
	}
	if json.Unmarshal(v, &f) != nil || f.Time.IsZero() {
		return time.Time{}, false
	}
	return f.Time, true
}
