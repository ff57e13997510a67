package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var (
	bucketMeta       = []byte("meta")
	bucketQuarantine = []byte("quarantine")
	laneBuckets      = [...][]byte{Critical: []byte("q0"), Normal: []byte("q1")}
	keyEpoch         = []byte("epoch")
	keyThinned       = []byte("thinned")
	keyDropped       = []byte("dropped")
	keyQuarantined   = []byte("quarantined")
	keyRecovered     = []byte("recovered")
)

// Store is a durable, prioritised record queue and a small keyed state, in one bbolt file. All methods are
// safe for concurrent use.
type Store struct {
	path   string
	opts   Options
	db     *bolt.DB
	epoch  uint64
	origin Origin // how the epoch began
	born   Origin // during Open: why a new epoch begins, if one must
	// openSeq is the last record seq handed out before this Open (see SeqAtOpen).
	openSeq uint64

	ops  chan *op      // to the committer
	quit chan struct{} // closed by Close: the committer finishes what is queued and exits
	done chan struct{} // closed by the committer when it exits

	// closeMu orders sends on ops against Close: senders hold it shared, Close exclusively.
	closeMu sync.RWMutex
	closed  bool

	// peekMu serialises Peek and PeekNewest, so that no record is handed out twice.
	peekMu sync.Mutex

	// mu guards the fields below it.
	mu         sync.Mutex
	lanes      [len(lanes)]laneCount
	quarantine laneCount
	inflight   map[uint64]Lane    // records handed out by Peek and not yet acked or released
	cursor     [len(lanes)]uint64 // per lane, no record below this seq is available that is not in flight
	notify     chan struct{}      // closed and replaced whenever records become available
	counters   persistentCounters // thinned, dropped, quarantined: mirrored in the meta bucket
	commits    commitStats        // latency of commits since Open
	recovery   []string           // what Open had to repair, for Stats
	movedAside uint64             // files moved aside by this Open
}

type laneCount struct{ records, bytes int64 }

type persistentCounters struct{ thinned, dropped, quarantined, recovered uint64 }

type commitStats struct {
	n          uint64
	total, max time.Duration
	last       time.Duration
	records    uint64 // records appended
}

