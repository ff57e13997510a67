package store

import "errors"

var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("store: closed")

	// ErrFull is returned when a record cannot be stored within Options.MaxBytes even after thinning and
	// dropping every normal record that may go. Critical records are never dropped to make room, so an
	// append of a critical record into a store full of critical records fails with ErrFull.
	ErrFull = errors.New("store: full")

	// ErrCorrupt is returned when a read meets a damaged page or a record whose checksum does not match.
	// Damaged records are quarantined; a damaged file is moved aside at the next Open.
	ErrCorrupt = errors.New("store: corrupt data")

	// ErrLocked is returned by Open when another process holds the database file open for longer than
	// Options.LockTimeout.
	ErrLocked = errors.New("store: database is locked by another process")

	// ErrTooLarge is returned for a record or state value larger than MaxRecordBytes.
	ErrTooLarge = errors.New("store: record too large")

	// ErrNotFound is returned by Get for a key that is not there.
	ErrNotFound = errors.New("store: not found")
)
