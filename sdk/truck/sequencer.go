package truck

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/store"
)

// sequencerBucket holds, per message type, the highest sequence number reserved.
const sequencerBucket = "sdk-sequencer"

// reserveBlock is how many sequence numbers one durable write reserves: a restart skips at most this many,
// and signing costs one fsync per this many messages.
const reserveBlock = 1000

// reseedBehind is how far the clock may run ahead of the sequence before the sequence jumps to it.
const reseedBehind = time.Hour

// plausibleSince is the earliest clock reading used to seed sequence numbers: a unit without a real-time
// clock boots in 1970 or 2000, and a seed from then would go backwards.
var plausibleSince = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// SequencerConfig configures a StoreSequencer.
type SequencerConfig struct {
	// SideFile keeps the reservations apart from the store file too, so that a store moved aside as corrupt,
	// salvaged without the page holding them, or deleted does not restart the numbers. Zero: the store's
	// path with ".seq" appended. "-": none.
	SideFile string
	// Clock seeds a stream without saved state: its first number is at least the clock in microseconds, so
	// a unit whose store and side file are both gone (an SD card swapped) still moves forward, as long as
	// the clock (GPS time on units without a real-time clock) is right. Nil: time.Now.
	Clock func() time.Time
	// Logger gets a warning when the side file cannot be read or written. Nil: discard.
	Logger *slog.Logger
}

// StoreSequencer is an sdk.Sequencer kept in the truck's store and a side file, seeded from the clock, so
// envelope sequence numbers keep increasing across restarts, store losses and salvages, and receivers'
// replay windows accept them.
type StoreSequencer struct {
	st  *store.Store
	cfg SequencerConfig

	mu       sync.Mutex
	next     map[sdk.MsgType]uint64 // guarded by mu
	reserved map[sdk.MsgType]uint64 // guarded by mu
	seeded   map[sdk.MsgType]bool   // guarded by mu: the clock floor was applied since start
}

var _ sdk.Sequencer = (*StoreSequencer)(nil)

// NewStoreSequencer loads the reservations from st and the side file; the highest of the two wins.
func NewStoreSequencer(ctx context.Context, st *store.Store, cfgs ...SequencerConfig) (*StoreSequencer, error) {
	var cfg SequencerConfig
	if len(cfgs) > 0 {
		cfg = cfgs[0]
	}
	if cfg.SideFile == "" {
		cfg.SideFile = st.Path() + ".seq"
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &StoreSequencer{st: st, cfg: cfg, next: map[sdk.MsgType]uint64{}, reserved: map[sdk.MsgType]uint64{},
		seeded: map[sdk.MsgType]bool{}}
	err := st.ForEach(sequencerBucket, func(k, v []byte) error {
		if len(k) != 1 || len(v) != 8 {
			return fmt.Errorf("truck: sequencer entry %x: bad size", k)
		}
		t := sdk.MsgType(k[0])
		s.reserved[t] = binary.BigEndian.Uint64(v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	side, err := readSideFile(cfg.SideFile)
	if err != nil {
		cfg.Logger.Warn("truck: envelope sequence side file unreadable; using the store and the clock",
			"path", cfg.SideFile, "err", err)
	}
	for t, r := range side {
		s.reserved[t] = max(s.reserved[t], r)
	}
	for t, r := range s.reserved {
		s.next[t] = r // numbers up to the old reservation may have been used
	}
	return s, nil
}

// Next returns the next sequence number for t, reserving a new block durably when the last one is used up.
func (s *StoreSequencer) Next(t sdk.MsgType) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.next[t] + 1
	// Seeded lazily, at the first message of each type: by then a unit without a real-time clock has usually
	// had its GPS time (a TLS handshake needed it). Seeded again whenever the clock is more than
	// reseedBehind ahead of the numbers: a unit whose store and side file were both lost, and whose clock
	// was plausible but months behind at the first message (a fake-hwclock image), catches up as soon as the
	// clock is set right, instead of staying behind what dispatch has seen for ever. In steady running that
	// costs one reservation per type and reseedBehind.
	if now := s.cfg.Clock(); !now.Before(plausibleSince) {
		if c := uint64(now.UnixMicro()); !s.seeded[t] || c > n+uint64(reseedBehind.Microseconds()) {
			s.seeded[t] = true
			n = max(n, c)
		}
	}
	if n > s.reserved[t] {
		r := n + reserveBlock - 1
		if err := s.st.Put(context.Background(), sequencerBucket, []byte{byte(t)}, binary.BigEndian.AppendUint64(nil, r)); err != nil {
			return 0, fmt.Errorf("truck: reserve sequence numbers: %w", err)
		}
		s.reserved[t] = r
		if s.cfg.SideFile != "-" {
			if err := writeSideFile(s.cfg.SideFile, s.reserved); err != nil {
				s.cfg.Logger.Warn("truck: envelope sequence side file not written; the store still has it",
					"path", s.cfg.SideFile, "err", err)
			}
		}
	}
	s.next[t] = n
	return n, nil
}

// Side file: a version byte, then per type one byte of type and 8 bytes of reservation, then a CRC-less
// length check: it is rewritten whole (temporary file, fsync, rename), so it is either old or new.
const sideFileVersion = 1

func readSideFile(path string) (map[sdk.MsgType]uint64, error) {
	if path == "-" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(b) == 0 || b[0] != sideFileVersion || (len(b)-1)%9 != 0 {
		return nil, fmt.Errorf("not a sequence file (%d bytes)", len(b))
	}
	out := map[sdk.MsgType]uint64{}
	for b = b[1:]; len(b) >= 9; b = b[9:] {
		out[sdk.MsgType(b[0])] = binary.BigEndian.Uint64(b[1:9])
	}
	return out, nil
}

func writeSideFile(path string, reserved map[sdk.MsgType]uint64) error {
	b := []byte{sideFileVersion}
	for t, r := range reserved {
		b = append(b, byte(t))
		b = binary.BigEndian.AppendUint64(b, r)
	}
	return writeFileSync(path, b)
}

// writeFileSync replaces path with b, durably: a temporary file beside it (mode 0600), fsync, rename, and
// the directory synced. A crash leaves the old file or the new one.
func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync() // the rename is durable once the directory is
		d.Close()
	}
	return nil
}
