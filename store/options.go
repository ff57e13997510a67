package store

import (
	"log/slog"
	"time"
)

// MaxRecordBytes bounds one record's data and one state value. Records are small (a fix is about 40 bytes, a
// delivery event a few hundred); anything near this size is a bug in the caller.
const MaxRecordBytes = 64 << 10

// Options configures a Store. The zero value is usable: every field documents what zero means.
type Options struct {
	// MaxBytes bounds the bytes of queued records (key, header and data; quarantined records too). When an
	// append would pass it, the store first thins the oldest normal records, then drops the oldest normal
	// records, down to 90 % of MaxBytes; it never drops a critical record. The database file on disk is
	// typically up to about twice this size (bbolt pages are not packed full and freed pages are reused, not
	// returned). Zero means 64 MiB.
	MaxBytes int64

	// LockTimeout is how long Open waits for the file lock held by another process before failing with
	// ErrLocked. Zero means 5 seconds; it is never infinite.
	LockTimeout time.Duration

	// MaxBatchOps caps how many concurrent operations share one commit. Zero means 1024.
	MaxBatchOps int

	// Clock stamps records whose Entry.Time is zero. Nil means time.Now.
	Clock func() time.Time

	// Logger receives recovery and corruption reports. Nil discards them.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 64 << 20
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 5 * time.Second
	}
	if o.MaxBatchOps <= 0 {
		o.MaxBatchOps = 1024
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
