package store

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"
)

// Lane is a record's priority class. Readers get every critical record before any normal one.
type Lane uint8

const (
	// Critical records (delivery events, order receipts) are never thinned or dropped.
	Critical Lane = 0
	// Normal records (fixes) are thinned, then dropped, oldest first, when the store is full.
	Normal Lane = 1
)

// lanes lists the lanes in the order readers get them.
var lanes = [...]Lane{Critical, Normal}

func (l Lane) String() string {
	switch l {
	case Critical:
		return "critical"
	case Normal:
		return "normal"
	}
	return fmt.Sprintf("lane(%d)", uint8(l))
}

func (l Lane) valid() bool { return l == Critical || l == Normal }

// Entry is a record to append.
type Entry struct {
	Lane Lane
	// Kind is the caller's type tag (fix, event, ...), stored and returned untouched.
	Kind uint8
	// Time is the record's own time, used for the oldest-age figure and for inspection. Zero means the
	// store's clock at append.
	Time time.Time
	Data []byte
}

// Record is a stored entry. Seq is unique within the store's file and increases with append order across
// both lanes, restarts included; together (Epoch, Seq) identify a record for receivers that drop duplicates.
type Record struct {
	Seq uint64
	// Epoch is the origin epoch: the Epoch of the store that first accepted the record. For a record appended
	// to this store it is Store.Epoch(); a record carried into a fresh file by salvage keeps the epoch of the
	// file it came from (the first one, across repeated salvages), so that a receiver that already has
	// (Epoch, Seq) recognises it. Senders must stamp each record with its own Epoch, not the store's.
	Epoch uint64
	Lane  Lane
	Kind  uint8
	Time  time.Time
	Data  []byte
}

// Record value layout (all integers big-endian):
//
//	[0]      format version: 1, or 2 for a record whose origin epoch is not the store's
//	[1]      kind
//	[2:10]   time, Unix nanoseconds
//	[10:14]  CRC-32C over the 8-byte key, bytes [0:10] and bytes [14:]
//	[14:]    version 1: data
//	[14:22]  version 2: origin epoch (never zero, never the store's epoch)
//	[22:]    version 2: data
//
// bbolt keeps no checksum on data pages, so a flipped bit in a value would otherwise go unnoticed; the key is
// covered too, so a value that lands under another key is caught. Version 1 records belong to the store's
// own epoch, which is kept once in the meta bucket; only records carried over by salvage need version 2.
const (
	recordVersion    = 1
	recordVersionV2  = 2
	recordHeaderSize = 14
	originSize       = 8
	keySize          = 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func seqKey(seq uint64) []byte {
	k := make([]byte, keySize)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

// recordSize is the number of bytes a record of this store with this much data counts against MaxBytes.
func recordSize(dataLen int) int64 { return int64(keySize + recordHeaderSize + dataLen) }

// encodeRecord encodes a record. origin is its origin epoch when that is not the store's own (version 2);
// zero means the store's own epoch (version 1, the common case: no bytes spent on it).
func encodeRecord(seq, origin uint64, kind uint8, t time.Time, data []byte) []byte {
	head := recordHeaderSize
	if origin != 0 {
		head += originSize
	}
	v := make([]byte, head+len(data))
	v[0] = recordVersion
	if origin != 0 {
		v[0] = recordVersionV2
		binary.BigEndian.PutUint64(v[recordHeaderSize:head], origin)
	}
	v[1] = kind
	binary.BigEndian.PutUint64(v[2:10], uint64(t.UnixNano()))
	copy(v[head:], data)
	binary.BigEndian.PutUint32(v[10:14], recordCRC(seq, v))
	return v
}

// recordCRC covers the key, the header before the CRC and everything after it: in version 2 that includes
// the origin epoch, so a damaged epoch cannot pass a record off as another epoch's.
func recordCRC(seq uint64, v []byte) uint32 {
	var k [keySize]byte
	binary.BigEndian.PutUint64(k[:], seq)
	c := crc32.Update(0, castagnoli, k[:])
	c = crc32.Update(c, castagnoli, v[:10])
	return crc32.Update(c, castagnoli, v[recordHeaderSize:])
}

// decodeRecord checks and decodes a stored key and value of a store whose epoch is storeEpoch (the origin of
// version 1 records). The returned record's Data is a copy: bbolt's memory is only valid inside its
// transaction.
func decodeRecord(lane Lane, storeEpoch uint64, key, v []byte) (Record, error) {
	if len(key) != keySize {
		return Record{}, fmt.Errorf("%w: key of %d bytes, want %d", ErrCorrupt, len(key), keySize)
	}
	seq := binary.BigEndian.Uint64(key)
	if len(v) < recordHeaderSize {
		return Record{Seq: seq}, fmt.Errorf("%w: record %d: %d bytes, shorter than its header", ErrCorrupt, seq, len(v))
	}
	head, origin := recordHeaderSize, storeEpoch
	switch v[0] {
	case recordVersion:
	case recordVersionV2:
		head += originSize
		if len(v) < head {
			return Record{Seq: seq}, fmt.Errorf("%w: record %d: %d bytes, shorter than its header", ErrCorrupt, seq, len(v))
		}
		origin = binary.BigEndian.Uint64(v[recordHeaderSize:head])
	default:
		return Record{Seq: seq}, fmt.Errorf("%w: record %d: unknown format version %d", ErrCorrupt, seq, v[0])
	}
	if got, want := recordCRC(seq, v), binary.BigEndian.Uint32(v[10:14]); got != want {
		return Record{Seq: seq}, fmt.Errorf("%w: record %d: checksum %08x, stored %08x", ErrCorrupt, seq, got, want)
	}
	if v[0] == recordVersionV2 && origin == 0 {
		// encodeRecord never writes it: version 2 exists to carry an epoch.
		return Record{Seq: seq}, fmt.Errorf("%w: record %d: version 2 without an origin epoch", ErrCorrupt, seq)
	}
	return Record{
		Seq:   seq,
		Epoch: origin,
		Lane:  lane,
		Kind:  v[1],
		Time:  time.Unix(0, int64(binary.BigEndian.Uint64(v[2:10]))).UTC(),
		Data:  append([]byte(nil), v[head:]...),
	}, nil
}

// State value layout, version 1: [0] version, [1:5] CRC-32C over bucket name, key and data, [5:] data.
const stateHeaderSize = 5

func stateCRC(bucket string, key, data []byte) uint32 {
	c := crc32.Update(0, castagnoli, []byte(bucket))
	c = crc32.Update(c, castagnoli, []byte{0})
	c = crc32.Update(c, castagnoli, key)
	c = crc32.Update(c, castagnoli, []byte{0})
	return crc32.Update(c, castagnoli, data)
}

func encodeState(bucket string, key, data []byte) []byte {
	v := make([]byte, stateHeaderSize+len(data))
	v[0] = recordVersion
	binary.BigEndian.PutUint32(v[1:5], stateCRC(bucket, key, data))
	copy(v[stateHeaderSize:], data)
	return v
}

func decodeState(bucket string, key, v []byte) ([]byte, error) {
	if len(v) < stateHeaderSize || v[0] != recordVersion {
		return nil, fmt.Errorf("%w: state %s/%q: bad header", ErrCorrupt, bucket, key)
	}
	data := v[stateHeaderSize:]
	if got, want := stateCRC(bucket, key, data), binary.BigEndian.Uint32(v[1:5]); got != want {
		return nil, fmt.Errorf("%w: state %s/%q: checksum %08x, stored %08x", ErrCorrupt, bucket, key, got, want)
	}
	return append([]byte(nil), data...), nil
}
