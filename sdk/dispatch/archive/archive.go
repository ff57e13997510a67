package archive

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
)

// DefaultTimeout is how long Open waits for the file lock (Options.Timeout).
const DefaultTimeout = 10 * time.Second

// File is the archive's conventional name in a dispatch data directory.
const File = "archive.db"

var (
	bucketTrucks = []byte("trucks")
	bucketFixes  = []byte("fixes")
	bucketEvents = []byte("events")
	keyStatus    = []byte("status")
)

// Options configure Open.
type Options struct {
	// Timeout bounds the wait for the file lock. Zero: DefaultTimeout (10 s).
	Timeout time.Duration
	// ReadOnly opens for reading (a shared lock: it waits while a writer has the file open). Zero: read-write.
	ReadOnly bool
}

// Archive is a dispatch.Record on a bbolt file. It is safe for concurrent use.
type Archive struct {
	db   *bolt.DB
	path string

	pruneMu sync.Mutex // one PruneFixes at a time; guards pruneAt
	pruneAt []byte     // where the pass of PruneFixes goes on: truck, 0, fix key; nil: from the start
}

var _ dispatch.Record = (*Archive)(nil)

// Open opens (creating when needed, with its directory) the archive at path.
func Open(path string, opts Options) (*Archive, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("archive: %w", err)
		}
	} else if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("archive: %w", err) // read-only must not create an empty file
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout, ReadOnly: opts.ReadOnly})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("archive: %s is locked by another process (waited %v): is another waybill watch or "+
			"order command running on this data directory?", path, opts.Timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("archive: open %s: %w", path, err)
	}
	if !opts.ReadOnly {
		if err := db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(bucketTrucks)
			return err
		}); err != nil {
			db.Close()
			return nil, fmt.Errorf("archive: %s: %w", path, err)
		}
	}
	return &Archive{db: db, path: path}, nil
}

// Path is the archive's file.
func (a *Archive) Path() string { return a.path }

// Close closes the file.
func (a *Archive) Close() error { return a.db.Close() }

func recordKey(e sdk.Epoch, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, reusedKeyLen), e[:]...), seq)
}

// A record is stored under its identity, (epoch, seq): 16 bytes. A record that comes with an identity the
// archive already holds with other content is not a duplicate: the truck's store went back to an older copy
// of itself (an SD image restored from a backup) and numbered new records again. Dropping it would lose it
// for good (it is receipted, and the truck deletes it), so it is stored too, under its identity followed by
// 8 bytes of its content's hash: reusedKeyLen bytes.
const (
	identityKeyLen = 16
	reusedKeyLen   = identityKeyLen + 8
)

// reusedKey is the key of a record whose identity the archive holds with other content.
func reusedKey(key, same []byte) []byte {
	h := fnv.New64a()
	h.Write(same)
	return h.Sum(append(make([]byte, 0, reusedKeyLen), key[:identityKeyLen]...))
}

type item struct {
	key, val []byte
	// same is what makes two records with one identity the same record: the fix, or the event without
	// its envelope's id and time (a re-send is signed again).
	same []byte
}

// storedAs returns the key under which b holds it, or nil if b holds it under none (b may be nil).
func (it item) storedAs(b *bolt.Bucket, sub []byte) []byte {
	if b == nil {
		return nil
	}
	v := b.Get(it.key)
	if v == nil {
		return nil
	}
	// A stored value that cannot be read (damaged) is not this record: it is stored beside it.
	if same, err := sameOf(sub, v); err == nil && bytes.Equal(same, it.same) {
		return it.key
	}
	k := reusedKey(it.key, it.same)
	if b.Get(k) != nil {
		return k
	}
	return nil
}

// sameOf is a stored value's identity content (item.same), decoded and encoded again, so that a value
// stored by an older version (a field it did not write) still matches its re-send.
func sameOf(sub, v []byte) ([]byte, error) {
	if !bytes.Equal(sub, bucketEvents) {
		var f sdk.Fix
		if err := json.Unmarshal(v, &f); err != nil {
			return nil, err
		}
		return json.Marshal(f)
	}
	var w eventWire
	if err := json.Unmarshal(v, &w); err != nil {
		return nil, err
	}
	return json.Marshal(w.Event)
}

