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

// Record is a stored entry. Seq is unique within the store's Epoch and increases with append order across
// both lanes, restarts included; together (Epoch, Seq) identify a record for receivers that drop duplicates.
type Record struct {
	Seq  uint64
	Lane Lane
	Kind uint8
	Time time.Time
	Data []byte
}

// Record value layout, version 1 (all integers big-endian):
//
//	[0]      format version (1)
//	[1]      kind
//	[2:10]   time, Unix nanoseconds
//	[10:14]  CRC-32C over the 8-byte key, bytes [0:10] and the data
//	[14:]    data
//
// bbolt keeps no checksum on data pages, so a flipped bit in a value would otherwise go unnoticed; the key is
// covered too, so a value that lands under another key is caught.
const (
	recordVersion    = 1
	recordHeaderSize = 14
	keySize          = 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func seqKey(seq uint64) []byte {
	k := make([]byte, keySize)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

// recordSize is the number of bytes a record with this much data counts against MaxBytes.
func recordSize(dataLen int) int64 { return int64(keySize + recordHeaderSize + dataLen) }

func encodeRecord(seq uint64, kind uint8, t time.Time, data []byte) []byte {
	v := make([]byte, recordHeaderSize+len(data))
	v[0] = recordVersion
	v[1] = kind
	binary.BigEndian.PutUint64(v[2:10], uint64(t.UnixNano()))
	copy(v[recordHeaderSize:], data)
	binary.BigEndian.PutUint32(v[10:14], recordCRC(seq, v))
	return v
}

func recordCRC(seq uint64, v []byte) uint32 {
	var k [keySize]byte
	binary.BigEndian.PutUint64(k[:], seq)
	c := crc32.Update(0, castagnoli, k[:])
	c = crc32.Update(c, castagnoli, v[:10])
	return crc32.Update(c, castagnoli, v[recordHeaderSize:])
}

// decodeRecord checks and decodes a stored key and value. The returned record's Data is a copy: bbolt's
// memory is only valid inside its transaction.
func decodeRecord(lane Lane, key, v []byte) (Record, error) {
	if len(key) != keySize {
		return Record{}, fmt.Errorf("%w: key of %d bytes, want %d", ErrCorrupt, len(key), keySize)
	}
	seq := binary.BigEndian.Uint64(key)
	if len(v) < recordHeaderSize {
		return Record{Seq: seq}, fmt.Errorf("%w: record %d: %d bytes, shorter than its header", ErrCorrupt, seq, len(v))
	}
	if v[0] != recordVersion {
		return Record{Seq: seq}, fmt.Errorf("%w: record %d: unknown format version %d", ErrCorrupt, seq, v[0])
	}
	if got, want := recordCRC(seq, v), binary.BigEndian.Uint32(v[10:14]); got != want {
		return Record{Seq: seq}, fmt.Errorf("%w: record %d: checksum %08x, stored %08x", ErrCorrupt, seq, got, want)
	}
	return Record{
		Seq:  seq,
		Lane: lane,
		Kind: v[1],
		Time: time.Unix(0, int64(binary.BigEndian.Uint64(v[2:10]))).UTC(),
		Data: append([]byte(nil), v[recordHeaderSize:]...),
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