// Open opens or creates the store at path. A file that bbolt cannot open, or whose pages are damaged, is
// moved aside as path.corrupt-<UTC time> with an error log line, the records that can still be read are
// carried over, and a fresh database with a new epoch takes its place: a truck with a broken file keeps
// working. Origin tells which happened. Open fails with ErrLocked when another process holds the file for
// longer than Options.LockTimeout.
func Open(path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	s := &Store{
		path:     path,
		opts:     opts,
		ops:      make(chan *op, opts.MaxBatchOps),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		inflight: make(map[uint64]Lane),
		notify:   make(chan struct{}),
		// A file that exists but holds no epoch was never more than created: bbolt made it and the process
		// stopped before init committed.
		born: Origin{Kind: OriginCreated, Detail: "the database file held no store yet"},
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	go s.committer()
	return s, nil
}

func boltOptions(o Options, readOnly bool) *bolt.Options {
	return &bolt.Options{
		Timeout:  o.LockTimeout,
		ReadOnly: readOnly,
		// The freelist is written at every commit (one page more per commit). NoFreelistSync would save that
		// write but rebuilds the freelist at open with tx.Check in a goroutine of bbolt's own, where a damaged
		// page panics beyond our recover and kills the agent.
		NoFreelistSync: false,
		FreelistType:   bolt.FreelistMapType,
	}
}

// open opens the file, checks every record, and repairs what it must.
func (s *Store) open() error {
	pf, err := s.preflight()
	if err != nil {
		return err
	}
	switch {
	case pf.missing:
		s.born = Origin{Kind: OriginCreated,
			Detail: "no database file: first start, or the file was deleted or the storage replaced"}
	case pf.empty:
		// bbolt would happily initialise a zero-length file; but a file that was a database and is now
		// empty lost its data (a truncating crash, a failed copy), and that must not pass in silence.
		if _, err := s.moveAside("the file is empty (zero length)"); err != nil {
			return err
		}
	case pf.truncated != nil:
		aside, err := s.moveAside(pf.truncated.Error())
		if err != nil {
			return err
		}
		sv, ok := salvageTruncated(aside, pf.need, s.opts)
		db, err := openBolt(s.path, boltOptions(s.opts, false))
		if err != nil {
			return fmt.Errorf("store: create fresh database %s: %w", s.path, err)
		}
		s.db = db
		if ok {
			if err := s.restore(sv); err != nil {
				_ = db.Close()
				return err
			}
		}
		return s.finishOpen()
	}

	db, err := openBolt(s.path, boltOptions(s.opts, false))
	switch {
	case err == nil:
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("%w: %s (waited %s; is another waybill-agent running with the same data directory?)",
			ErrLocked, s.path, s.opts.LockTimeout)
	case isCorruptOpenError(err):
		if _, err := s.moveAside(fmt.Sprintf("bbolt cannot open it: %v", err)); err != nil {
			return err
		}
		if db, err = openBolt(s.path, boltOptions(s.opts, false)); err != nil {
			return fmt.Errorf("store: create fresh database %s: %w", s.path, err)
		}
	default:
		return fmt.Errorf("store: open %s: %w", s.path, err)
	}
	s.db = db
	return s.finishOpen()
}

// finishOpen reads every record of the open database, repairs what it must and loads the counts.
func (s *Store) finishOpen() error {
	log := s.opts.Logger
	scan, err := s.scan()
	if err != nil {
		// A damaged page: carry over what can be read, then start a fresh file.
		log.Error("store: database damaged; salvaging readable records into a fresh file",
			"path", s.path, "err", err)
		salvaged := salvage(s.db)
		_ = s.db.Close()
		s.db = nil
		if _, err := s.moveAside(fmt.Sprintf("damaged page: %v", err)); err != nil {
			return err
		}
		if s.db, err = openBolt(s.path, boltOptions(s.opts, false)); err != nil {
			return fmt.Errorf("store: create fresh database %s: %w", s.path, err)
		}
		if err := s.restore(salvaged); err != nil {
			return err
		}
		if scan, err = s.scan(); err != nil {
			return fmt.Errorf("store: fresh database %s unreadable: %w", s.path, err)
		}
	}
	if err := s.init(scan); err != nil {
		_ = s.db.Close()
		return err
	}
	return nil
}

// preflightResult is what preflight found wrong with an existing file, before bbolt opens it.
type preflightResult struct {
	missing   bool  // no file at all
	empty     bool  // zero length, and not another process's database in the making
	truncated error // shorter than its meta page says
	need      int64 // the length the meta page says
}

// preflight looks at an existing file under a shared lock, so that no other process is in the middle of
// creating or writing it (bbolt holds an exclusive lock from just after creating the file until it closes
// it). When another process holds the file for longer than LockTimeout it finds nothing: bbolt.Open then
// reports the lock.
func (s *Store) preflight() (preflightResult, error) {
	f, err := os.Open(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return preflightResult{missing: true}, nil
	case err != nil:
		return preflightResult{}, fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	deadline := time.Now().Add(s.opts.LockTimeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			return preflightResult{}, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	st, err := f.Stat()
	if err != nil {
		return preflightResult{}, fmt.Errorf("store: %w", err)
	}
	if st.Size() == 0 {
		// bbolt creates the file, then locks it, then writes its first pages: a zero-length file only just
		// created is another process's database in the making, not damage.
		return preflightResult{empty: time.Since(st.ModTime()) >= 5*time.Second}, nil
	}
	need, why := checkTruncation(s.path)
	return preflightResult{truncated: why, need: need}, nil
}

// openBolt calls bolt.Open, turning a panic on a garbage file into an error.
func openBolt(path string, o *bolt.Options) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt panicked opening the file: %v", berrors.ErrInvalid, r)
		}
	}()
	return bolt.Open(path, 0o600, o)
}

func isCorruptOpenError(err error) bool {
	return errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrVersionMismatch) ||
		errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrDatabaseNotOpen) ||
		// A truncated file fails the mmap or the meta reads in ways bbolt reports without a sentinel.
		!errors.Is(err, fs.ErrPermission) && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, berrors.ErrTimeout)
}