// Commit stores u durably (one fsync'd transaction) and returns nil once it is on disk. Fixes and events
// already stored are left as they are; a status replaces the truck's stored one unless that is newer.
func (a *Archive) Commit(ctx context.Context, u dispatch.Update) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var truck string
	var sub []byte
	var items []item
	switch {
	case len(u.Fixes) > 0:
		truck, sub = u.Fixes[0].Truck, bucketFixes
		for _, f := range u.Fixes {
			if f.Truck != truck {
				return fmt.Errorf("archive: one update with fixes of %q and %q", truck, f.Truck)
			}
			v, err := json.Marshal(f.Fix)
			if err != nil {
				return fmt.Errorf("archive: %w", err)
			}
			items = append(items, item{key: recordKey(f.Epoch, f.Seq), val: v, same: v})
		}
	case u.Event != nil:
		truck, sub = u.Event.Truck, bucketEvents
		v, err := json.Marshal(eventWire{ID: u.Event.ID, Sent: u.Event.Sent, Event: u.Event.Event})
		if err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		same, err := json.Marshal(u.Event.Event)
		if err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		items = append(items, item{key: recordKey(u.Event.Event.Epoch, u.Event.Event.RecordSeq), val: v, same: same})
	case u.Status != nil:
		return a.commitStatus(u.Status)
	default:
		return nil // a rejection, or nothing
	}
	if truck == "" {
		return errors.New("archive: an update without a truck")
	}
	// Read first: a duplicate (the normal case after a lost receipt) then costs no write and no fsync.
	var missing []item
	if err := a.db.View(func(tx *bolt.Tx) error {
		b := records(tx, truck, sub)
		for _, it := range items {
			if it.storedAs(b, sub) == nil {
				missing = append(missing, it)
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	if len(missing) == 0 {
		return nil
	}
	err := a.db.Update(func(tx *bolt.Tx) error {
		tb, err := tx.Bucket(bucketTrucks).CreateBucketIfNotExists([]byte(truck))
		if err != nil {
			return err
		}
		b, err := tb.CreateBucketIfNotExists(sub)
		if err != nil {
			return err
		}
		for _, it := range missing {
			if it.storedAs(b, sub) != nil {
				continue // stored since the read
			}
			k := it.key
			if b.Get(k) != nil {
				k = reusedKey(it.key, it.same)
			}
			if err := b.Put(k, it.val); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("archive: commit for %s: %w", truck, err)
	}
	return nil
}

// eventWire is an event as stored.
type eventWire struct {
	ID    sdk.MsgID `json:"id"`
	Sent  time.Time `json:"sent"`
	Event sdk.Event `json:"event"`
}

// statusWire is a status as stored: sdk.State has no text decoding, so the state is its number.
type statusWire struct {
	State    uint8             `json:"state"`
	Time     time.Time         `json:"time"`
	Session  time.Time         `json:"session,omitzero"`
	Health   *sdk.Health       `json:"health,omitempty"`
	Extra    map[string]string `json:"extra,omitempty"`
	Retained bool              `json:"retained,omitempty"`
}

func (w statusWire) status() sdk.Status {
	return sdk.Status{State: sdk.State(w.State), Time: w.Time, Session: w.Session, Health: w.Health, Extra: w.Extra}
}

func (a *Archive) commitStatus(st *dispatch.Status) error {
	if st.Truck == "" {
		return errors.New("archive: a status without a truck")
	}
	v, err := json.Marshal(statusWire{State: uint8(st.Status.State), Time: st.Status.Time, Session: st.Status.Session,
		Health: st.Status.Health, Extra: st.Status.Extra, Retained: st.Retained})
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	err = a.db.Update(func(tx *bolt.Tx) error {
		tb, err := tx.Bucket(bucketTrucks).CreateBucketIfNotExists([]byte(st.Truck))
		if err != nil {
			return err
		}
		if old := tb.Get(keyStatus); old != nil {
			var w statusWire
			if json.Unmarshal(old, &w) == nil && (w.status().Newer(st.Status) || bytes.Equal(old, v)) {
				return nil // a newer one is stored (sdk.Status.Newer: a will ends its connection), or this one
			}
		}
		return tb.Put(keyStatus, v)
	})
	if err != nil {
		return fmt.Errorf("archive: status of %s: %w", st.Truck, err)
	}
	return nil
}

// truckBucket returns a truck's bucket, nil if there is none.
func truckBucket(tx *bolt.Tx, truck string) *bolt.Bucket {
	top := tx.Bucket(bucketTrucks)
	if top == nil {
		return nil
	}
	return top.Bucket([]byte(truck))
}

// records returns a truck's fixes or events bucket, nil if there is none.
func records(tx *bolt.Tx, truck string, sub []byte) *bolt.Bucket {
	tb := truckBucket(tx, truck)
	if tb == nil {
		return nil
	}
	return tb.Bucket(sub)
}

// Counts is what the archive holds for one truck.
type Counts struct {
	Fixes  int  `json:"fixes"`
	Events int  `json:"events"`
	Status bool `json:"status"` // a status is stored
}

// Trucks lists the trucks the archive holds anything of, sorted.
func (a *Archive) Trucks() ([]string, error) {
	var out []string
	err := a.db.View(func(tx *bolt.Tx) error {
		top := tx.Bucket(bucketTrucks)
		if top == nil {
			return nil
		}
		return top.ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

// Counts returns how many fixes and events the archive holds for truck.
func (a *Archive) Counts(truck string) (Counts, error) {
	var c Counts
	err := a.db.View(func(tx *bolt.Tx) error {
		if b := records(tx, truck, bucketFixes); b != nil {
			c.Fixes = b.Stats().KeyN
		}
		if b := records(tx, truck, bucketEvents); b != nil {
			c.Events = b.Stats().KeyN
		}
		if top := tx.Bucket(bucketTrucks); top != nil {
			if tb := top.Bucket([]byte(truck)); tb != nil {
				c.Status = tb.Get(keyStatus) != nil
			}
		}
		return nil
	})
	return c, err
}

// each calls fn for every record of truck in sub, in (epoch, seq) order; records stored under a reused
// identity follow the one first stored under it.
func (a *Archive) each(truck string, sub []byte, fn func(e sdk.Epoch, seq uint64, v []byte) error) error {
	return a.db.View(func(tx *bolt.Tx) error {
		b := records(tx, truck, sub)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if len(k) != identityKeyLen && len(k) != reusedKeyLen {
				return fmt.Errorf("archive: %s: bad key of %d bytes", truck, len(k))
			}
			return fn(sdk.Epoch(k[:8]), binary.BigEndian.Uint64(k[8:]), v)
		})
	})
}

// FixPage returns up to limit fixes of truck in the order of Fixes, starting after the position after (nil:
// from the first), and the position to pass for the next page: nil when there are no more. Each page is
// one short read, so a truck's whole history can be read in bounded memory while Commit goes on.
func (a *Archive) FixPage(truck string, after []byte, limit int) ([]dispatch.Fix, []byte, error) {
	if limit <= 0 {
		return nil, nil, fmt.Errorf("archive: page limit %d: want at least 1", limit)
	}
	var out []dispatch.Fix
	var next []byte
	err := a.db.View(func(tx *bolt.Tx) error {
		b := records(tx, truck, bucketFixes)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := c.First()
		if after != nil {
			if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		var last []byte
		for ; k != nil; k, v = c.Next() {
			if len(out) == limit {
				next = bytes.Clone(last)
				return nil
			}
			if len(k) != identityKeyLen && len(k) != reusedKeyLen {
				return fmt.Errorf("archive: %s: bad key of %d bytes", truck, len(k))
			}
			f := dispatch.Fix{Truck: truck, Epoch: sdk.Epoch(k[:8]), Seq: binary.BigEndian.Uint64(k[8:])}
			if err := json.Unmarshal(v, &f.Fix); err != nil {
				return fmt.Errorf("archive: fix %s/%d: %w", truck, f.Seq, err)
			}
			out = append(out, f)
			last = k
		}
		return nil
	})
	return out, next, err
}

// Fixes returns every fix of truck, ordered by epoch (bytes) and record seq. FixPage reads it in pages.
func (a *Archive) Fixes(truck string) ([]dispatch.Fix, error) {
	var out []dispatch.Fix
	err := a.each(truck, bucketFixes, func(e sdk.Epoch, seq uint64, v []byte) error {
		f := dispatch.Fix{Truck: truck, Epoch: e, Seq: seq}
		if err := json.Unmarshal(v, &f.Fix); err != nil {
			return fmt.Errorf("archive: fix %s/%d: %w", truck, seq, err)
		}
		out = append(out, f)
		return nil
	})
	return out, err
}

// Events returns every event of truck, ordered by epoch (bytes) and record seq.
func (a *Archive) Events(truck string) ([]dispatch.Event, error) {
	var out []dispatch.Event
	err := a.each(truck, bucketEvents, func(_ sdk.Epoch, seq uint64, v []byte) error {
		var w eventWire
		if err := json.Unmarshal(v, &w); err != nil {
			return fmt.Errorf("archive: event %s/%d: %w", truck, seq, err)
		}
		out = append(out, dispatch.Event{Truck: truck, ID: w.ID, Sent: w.Sent, Event: w.Event})
		return nil
	})
	return out, err
}

// Status returns the truck's latest stored status; ok is false when there is none.
func (a *Archive) Status(truck string) (st dispatch.Status, ok bool, err error) {
	err = a.db.View(func(tx *bolt.Tx) error {
		tb := truckBucket(tx, truck)
		if tb == nil {
			return nil
		}
		v := tb.Get(keyStatus)
		if v == nil {
			return nil
		}
		var w statusWire
		if err := json.Unmarshal(v, &w); err != nil {
			return fmt.Errorf("archive: status of %s: %w", truck, err)
		}
		st = dispatch.Status{Truck: truck, Retained: w.Retained, Status: w.status()}
		ok = true
		return nil
	})
	return st, ok, err
}
