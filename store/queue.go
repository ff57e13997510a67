package store

import (
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Append stores entries and returns their sequence numbers once they are fsync'd. Concurrent calls share
// one commit. Entries of one call are committed together or not at all, in order. If the store is over
// Options.MaxBytes, older normal records are thinned or dropped to make room (see Options.MaxBytes); if
// that is not enough, Append fails with ErrFull and stores nothing.
//
// If ctx ends before the commit, Append returns ctx.Err() and the entries may or may not be stored.
func (s *Store) Append(ctx context.Context, entries ...Entry) ([]uint64, error) {
	if err := validEntries(entries); err != nil {
		return nil, err
	}
	var seqs []uint64
	err := s.submit(ctx, &op{fn: func(w *writeTx) error {
		var err error
		seqs, err = w.append(entries)
		return err
	}})
	if err != nil {
		return nil, err
	}
	return seqs, nil
}

func validEntries(entries []Entry) error {
	for i, e := range entries {
		if !e.Lane.valid() {
			return fmt.Errorf("store: entry %d: unknown lane %d", i, e.Lane)
		}
		if len(e.Data) > MaxRecordBytes {
			return fmt.Errorf("%w: entry %d has %d bytes, limit %d", ErrTooLarge, i, len(e.Data), MaxRecordBytes)
		}
	}
	return nil
}

func (w *writeTx) append(entries []Entry) ([]uint64, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	meta := w.tx.Bucket(bucketMeta)
	now := w.s.opts.Clock()
	seqs := make([]uint64, len(entries))
	for i, e := range entries {
		seq, err := meta.NextSequence()
		if err != nil {
			return nil, err
		}
		t := e.Time
		if t.IsZero() {
			t = now
		}
		k, v := seqKey(seq), encodeRecord(seq, 0, e.Kind, t, e.Data)
		if err := w.tx.Bucket(laneBuckets[e.Lane]).Put(k, v); err != nil {
			return nil, err
		}
		w.d.lanes[e.Lane].records++
		w.d.lanes[e.Lane].bytes += int64(len(k) + len(v))
		w.d.appended++
		seqs[i] = seq
	}
	if err := w.makeRoom(seqs[0]); err != nil {
		return nil, err
	}
	return seqs, nil
}

// Peek hands out up to n records that are stored and not already handed out: critical records first, each
// lane oldest first. They stay stored, and are not handed out again, until Ack removes them or Release
// returns them; after a restart every unacked record is handed out again. A record that fails its checksum
// is quarantined instead of returned.
func (s *Store) Peek(ctx context.Context, n int) ([]Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.peekMu.Lock()
	defer s.peekMu.Unlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	var out []Record
	var bad []badRecord
	var scanned [len(lanes)]uint64 // per lane, the last seq looked at
	err := s.view(func(tx *bolt.Tx) error {
		for _, l := range lanes {
			s.mu.Lock()
			from := s.cursor[l]
			s.mu.Unlock()
			c := tx.Bucket(laneBuckets[l]).Cursor()
			for k, v := c.Seek(seqKey(from)); k != nil && len(out) < n; k, v = c.Next() {
				seq := binary.BigEndian.Uint64(k)
				scanned[l] = seq
				if s.isInFlight(seq) {
					continue
				}
				r, err := decodeRecord(l, s.epoch, k, v)
				if err != nil {
					bad = append(bad, badRecord{l, seq, err})
					continue
				}
				out = append(out, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	for _, r := range out {
		s.inflight[r.Seq] = r.Lane
	}
	for _, l := range lanes {
		if scanned[l] >= s.cursor[l] {
			s.cursor[l] = scanned[l] + 1
		}
	}
	s.mu.Unlock()
	s.quarantineBad(ctx, bad)
	return out, nil
}

// PeekNewest hands out the newest record of lane that is not already handed out, or nil if there is none.
// The truck sends its newest fix first when the link comes back, so dispatch sees where it is now, then the
// backlog oldest first.
func (s *Store) PeekNewest(ctx context.Context, lane Lane) (*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !lane.valid() {
		return nil, fmt.Errorf("store: unknown lane %d", lane)
	}
	s.peekMu.Lock()
	defer s.peekMu.Unlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	var out *Record
	var bad []badRecord
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(laneBuckets[lane]).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			seq := binary.BigEndian.Uint64(k)
			if s.isInFlight(seq) {
				continue
			}
			r, err := decodeRecord(lane, s.epoch, k, v)
			if err != nil {
				bad = append(bad, badRecord{lane, seq, err})
				continue
			}
			out = &r
			return nil
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out != nil {
		s.mu.Lock()
		s.inflight[out.Seq] = lane
		s.mu.Unlock()
	}
	s.quarantineBad(ctx, bad)
	return out, nil
}

func (s *Store) quarantineBad(ctx context.Context, bad []badRecord) {
	for _, b := range bad {
		s.opts.Logger.Error("store: record failed its checksum; quarantined", "path", s.path,
			"lane", b.lane, "seq", b.seq, "err", b.err)
		if err := s.Quarantine(ctx, b.seq, b.err.Error()); err != nil {
			s.opts.Logger.Error("store: cannot quarantine damaged record", "seq", b.seq, "err", err)
		}
	}
}

func (s *Store) isInFlight(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.inflight[seq]
	return ok
}

func (s *Store) isClosed() bool {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	return s.closed
}

// Ack removes records for good: the uploader calls it after the broker's PUBACK for the message that
// carried them. Unknown seqs (already acked, thinned, dropped) are ignored. The removal is committed
// (fsync'd) before Ack returns; a crash before that only means the records are sent again.
func (s *Store) Ack(ctx context.Context, seqs ...uint64) error {
	_, err := s.AckCount(ctx, seqs...)
	return err
}

// AckCount is Ack, and returns how many of seqs were stored and are now removed.
func (s *Store) AckCount(ctx context.Context, seqs ...uint64) (int, error) {
	if len(seqs) == 0 {
		return 0, nil
	}
	var n int
	err := s.submit(ctx, &op{fn: func(w *writeTx) error {
		var err error
		n, err = w.ack(seqs) // fn may run again if another op of the batch fails: n is overwritten
		return err
	}})
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (w *writeTx) ack(seqs []uint64) (int, error) {
	n := 0
	for _, seq := range seqs {
		k := seqKey(seq)
		for _, l := range lanes {
			b := w.tx.Bucket(laneBuckets[l])
			v := b.Get(k)
			if v == nil {
				continue
			}
			size := int64(len(k) + len(v))
			if err := b.Delete(k); err != nil {
				return n, err
			}
			w.d.lanes[l].records--
			w.d.lanes[l].bytes -= size
			n++
			break
		}
		w.d.removed = append(w.d.removed, seq)
	}
	return n, nil
}

// Release returns handed-out records that were not delivered (a failed publish) so that Peek hands them
// out again, in their original order.
func (s *Store) Release(seqs ...uint64) {
	// Serialised with Peek: a Peek that scanned before this rewind would otherwise move the cursor past the
	// released records when it finishes, and they would not be handed out again until a restart.
	s.peekMu.Lock()
	defer s.peekMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seq := range seqs {
		l, ok := s.inflight[seq]
		if !ok {
			continue
		}
		delete(s.inflight, seq)
		s.cursor[l] = min(s.cursor[l], seq)
	}
	s.wakeLocked()
}

// Wait blocks until at least one record is stored that is not handed out, or ctx ends, or the store closes.
func (s *Store) Wait(ctx context.Context) error {
	for {
		s.mu.Lock()
		avail := -int64(len(s.inflight))
		for _, lc := range s.lanes {
			avail += lc.records
		}
		ch := s.notify
		s.mu.Unlock()
		if avail > 0 {
			return nil
		}
		if s.isClosed() {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Quarantine moves a record that can never be sent (it fails its checksum, or the uploader cannot encode
// it) out of the queue into the quarantine, with the reason. It is kept for inspection and counted, never
// silently dropped.
func (s *Store) Quarantine(ctx context.Context, seq uint64, reason string) error {
	return s.submit(ctx, &op{fn: func(w *writeTx) error {
		for _, l := range lanes {
			v := w.tx.Bucket(laneBuckets[l]).Get(seqKey(seq))
			if v == nil {
				continue
			}
			size := int64(keySize + len(v))
			if err := quarantineTx(w.tx, l, seq, reason); err != nil {
				return err
			}
			w.d.lanes[l].records--
			w.d.lanes[l].bytes -= size
			w.d.quarantine.records++
			w.d.quarantine.bytes += size + int64(quarantineHeader+len(reason))
			w.d.counters.quarantined++
			w.d.removed = append(w.d.removed, seq)
			return nil
		}
		return nil
	}})
}

// Quarantine value layout: [0] lane, [1:3] reason length, reason, then the original stored value.
const quarantineHeader = 3

func quarantineValue(l Lane, reason string, orig []byte) []byte {
	if len(reason) > 1024 {
		reason = reason[:1024]
	}
	v := make([]byte, 0, quarantineHeader+len(reason)+len(orig))
	v = append(v, byte(l))
	v = binary.BigEndian.AppendUint16(v, uint16(len(reason)))
	v = append(v, reason...)
	return append(v, orig...)
}

func quarantineTx(tx *bolt.Tx, l Lane, seq uint64, reason string) error {
	k := seqKey(seq)
	b := tx.Bucket(laneBuckets[l])
	v := quarantineValue(l, reason, b.Get(k))
	q, err := tx.CreateBucketIfNotExists(bucketQuarantine)
	if err != nil {
		return err
	}
	if err := q.Put(k, v); err != nil {
		return err
	}
	return b.Delete(k)
}

// Quarantined is a record taken out of the queue, with why.
type Quarantined struct {
	Seq    uint64
	Lane   Lane
	Reason string
	Raw    []byte // the stored value as found, header included
}

// Quarantined lists the quarantined records, oldest first.
func (s *Store) Quarantined() ([]Quarantined, error) {
	var out []Quarantined
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQuarantine).ForEach(func(k, v []byte) error {
			if len(k) != keySize || len(v) < quarantineHeader {
				return nil
			}
			n := int(binary.BigEndian.Uint16(v[1:3]))
			if quarantineHeader+n > len(v) {
				n = len(v) - quarantineHeader
			}
			out = append(out, Quarantined{
				Seq:    binary.BigEndian.Uint64(k),
				Lane:   Lane(v[0]),
				Reason: string(v[quarantineHeader : quarantineHeader+n]),
				Raw:    append([]byte(nil), v[quarantineHeader+n:]...),
			})
			return nil
		})
	})
	return out, err
}
