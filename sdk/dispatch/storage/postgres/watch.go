package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
)

// changeChannel is the PostgreSQL notification channel of storage.Change.
const changeChannel = "waybill_changes"

var _ storage.Watcher = (*Store)(nil)

// announced is a storage.Change as notified: with the announcing process's id, so it skips its own.
type announced struct {
	From string `json:"p"`
	storage.Change
}

func newProcessID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// announce tells the other processes' Watch about c, after its commit. Best effort: a console that misses
// it shows it at its next refresh, so a failure is only logged.
func (s *Store) announce(ctx context.Context, c storage.Change) {
	payload, err := json.Marshal(announced{From: s.id, Change: c})
	if err == nil {
		// Bounded: the ingest waits for it, and the commit it follows is already durable.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_, err = s.pool.Exec(actx, "SELECT pg_notify($1, $2)", changeChannel, string(payload))
		cancel()
	}
	if err != nil {
		s.log.Debug("postgres: change not announced to the other processes", "kind", c.Kind, "truck", c.Truck, "err", err)
	}
}

// Watch calls fn with each change another process announced (storage.Watcher), on a connection of its
// own (LISTEN holds it), until ctx ends.
func (s *Store) Watch(ctx context.Context, fn func(storage.Change)) error {
	backoff := 100 * time.Millisecond
	for {
		listened, err := s.listen(ctx, fn)
		if ctx.Err() != nil {
			return nil
		}
		if listened {
			backoff = 100 * time.Millisecond
		}
		s.log.Warn("postgres: listening for the other processes' changes failed; trying again", "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// listen runs one LISTEN connection until it fails or ctx ends; listened says whether LISTEN succeeded.
func (s *Store) listen(ctx context.Context, fn func(storage.Change)) (listened bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return false, err
	}
	defer func() {
		// A clean close sends a message: bounded, the server may be gone.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+changeChannel); err != nil {
		return false, err
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, err
		}
		var a announced
		if err := json.Unmarshal([]byte(n.Payload), &a); err != nil {
			s.log.Warn("postgres: a change notification that is not one; ignored", "payload", n.Payload, "err", err)
			continue
		}
		if a.From == s.id {
			continue
		}
		if a.Kind == "" || a.Truck == "" {
			s.log.Warn("postgres: an incomplete change notification; ignored", "payload", n.Payload)
			continue
		}
		fn(a.Change)
	}
}
