package store

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's meta page layout (v2, little-endian on every platform we ship to), after a 16-byte page header:
// magic, version, page size, flags (uint32 each), root bucket (pgid, sequence), freelist pgid, high-water
// pgid, txid, FNV-64a checksum of the preceding 56 bytes.
const (
	boltMagic      = 0xED0CDAED
	boltPageHeader = 16
	boltMetaSize   = 64
)

type boltMeta struct {
	pageSize uint32
	highPgid uint64
	txid     uint64
}

func parseBoltMeta(b []byte) (boltMeta, bool) {
	if len(b) < boltPageHeader+boltMetaSize {
		return boltMeta{}, false
	}
	m := b[boltPageHeader : boltPageHeader+boltMetaSize]
	if binary.LittleEndian.Uint32(m[0:4]) != boltMagic {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != binary.LittleEndian.Uint64(m[56:64]) {
		return boltMeta{}, false
	}
	return boltMeta{
		pageSize: binary.LittleEndian.Uint32(m[8:12]),
		highPgid: binary.LittleEndian.Uint64(m[40:48]),
		txid:     binary.LittleEndian.Uint64(m[48:56]),
	}, true
}

// checkTruncation reports a database file shorter than its own meta page says it is. bbolt reads pages
// through mmap, and a page past the end of the file is a SIGBUS that can kill the process from one of
// bbolt's own goroutines; so a truncated file is caught here, before bbolt sees it. A file whose meta pages
// are both invalid is left to bbolt, which reports it as invalid.
// It returns the length the file should have.
func checkTruncation(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil // bbolt reports it
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, nil
	}
	head := make([]byte, 4096)
	n, _ := io.ReadFull(f, head)
	m0, ok0 := parseBoltMeta(head[:n])
	var m1 boltMeta
	var ok1 bool
	if ok0 && m0.pageSize >= 512 && m0.pageSize <= 1<<20 {
		second := make([]byte, boltPageHeader+boltMetaSize)
		if n, _ := f.ReadAt(second, int64(m0.pageSize)); n == len(second) {
			m1, ok1 = parseBoltMeta(second)
		}
	}
	var m boltMeta
	switch {
	case ok0 && ok1:
		m = m0
		if m1.txid > m0.txid {
			m = m1
		}
	case ok0:
		m = m0
	default:
		return 0, nil
	}
	need := int64(m.highPgid) * int64(m.pageSize)
	if fi.Size() < need {
		return need, fmt.Errorf("file is truncated: %d bytes, its meta page needs %d", fi.Size(), need)
	}
	return need, nil
}
