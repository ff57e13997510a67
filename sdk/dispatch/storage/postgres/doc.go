// Package postgres is the office storage engine for fleets that outgrow one host (storage.Store on
// PostgreSQL via pgx/v5). Several dispatch processes share one database: each commits what its share of
// the fleet's messages brings (an MQTT v5 share group splits the ingest), and the re-sending of orders is
// coordinated through the database, so any process may be killed without losing an event or stopping an
// order.
//
// # Basics
//
//	st, err := postgres.Open(ctx, postgres.Options{DSN: "host=/run/postgresql dbname=waybill",
//		Certificate: cert, Key: key})
//	defer st.Close()
//
// Open runs the schema migrations (versioned, in schema_migrations, one transaction each under an advisory
// lock, so processes starting together apply each once).
//
// # Coordination
//
// Each order row has next_attempt. A sender round claims due rows with SELECT ... FOR UPDATE SKIP LOCKED
// (other processes skip them), moves next_attempt out by a lease (PublishTimeout plus RetryDelay) and
// reserves envelope sequence numbers for its identity (table signer_seq) in the same transaction, then
// publishes and records the outcome (next_attempt = now + backoff). A process killed after the claim leaves
// the rows due again when the lease ends, for any process. A truck coming online pulls its orders'
// next_attempt in to now + OnlineGrace in the database, so whichever process sends next sends them; not
// those under a lease (leased_until, set by the claim and cleared by the next write), which their
// claimant may be publishing.
//
// An event is committed with INSERT ... ON CONFLICT DO NOTHING and, only when the row is new, applied to
// its order (locked FOR UPDATE) in the same transaction: exactly once, whatever process commits it and
// however often the broker or the truck delivers it.
//
// # Importing
//
// ImportOrder, ImportFixes, ImportEvent, ImportStatus, ImportEpoch and ImportSignerSeq copy another
// engine's record in as it is (`waybill dispatch migrate` copies an embedded data directory with them):
// orders keep their state, confirmations, sends and tracking token; events are inserted without being
// applied again; anything the database holds already is left alone, so an import run twice copies nothing
// twice.
//
// # Fix storage
//
// One row per fix with fixed-point columns as the telemetry carries them (1e-6 degree, decimetres, cm/s,
// tenths of a degree, hundredths of HDOP), the store (truck, epoch) as a 4-byte id: 44 bytes of data, 76
// bytes on the heap with PostgreSQL's tuple header and line pointer, plus one index, the primary key
// (store, time, seq), which serves both the track by time and idempotency (a re-sent record carries the
// same time and seq). TestFixBytes measured 120 bytes per fix in total (76 heap, 41 index, after VACUUM): a year of
// 1,000 trucks at one fix per 10 s (3.15e9 fixes) is about 380 GB, one ordinary 1 TB disk. Packing a telemetry batch into one
// row (delta-coded, as the wire does) would cut that several times; not done.
//
// # Changes between processes
//
// After each commit that changes what a console shows (new fixes, an event or order change, a status),
// the process announces it with pg_notify on channel waybill_changes: a small JSON object with its own
// process id, the kind, the truck, and the newest fix, the order id or the online state. Watch (storage.
// Watcher) listens on a connection of its own and hands the other processes' changes to fn, so each
// office's console sees the whole fleet live. The announcement is best effort, after the commit: a change
// missed while a listener reconnects shows at the console's next refresh. A re-sent record that changes
// nothing announces nothing.
//
// # Caveats
//
//   - Other processes learn of a new order within Poll (1 s); the process that created it sends at once.
//   - PruneFixes deletes fixes older than a cutoff, at most limit per statement: found store by store
//     through the primary key (a store with nothing old costs one index probe), the rows another process
//     is deleting skipped (FOR UPDATE SKIP LOCKED), so every process may prune at once; only the deleted
//     rows are locked, for one batch (5,000 rows: 10 ms with the table in PostgreSQL's buffers, up to
//     300 ms with 1 million rows and the test cluster's 32 MB of buffers on a loaded machine). The space goes back to the table through
//     autovacuum, for new fixes; the files do not shrink (VACUUM FULL or pg_repack would, with a lock).
package postgres
