package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are applied in order; each is one version. Never edit a released one: add another.
var migrations = []string{
	// 1: the archive, the outbox and the signer's sequence numbers.
	`CREATE TABLE stores (
		id serial PRIMARY KEY,
		truck text NOT NULL,
		epoch bytea NOT NULL,
		UNIQUE (truck, epoch)
	);
	CREATE TABLE fixes (
		seq bigint NOT NULL,
		t timestamptz NOT NULL,
		store_id int NOT NULL,
		lat int NOT NULL,      -- 1e-6 degree
		lon int NOT NULL,      -- 1e-6 degree
		alt int NOT NULL,      -- decimetres
		speed int NOT NULL,    -- cm/s
		course smallint NOT NULL, -- tenths of a degree
		hdop smallint NOT NULL,   -- hundredths
		sats smallint NOT NULL,
		flags smallint NOT NULL,  -- mode << 8 | sdk.FixFields
		-- One index serves both the track by time and idempotency: a record re-sent carries the same
		-- (time, seq), so a duplicate conflicts on it.
		PRIMARY KEY (store_id, t, seq)
	);
	CREATE TABLE last_fixes (
		truck text PRIMARY KEY,
		t timestamptz NOT NULL,
		fix jsonb NOT NULL
	);
	CREATE TABLE events (
		store_id int NOT NULL,
		seq bigint NOT NULL,
		t timestamptz NOT NULL,
		truck text NOT NULL,
		order_id text NOT NULL,
		body jsonb NOT NULL,
		PRIMARY KEY (store_id, seq)
	);
	CREATE INDEX events_truck_time ON events (truck, t);
	CREATE TABLE statuses (
		truck text PRIMARY KEY,
		t timestamptz NOT NULL,
		body jsonb NOT NULL
	);
	CREATE TABLE truck_epochs (
		truck text PRIMARY KEY,
		epoch bytea NOT NULL
	);
	CREATE TABLE orders (
		truck text NOT NULL,
		id text NOT NULL,
		created timestamptz NOT NULL,
		body bytea NOT NULL,   -- the current revision's signed body
		entry jsonb NOT NULL,  -- dispatch.Entry (its order is read from body)
		open boolean NOT NULL, -- unconfirmed and not expired: the sender's work
		next_attempt timestamptz NOT NULL,
		PRIMARY KEY (truck, id)
	);
	CREATE INDEX orders_due ON orders (next_attempt) WHERE open;
	CREATE TABLE signer_seq (
		identity text PRIMARY KEY,
		last bigint NOT NULL
	);`,
	// 2: customer tracking tokens, stored with their order; looked up by the token's SHA-256.
	`ALTER TABLE orders ADD COLUMN tracking_token text, ADD COLUMN tracking_key bytea;
	CREATE UNIQUE INDEX orders_tracking_key ON orders (tracking_key) WHERE tracking_key IS NOT NULL;`,
	// 3: statuses are ordered by sdk.Status.OrderKey (session, offline, time), so that a truck's will,
	// signed when it connected, ends that connection. Rows from before keep their time as their session.
	`ALTER TABLE statuses ADD COLUMN session_ms bigint, ADD COLUMN offline smallint, ADD COLUMN t_ms bigint;
	UPDATE statuses SET t_ms = floor(extract(epoch FROM t) * 1000)::bigint,
		offline = CASE WHEN (body->>'state')::int = 2 THEN 1 ELSE 0 END;
	UPDATE statuses SET session_ms = t_ms;
	ALTER TABLE statuses ALTER COLUMN session_ms SET NOT NULL, ALTER COLUMN offline SET NOT NULL,
		ALTER COLUMN t_ms SET NOT NULL;`,
	// 4: a claimed order's lease, apart from next_attempt, so that a truck coming online does not bring
	// forward an order another process is publishing.
	`ALTER TABLE orders ADD COLUMN leased_until timestamptz;`,
	// 5: an event is known by its time as well as its identity, as a fix is: a truck whose store went back
	// to an older copy of itself (an SD image restored from a backup) numbers new records again, and such
	// an event must be kept beside the first, not dropped as a duplicate (the truck deletes it once
	// receipted). A re-sent event carries the same time, so duplicates still conflict.
	`ALTER TABLE events DROP CONSTRAINT events_pkey, ADD PRIMARY KEY (store_id, seq, t);`,
}

// migrate applies the migrations not applied yet, each in its own transaction, under an advisory lock so
// that processes starting together apply each once.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	const lockID = 0x77617962696c6c // "waybill"
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(lockID)); err != nil {
		return err
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(lockID))
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return err
	}
	var have int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&have); err != nil {
		return err
	}
	if have > len(migrations) {
		return fmt.Errorf("the database's schema is version %d, newer than this program's %d: run a newer waybill",
			have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, migrations[v-1]); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", v)
			return err
		})
		if err != nil {
			return fmt.Errorf("schema migration %d: %w", v, err)
		}
	}
	return nil
}

// SchemaVersion is the schema version this program migrates to.
func SchemaVersion() int { return len(migrations) }
