package store

import (
	"context"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// State buckets live beside the queue under a prefix, so a caller's bucket name can never collide with the
// store's own.
const statePrefix = "s:"

func stateBucketKey(bucket string) []byte { return []byte(statePrefix + bucket) }

func stateBucketName(name []byte) (string, bool) {
	return strings.CutPrefix(string(name), statePrefix)
}

func validBucket(bucket string) error {
	if bucket == "" || len(bucket) > 64 {
		return fmt.Errorf("store: state bucket name %q must be 1-64 bytes", bucket)
	}
	return nil
}

// Tx is a write transaction on the keyed state and the queue together: an order stored in the order book and
// the receipt event queued for the uploader commit atomically, or neither does.
type Tx struct{ w *writeTx }

// Put stores value under bucket/key, creating the bucket if needed.
func (t *Tx) Put(bucket string, key, value []byte) error {
	if err := validBucket(bucket); err != nil {
		return err
	}
	if len(key) == 0 || len(key) > 512 {
		return fmt.Errorf("store: state key of %d bytes: must be 1-512", len(key))
	}
	if len(value) > MaxRecordBytes {
		return fmt.Errorf("%w: state value of %d bytes, limit %d", ErrTooLarge, len(value), MaxRecordBytes)
	}
	b, err := t.w.tx.CreateBucketIfNotExists(stateBucketKey(bucket))
	if err != nil {
		return err
	}
	return b.Put(key, encodeState(bucket, key, value))
}

// Get returns a copy of the value under bucket/key, ErrNotFound if there is none, or ErrCorrupt if it fails
// its checksum. It sees this transaction's own writes.
func (t *Tx) Get(bucket string, key []byte) ([]byte, error) {
	return getState(t.w.tx, bucket, key)
}

// Delete removes bucket/key; a missing key is not an error.
func (t *Tx) Delete(bucket string, key []byte) error {
	b := t.w.tx.Bucket(stateBucketKey(bucket))
	if b == nil {
		return nil
	}
	return b.Delete(key)
}

// Append queues entries in this transaction, like Store.Append.
func (t *Tx) Append(entries ...Entry) ([]uint64, error) {
	if err := validEntries(entries); err != nil {
		return nil, err
	}
	return t.w.append(entries)
}

// Ack removes queued records in this transaction, like Store.Ack.
func (t *Tx) Ack(seqs ...uint64) error { _, err := t.w.ack(seqs); return err }

// Update runs fn in a write transaction that shares a commit with concurrent callers, and returns once it is
// fsync'd. If fn returns an error nothing it did is committed. fn may run more than once (when another
// operation in the same group commit fails, the rest are retried), so it must only act through tx.
func (s *Store) Update(ctx context.Context, fn func(tx *Tx) error) error {
	return s.submit(ctx, &op{fn: func(w *writeTx) error { return fn(&Tx{w}) }})
}

// Put stores one state value durably; see Tx.Put.
func (s *Store) Put(ctx context.Context, bucket string, key, value []byte) error {
	return s.Update(ctx, func(tx *Tx) error { return tx.Put(bucket, key, value) })
}

// Get returns a copy of the state value under bucket/key; see Tx.Get.
func (s *Store) Get(bucket string, key []byte) ([]byte, error) {
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = getState(tx, bucket, key)
		return err
	})
	return out, err
}

// ForEach calls fn for every key of a state bucket in key order, with copies of key and value. A value that
// fails its checksum stops the walk with ErrCorrupt.
func (s *Store) ForEach(bucket string, fn func(key, value []byte) error) error {
	return s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(stateBucketKey(bucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			data, err := decodeState(bucket, k, v)
			if err != nil {
				return err
			}
			return fn(append([]byte(nil), k...), data)
		})
	})
}

func getState(tx *bolt.Tx, bucket string, key []byte) ([]byte, error) {
	b := tx.Bucket(stateBucketKey(bucket))
	if b == nil {
		return nil, ErrNotFound
	}
	v := b.Get(key)
	if v == nil {
		return nil, ErrNotFound
	}
	return decodeState(bucket, key, v)
}