// moveAside renames the database file to path.corrupt-<UTC time> and says so loudly.
func (s *Store) moveAside(why string) (string, error) {
	aside := fmt.Sprintf("%s.corrupt-%s", s.path, time.Now().UTC().Format("20060102T150405.000000000Z"))
	if err := os.Rename(s.path, aside); err != nil {
		return "", fmt.Errorf("store: %s is unusable (%s) and cannot be moved aside: %w", s.path, why, err)
	}
	s.opts.Logger.Error("store: DATABASE FILE UNUSABLE, moved aside; starting a fresh one",
		"path", s.path, "moved_to", aside, "reason", why)
	s.recovery = append(s.recovery, fmt.Sprintf("%s moved to %s: %s", s.path, aside, why))
	s.movedAside++
	// Until restore carries something over, whatever the file held is lost.
	s.born = Origin{Kind: OriginRecreated, Detail: fmt.Sprintf("%s; moved to %s", why, aside)}
	return aside, nil
}

// salvageTruncated reads what it can from a truncated file: a copy padded with zeros to the length its meta
// page expects opens, the missing pages read as damaged, and salvage reads around them.
func salvageTruncated(path string, need int64, o Options) (salvaged, bool) {
	tmp := path + ".salvage"
	defer os.Remove(tmp)
	src, err := os.ReadFile(path)
	if err != nil || int64(len(src)) >= need {
		return salvaged{}, false
	}
	if err := os.WriteFile(tmp, append(src, make([]byte, need-int64(len(src)))...), 0o600); err != nil {
		return salvaged{}, false
	}
	db, err := openBolt(tmp, boltOptions(o, true))
	if err != nil {
		return salvaged{}, false
	}
	defer db.Close()
	return salvage(db), true
}

// scanResult is what a full read of the database found.
type scanResult struct {
	lanes      [len(lanes)]laneCount
	quarantine laneCount
	bad        []badRecord // records whose checksum failed
	epoch      uint64
	origin     Origin
	counter    persistentCounters
}

type badRecord struct {
	lane Lane
	seq  uint64
	err  error
}

// scan reads every record and counts the lanes. A damaged page makes bbolt panic (or fault on the mmap);
// scan turns that into an error.
func (s *Store) scan() (res scanResult, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			if v := m.Get(keyEpoch); len(v) == 8 {
				res.epoch = binary.BigEndian.Uint64(v)
			}
			res.origin = readOrigin(m)
			res.counter = readCounters(m)
		}
		for _, l := range lanes {
			b := tx.Bucket(laneBuckets[l])
			if b == nil {
				continue
			}
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if _, err := decodeRecord(l, res.epoch, k, v); err != nil {
					seq := uint64(0)
					if len(k) == keySize {
						seq = binary.BigEndian.Uint64(k)
					}
					res.bad = append(res.bad, badRecord{l, seq, err})
					continue
				}
				res.lanes[l].records++
				res.lanes[l].bytes += int64(len(k) + len(v))
			}
		}
		if q := tx.Bucket(bucketQuarantine); q != nil {
			c := q.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				res.quarantine.records++
				res.quarantine.bytes += int64(len(k) + len(v))
			}
		}
		return nil
	})
	return res, err
}

// view runs fn in a read transaction, converting a panic from a damaged page into ErrCorrupt.
func (s *Store) view(fn func(*bolt.Tx) error) error { return safeView(s.db, fn) }

func safeView(db *bolt.DB, fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: damaged database page: %v (the file is repaired at the next Open)", ErrCorrupt, r)
		}
	}()
	return db.View(fn)
}

// salvaged holds what could still be read from a damaged file.
type salvaged struct {
	epoch      uint64 // the damaged file's epoch; zero when unreadable
	seq        uint64 // its meta sequence, the last seq it handed out; zero when unreadable
	counter    persistentCounters
	records    [len(lanes)][]Record // Epoch is each record's origin; zero when unknown
	quarantine [][2][]byte          // key and value, as stored
	state      map[string][][2][]byte
}

// salvage reads every record it can from a damaged database: each lane forwards from the first record until
// the damage, then backwards from the last, so records on both sides of a bad page survive. Records that
// fail their checksum go to the quarantine, as they would in a sound file.
func salvage(db *bolt.DB) salvaged {
	out := salvaged{state: map[string][][2][]byte{}}
	_ = safeView(db, func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			if v := m.Get(keyEpoch); len(v) == 8 {
				out.epoch = binary.BigEndian.Uint64(v)
			}
			out.seq = m.Sequence()
			out.counter = readCounters(m)
		}
		return nil
	})
	for _, l := range lanes {
		salvageBucket(db, laneBuckets[l], func(k, v []byte) {
			r, err := decodeRecord(l, out.epoch, k, v)
			switch {
			case err == nil:
				out.records[l] = append(out.records[l], r)
			case len(k) == keySize:
				out.quarantine = append(out.quarantine, [2][]byte{k, quarantineValue(l, err.Error(), v)})
				out.counter.quarantined++
			}
		})
	}
	salvageBucket(db, bucketQuarantine, func(k, v []byte) {
		if len(k) == keySize {
			out.quarantine = append(out.quarantine, [2][]byte{k, v})
		}
	})
	_ = safeView(db, func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if bucket, ok := stateBucketName(name); ok {
				_ = b.ForEach(func(k, v []byte) error {
					if data, err := decodeState(bucket, k, v); err == nil {
						out.state[bucket] = append(out.state[bucket], [2][]byte{append([]byte(nil), k...), data})
					}
					return nil
				})
			}
			return nil
		})
	})
	return out
}

