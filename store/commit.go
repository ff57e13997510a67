package store

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// op is one caller's share of a group commit. fn runs inside the shared write transaction and may run more
// than once: if another operation in the same batch fails, the batch is retried without it.
type op struct {
	fn   func(w *writeTx) error
	done chan error
}

// writeTx is the committer's transaction, with the in-memory changes that apply once it commits.
type writeTx struct {
	s  *Store
	tx *bolt.Tx
	d  delta
}

// delta is what a transaction changes in the Store's in-memory state.
type delta struct {
	lanes      [len(lanes)]laneCount
	quarantine laneCount
	counters   persistentCounters
	removed    []uint64 // seqs no longer stored: leave the in-flight set
	appended   uint64   // records appended
}

func (d *delta) countersChanged() bool { return d.counters != persistentCounters{} }

// committer runs every write. It takes the first waiting operation plus every other one queued behind it
// and commits them in one bbolt transaction (one fsync for all): concurrent appenders share commits, so
// throughput grows with concurrency instead of being capped by the disk's fsync rate.
func (s *Store) committer() {
	defer close(s.done)
	for {
		select {
		case o := <-s.ops:
			s.commit(s.gather(o))
		case <-s.quit:
			for {
				select {
				case o := <-s.ops:
					s.commit(s.gather(o))
				default:
					return
				}
			}
		}
	}
}

func (s *Store) gather(first *op) []*op {
	batch := []*op{first}
	for len(batch) < s.opts.MaxBatchOps {
		select {
		case o := <-s.ops:
			batch = append(batch, o)
		default:
			return batch
		}
	}
	return batch
}

func (s *Store) commit(batch []*op) {
	for len(batch) > 0 {
		start := time.Now()
		var w *writeTx
		failed, opErr := -1, error(nil)
		err := s.db.Update(func(tx *bolt.Tx) error {
			w = &writeTx{s: s, tx: tx}
			for i, o := range batch {
				if err := o.fn(w); err != nil {
					failed, opErr = i, err
					return err
				}
			}
			if w.d.countersChanged() {
				s.mu.Lock()
				c := s.counters.add(w.d.counters)
				s.mu.Unlock()
				return writeCounters(tx.Bucket(bucketMeta), c)
			}
			return nil
		})
		if failed >= 0 {
			// Only that operation fails; the others are retried without it.
			batch[failed].done <- opErr
			batch = append(batch[:failed:failed], batch[failed+1:]...)
			continue
		}
		if err != nil {
			err = s.writeError(err)
			for _, o := range batch {
				o.done <- err
			}
			return
		}
		s.apply(w.d, time.Since(start))
		for _, o := range batch {
			o.done <- nil
		}
		return
	}
}

// writeError explains a failed commit. Nothing already stored is affected: bbolt writes new pages elsewhere
// and switches the meta page last.
func (s *Store) writeError(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: disk full writing %s: %w (free space on that filesystem, or lower the store's "+
			"size limit; records already stored are intact)", ErrFull, s.path, err)
	}
	return fmt.Errorf("store: commit to %s failed: %w (records already stored are intact)", s.path, err)
}

func (c persistentCounters) add(d persistentCounters) persistentCounters {
	return persistentCounters{c.thinned + d.thinned, c.dropped + d.dropped, c.quarantined + d.quarantined,
		c.recovered + d.recovered}
}

// apply makes a committed transaction's changes visible in memory.
func (s *Store) apply(d delta, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range s.lanes {
		s.lanes[l].records += d.lanes[l].records
		s.lanes[l].bytes += d.lanes[l].bytes
	}
	s.quarantine.records += d.quarantine.records
	s.quarantine.bytes += d.quarantine.bytes
	s.counters = s.counters.add(d.counters)
	for _, seq := range d.removed {
		delete(s.inflight, seq)
	}
	s.commits.n++
	s.commits.records += d.appended
	s.commits.last = took
	s.commits.total += took
	s.commits.max = max(s.commits.max, took)
	if d.appended > 0 {
		s.wakeLocked()
	}
}

// wakeLocked wakes everyone in Wait. s.mu must be held.
func (s *Store) wakeLocked() {
	close(s.notify)
	s.notify = make(chan struct{})
}

// totalBytes is the bytes counted against MaxBytes, including this transaction's changes so far.
func (w *writeTx) totalBytes() int64 {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	t := w.s.quarantine.bytes + w.d.quarantine.bytes
	for l := range w.s.lanes {
		t += w.s.lanes[l].bytes + w.d.lanes[l].bytes
	}
	return t
}

func (w *writeTx) records(l Lane) int64 {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.lanes[l].records + w.d.lanes[l].records
}

func (w *writeTx) inFlight(seq uint64) bool {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	_, ok := w.s.inflight[seq]
	return ok
}
