package embedded

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
)

// TrackingFile holds the customer tracking tokens in the data directory, beside the outbox and archive
// (whose formats belong to sdk/dispatch).
const TrackingFile = "tracking.db"

var (
	bucketByOrder = []byte("by_order") // truck "\x00" id -> token
	bucketByKey   = []byte("by_key")   // storage.TrackingKey(token) -> truck "\x00" id
)

func openTracking(path string, timeout time.Duration) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		return nil, fmt.Errorf("embedded: %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketByOrder, bucketByKey} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("embedded: %s: %w", path, err)
	}
	return db, nil
}

func orderKey(truck, id string) []byte { return []byte(truck + "\x00" + id) }

// TrackingToken returns the order's token, creating it in one bbolt transaction.
func (s *Store) TrackingToken(ctx context.Context, truck, id string) (string, error) {
	if _, err := s.ob.Get(ctx, truck, id); err != nil {
		return "", err
	}
	var tok string
	err := s.trk.Update(func(tx *bolt.Tx) error {
		byOrder, byKey := tx.Bucket(bucketByOrder), tx.Bucket(bucketByKey)
		k := orderKey(truck, id)
		if v := byOrder.Get(k); v != nil {
			tok = string(v)
			return nil
		}
		t, key := storage.NewTrackingToken()
		if err := byOrder.Put(k, []byte(t)); err != nil {
			return err
		}
		tok = t
		return byKey.Put(key[:], k)
	})
	if err != nil {
		return "", fmt.Errorf("embedded: tracking token: %w", err)
	}
	return tok, nil
}

// Tracked looks the token up by its key and compares the stored token in constant time.
func (s *Store) Tracked(ctx context.Context, token string) (dispatch.Entry, error) {
	notFound := fmt.Errorf("%w: no order has this tracking token", dispatch.ErrNotFound)
	if storage.CheckTrackingToken(token) != nil {
		return dispatch.Entry{}, notFound
	}
	key := storage.TrackingKey(token)
	var truck, id string
	found := false
	err := s.trk.View(func(tx *bolt.Tx) error {
		k := tx.Bucket(bucketByKey).Get(key[:])
		if k == nil {
			return nil
		}
		stored := tx.Bucket(bucketByOrder).Get(k)
		if subtle.ConstantTimeCompare(stored, []byte(token)) != 1 {
			return nil
		}
		var ok bool
		truck, id, ok = strings.Cut(string(k), "\x00")
		found = ok
		return nil
	})
	if err != nil {
		return dispatch.Entry{}, fmt.Errorf("embedded: tracking token: %w", err)
	}
	if !found {
		return dispatch.Entry{}, notFound
	}
	e, err := s.ob.Get(ctx, truck, id)
	if errors.Is(err, dispatch.ErrNotFound) {
		return dispatch.Entry{}, notFound
	}
	return e, err
}