// salvageBucket calls fn with a copy of every key and value of a bucket that it can read: forwards from the
// first key until a damaged page stops it, then backwards from the last, each key once.
func salvageBucket(db *bolt.DB, name []byte, fn func(k, v []byte)) {
	seen := map[string]bool{}
	for _, backwards := range []bool{false, true} {
		_ = safeView(db, func(tx *bolt.Tx) error {
			b := tx.Bucket(name)
			if b == nil {
				return nil
			}
			c := b.Cursor()
			first, next := c.First, c.Next
			if backwards {
				first, next = c.Last, c.Prev
			}
			for k, v := first(); k != nil; k, v = next() {
				if seen[string(k)] {
					continue
				}
				seen[string(k)] = true
				fn(append([]byte(nil), k...), append([]byte(nil), v...))
			}
			return nil
		})
	}
}

// restore writes what salvage read into the fresh database, under a new epoch: the old epoch's sequence
// numbers were handed out beyond what survived (records acked, or lost on the damaged page), so carrying it on
// would reuse them and receivers would drop new records as duplicates. Salvaged records keep their seq and
// their origin epoch, so receivers still recognise re-sent ones; new records get seqs above every seq the
// old file handed out that is known, and the fresh file's own epoch.
func (s *Store) restore(sv salvaged) error {
	n := 0
	for _, rs := range sv.records {
		n += len(rs)
	}
	ns := 0
	for _, kvs := range sv.state {
		ns += len(kvs)
	}
	if n+len(sv.quarantine)+ns > 0 {
		s.born.Kind = OriginSalvaged
		s.born.Detail += fmt.Sprintf("; carried over %d records, %d quarantined records, %d state values",
			n, len(sv.quarantine), ns)
	}
	s.born.PreviousEpoch = sv.epoch
	err := s.db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		// The epoch begins in the same transaction as the records are written, so no crash leaves them
		// in a file without an epoch, where a later Open would take them for records of a new one.
		if err := s.beginEpoch(m); err != nil {
			return err
		}
		if err := writeCounters(m, sv.counter); err != nil {
			return err
		}
		maxSeq := sv.seq
		for _, l := range lanes {
			b, err := tx.CreateBucketIfNotExists(laneBuckets[l])
			if err != nil {
				return err
			}
			for _, r := range sv.records[l] {
				// A record of unknown origin (the old epoch was unreadable) joins the new epoch: receivers
				// may get it twice, under two names, but never lose it.
				if err := b.Put(seqKey(r.Seq), encodeRecord(r.Seq, r.Epoch, r.Kind, r.Time, r.Data)); err != nil {
					return err
				}
				maxSeq = max(maxSeq, r.Seq)
			}
		}
		q, err := tx.CreateBucketIfNotExists(bucketQuarantine)
		if err != nil {
			return err
		}
		for _, kv := range sv.quarantine {
			if err := q.Put(kv[0], kv[1]); err != nil {
				return err
			}
			maxSeq = max(maxSeq, binary.BigEndian.Uint64(kv[0]))
		}
		// Seqs stay unique within the file across both lanes and the quarantine: the uploader keys on them.
		if err := m.SetSequence(maxSeq); err != nil {
			return err
		}
		for bucket, kvs := range sv.state {
			b, err := tx.CreateBucketIfNotExists(stateBucketKey(bucket))
			if err != nil {
				return err
			}
			for _, kv := range kvs {
				if err := b.Put(kv[0], encodeState(bucket, kv[0], kv[1])); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: write salvaged records into fresh database %s: %w", s.path, err)
	}
	s.opts.Logger.Error("store: salvaged records from the damaged file into a new epoch", "path", s.path,
		"records", n, "quarantined", len(sv.quarantine), "state", ns,
		"old_epoch", fmt.Sprintf("%016x", sv.epoch), "new_epoch", fmt.Sprintf("%016x", s.epoch))
	s.recovery = append(s.recovery, fmt.Sprintf("salvaged %d records, %d quarantined records, %d state values "+
		"into new epoch %016x (was %016x)", n, len(sv.quarantine), ns, s.epoch, sv.epoch))
	return nil
}

// init creates the buckets and, for a file without one, the epoch; quarantines records that failed their
// checksum, and loads the in-memory counts.
func (s *Store) init(scan scanResult) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		for _, name := range append(laneBuckets[:], bucketQuarantine) {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		switch {
		case s.epoch != 0: // restore began it in this Open
		case scan.epoch != 0:
			s.epoch, s.origin = scan.epoch, scan.origin
			s.origin.Reopened = true
		default:
			if err := s.beginEpoch(m); err != nil {
				return err
			}
		}
		c := scan.counter
		c.recovered += s.movedAside
		for _, b := range scan.bad {
			if err := quarantineTx(tx, b.lane, b.seq, b.err.Error()); err != nil {
				return err
			}
			c.quarantined++
		}
		s.counters = c
		s.openSeq = m.Sequence()
		return writeCounters(m, c)
	})
	if err != nil {
		return fmt.Errorf("store: initialise %s: %w", s.path, err)
	}
	for _, b := range scan.bad {
		s.opts.Logger.Error("store: record failed its checksum; quarantined", "path", s.path,
			"lane", b.lane, "seq", b.seq, "err", b.err)
	}
	if len(scan.bad) > 0 {
		// Quarantined values were re-read and moved: count the quarantine again rather than guess sizes.
		if rescan, err := s.scan(); err == nil {
			scan = rescan
		}
	}
	s.lanes = scan.lanes
	s.quarantine = scan.quarantine
	return nil
}

