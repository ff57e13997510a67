package store

import (
	"encoding/binary"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Stats is a snapshot of the store for status reports and metrics.
type Stats struct {
	Epoch    uint64
	Origin   Origin // how the epoch began: a new, recreated or salvaged file means a unit lost or reset data
	Critical LaneStats
	Normal   LaneStats

	QuarantinedRecords int64 // records in the quarantine now
	// Lifetime counts, kept in the file across restarts.
	Thinned     uint64 // normal records deleted by thinning when full
	Dropped     uint64 // normal records dropped when full
	Quarantined uint64 // records moved to the quarantine
	Recovered   uint64 // times a damaged file was moved aside and replaced
	Recovery    []string

	Bytes     int64 // bytes counted against MaxBytes
	MaxBytes  int64
	FileBytes int64 // size of the database file

	Commits       uint64        // commits since Open
	Appended      uint64        // records appended since Open
	CommitLast    time.Duration // latency of the last commit, fsync included
	CommitMean    time.Duration
	CommitMax     time.Duration
	RecordsPerCmt float64 // mean records appended per commit: how much group commit shares
}

// LaneStats describes one lane.
type LaneStats struct {
	Records  int64
	Bytes    int64
	InFlight int       // handed out by Peek, not yet acked or released
	Oldest   time.Time // time of the oldest record; zero when empty
}

// OldestAge is how old the lane's oldest record is at now; zero when empty.
func (l LaneStats) OldestAge(now time.Time) time.Duration {
	if l.Oldest.IsZero() {
		return 0
	}
	return now.Sub(l.Oldest)
}

// Stats returns a snapshot.
func (s *Store) Stats() Stats {
	var oldest [len(lanes)]time.Time
	_ = s.view(func(tx *bolt.Tx) error {
		for _, l := range lanes {
			if k, v := tx.Bucket(laneBuckets[l]).Cursor().First(); k != nil && len(v) >= recordHeaderSize {
				oldest[l] = time.Unix(0, int64(binary.BigEndian.Uint64(v[2:10]))).UTC()
			}
		}
		return nil
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	var inflight [len(lanes)]int
	for _, l := range s.inflight {
		inflight[l]++
	}
	lane := func(l Lane) LaneStats {
		return LaneStats{s.lanes[l].records, s.lanes[l].bytes, inflight[l], oldest[l]}
	}
	st := Stats{
		Epoch:              s.epoch,
		Origin:             s.origin,
		Critical:           lane(Critical),
		Normal:             lane(Normal),
		QuarantinedRecords: s.quarantine.records,
		Thinned:            s.counters.thinned,
		Dropped:            s.counters.dropped,
		Quarantined:        s.counters.quarantined,
		Recovered:          s.counters.recovered,
		Recovery:           append([]string(nil), s.recovery...),
		Bytes:              s.lanes[Critical].bytes + s.lanes[Normal].bytes + s.quarantine.bytes,
		MaxBytes:           s.opts.MaxBytes,
		Commits:            s.commits.n,
		Appended:           s.commits.records,
		CommitLast:         s.commits.last,
		CommitMax:          s.commits.max,
	}
	if s.commits.n > 0 {
		st.CommitMean = s.commits.total / time.Duration(s.commits.n)
		st.RecordsPerCmt = float64(s.commits.records) / float64(s.commits.n)
	}
	if fi, err := os.Stat(s.path); err == nil {
		st.FileBytes = fi.Size()
	}
	return st
}
