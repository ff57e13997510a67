package store

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// OriginKind says how a store's epoch began.
type OriginKind uint8

const (
	// OriginExisting: the file was there and usable, and how its epoch began is not recorded (a file written
	// before origins were kept). Quarantined records never change a store's origin.
	OriginExisting OriginKind = iota
	// OriginCreated: no database file existed: the first start, or the file was deleted or the card replaced.
	OriginCreated
	// OriginRecreated: the file was unusable (zero length, garbage, truncated) and moved aside, and nothing in
	// it could be salvaged: whatever it held is lost.
	OriginRecreated
	// OriginSalvaged: the file was damaged and moved aside, and the records that could be read were carried
	// into a fresh file with a new epoch; records on damaged pages are lost.
	OriginSalvaged
)

func (k OriginKind) String() string {
	switch k {
	case OriginExisting:
		return "existing"
	case OriginCreated:
		return "created"
	case OriginRecreated:
		return "recreated"
	case OriginSalvaged:
		return "salvaged"
	}
	return fmt.Sprintf("origin(%d)", uint8(k))
}

// MarshalText makes the kind read as its name in JSON status reports.
func (k OriginKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads the names MarshalText writes, so a JSON report (waybill store inspect --json) reads back.
func (k *OriginKind) UnmarshalText(b []byte) error {
	for _, c := range []OriginKind{OriginExisting, OriginCreated, OriginRecreated, OriginSalvaged} {
		if c.String() == string(b) {
			*k = c
			return nil
		}
	}
	return fmt.Errorf("store: unknown origin %q", b)
}

// Origin tells why the store's file is new, if it is: how its current epoch began. The truck puts it in its
// status so that dispatch learns a unit lost data (OriginRecreated, OriginSalvaged) or started afresh
// (OriginCreated). It is recorded in the file when the epoch begins, so it is still reported after restarts,
// with Reopened set, until the next new epoch.
type Origin struct {
	Kind OriginKind
	// PreviousEpoch is the epoch of the file this one replaced, when that could still be read; else zero.
	PreviousEpoch uint64
	// At is when the epoch began; zero for OriginExisting.
	At time.Time
	// Detail says what happened, for people: the damage found, where the old file went, what was carried over.
	Detail string
	// Reopened is true when the epoch began at an earlier Open: the store has been opened again since (a
	// restart), so the event Kind describes is not news of this start.
	Reopened bool
}

var keyOrigin = []byte("origin")

// Origin value layout in the meta bucket: [0] version (1), [1] kind, [2:10] previous epoch, [10:18] time,
// Unix nanoseconds, [18:] detail. Reopened is not stored: it is a property of the Open that read it.
const originHeader = 18

func encodeOrigin(o Origin) []byte {
	detail := o.Detail
	if len(detail) > 1024 {
		detail = detail[:1024]
	}
	v := make([]byte, originHeader, originHeader+len(detail))
	v[0] = 1
	v[1] = byte(o.Kind)
	binary.BigEndian.PutUint64(v[2:10], o.PreviousEpoch)
	binary.BigEndian.PutUint64(v[10:18], uint64(o.At.UnixNano()))
	return append(v, detail...)
}

// readOrigin reads the recorded origin; a file without one (or with one it cannot read) is OriginExisting.
func readOrigin(m *bolt.Bucket) Origin {
	v := m.Get(keyOrigin)
	if len(v) < originHeader || v[0] != 1 || OriginKind(v[1]) > OriginSalvaged {
		return Origin{Kind: OriginExisting}
	}
	return Origin{
		Kind:          OriginKind(v[1]),
		PreviousEpoch: binary.BigEndian.Uint64(v[2:10]),
		At:            time.Unix(0, int64(binary.BigEndian.Uint64(v[10:18]))).UTC(),
		Detail:        string(v[originHeader:]),
	}
}

// Origin tells how the store's current epoch began; see Origin.
func (s *Store) Origin() Origin { return s.origin }

// beginEpoch starts a new epoch in the meta bucket: a fresh random epoch, recorded with s.born (why it
// begins) in the same transaction, so a restart still knows why. The Store takes both once Open succeeds;
// an Open that fails discards it.
func (s *Store) beginEpoch(m *bolt.Bucket) error {
	epoch := newEpoch()
	o := s.born
	o.At = s.opts.Clock().UTC()
	if err := m.Put(keyEpoch, binary.BigEndian.AppendUint64(nil, epoch)); err != nil {
		return err
	}
	if err := m.Put(keyOrigin, encodeOrigin(o)); err != nil {
		return err
	}
	s.epoch, s.origin = epoch, o
	s.opts.Logger.Info("store: new epoch", "path", s.path, "epoch", fmt.Sprintf("%016x", epoch),
		"origin", o.Kind, "previous_epoch", fmt.Sprintf("%016x", o.PreviousEpoch), "detail", o.Detail)
	return nil
}