func newEpoch() uint64 {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(err) // crypto/rand never fails on Linux
		}
		if e := binary.BigEndian.Uint64(b[:]); e != 0 {
			return e
		}
	}
}

func readCounters(m *bolt.Bucket) persistentCounters {
	get := func(k []byte) uint64 {
		if v := m.Get(k); len(v) == 8 {
			return binary.BigEndian.Uint64(v)
		}
		return 0
	}
	return persistentCounters{get(keyThinned), get(keyDropped), get(keyQuarantined), get(keyRecovered)}
}

func writeCounters(m *bolt.Bucket, c persistentCounters) error {
	for _, kv := range []struct {
		k []byte
		v uint64
	}{{keyThinned, c.thinned}, {keyDropped, c.dropped}, {keyQuarantined, c.quarantined}, {keyRecovered, c.recovered}} {
		if err := m.Put(kv.k, binary.BigEndian.AppendUint64(nil, kv.v)); err != nil {
			return err
		}
	}
	return nil
}

// Epoch identifies this database file's lifetime: it is chosen at random when the file is created (or
// re-created or salvaged after corruption) and kept across restarts. Receivers identify a record by its
// Record.Epoch and Seq; records appended to this store carry this Epoch.
func (s *Store) Epoch() uint64 { return s.epoch }

// SeqAtOpen is the last record seq this store had handed out when Open returned. Records numbered above
// it were appended since: no earlier process can have sent them, so a receipt that names one while
// nobody here sent it is not for it (a receipt for an older copy of the store, restored from a backup).
func (s *Store) SeqAtOpen() uint64 { return s.openSeq }

// Path is the database file's path.
func (s *Store) Path() string { return s.path }

// Close finishes the operations already submitted, stops the committer and closes the file. It waits for
// open read transactions.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	s.closeMu.Unlock()
	close(s.quit)
	<-s.done
	s.mu.Lock()
	close(s.notify) // wake waiters: they see ErrClosed
	s.notify = make(chan struct{})
	s.mu.Unlock()
	return s.db.Close()
}

// submit hands an operation to the committer and waits for its commit. If ctx ends first, submit returns
// ctx.Err() but the operation may still be committed.
func (s *Store) submit(ctx context.Context, o *op) error {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	o.done = make(chan error, 1)
	select {
	case s.ops <- o:
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return ctx.Err()
	}
	s.closeMu.RUnlock()
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
