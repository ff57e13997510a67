package postgres

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
)

// TrackingToken sets the order's token if it has none (one UPDATE, so two processes asking at once
// agree on one) and returns the stored one.
func (s *Store) TrackingToken(ctx context.Context, truck, id string) (string, error) {
	tok, key := storage.NewTrackingToken()
	if _, err := s.pool.Exec(ctx, `UPDATE orders SET tracking_token = $3, tracking_key = $4
		WHERE truck = $1 AND id = $2 AND tracking_token IS NULL`, truck, id, tok, key[:]); err != nil {
		return "", fmt.Errorf("postgres: tracking token: %w", err)
	}
	var stored string
	err := s.pool.QueryRow(ctx, `SELECT tracking_token FROM orders WHERE truck = $1 AND id = $2`, truck, id).Scan(&stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("%w: %s/%s", dispatch.ErrNotFound, truck, id)
	}
	if err != nil {
		return "", fmt.Errorf("postgres: tracking token: %w", err)
	}
	return stored, nil
}

// Tracked finds the order by the token's key (a unique index) and compares the token in constant time.
func (s *Store) Tracked(ctx context.Context, token string) (dispatch.Entry, error) {
	notFound := fmt.Errorf("%w: no order has this tracking token", dispatch.ErrNotFound)
	if storage.CheckTrackingToken(token) != nil {
		return dispatch.Entry{}, notFound
	}
	key := storage.TrackingKey(token)
	var stored string
	var body, raw []byte
	var next time.Time
	err := s.pool.QueryRow(ctx, `SELECT tracking_token, body, entry, next_attempt FROM orders WHERE tracking_key = $1`,
		key[:]).Scan(&stored, &body, &raw, &next)
	if errors.Is(err, pgx.ErrNoRows) {
		return dispatch.Entry{}, notFound
	}
	if err != nil {
		return dispatch.Entry{}, fmt.Errorf("postgres: tracking token: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(stored), []byte(token)) != 1 {
		return dispatch.Entry{}, notFound
	}
	e, err := decodeEntry(body, raw, next)
	if err != nil {
		return dispatch.Entry{}, fmt.Errorf("postgres: %w", err)
	}
	return *e, nil
}
