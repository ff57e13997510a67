// Package storage is the dispatch office's durable record behind one interface, Store: the archive of
// every fix, event, status and proof of delivery the trucks sent (a dispatch.Record: committed before the
// broker's PUBLISH is acknowledged and before the truck gets its receipt), and the outbox of orders with
// their revisions, confirmations and state, re-sent until each truck confirms them.
//
// # Engines
//
//   - embedded (sdk/dispatch/storage/embedded): the default for one host, on the bbolt files of the dispatch
//     data directory that `waybill order` and `waybill watch` use (archive.db via sdk/dispatch/archive,
//     outbox.db via dispatch.Outbox). One process sends for a data directory.
//   - postgres (sdk/dispatch/storage/postgres): for fleets that outgrow one host. Several dispatch processes
//     share one database: the ingest is split by an MQTT v5 share group, and the re-sending is coordinated
//     through row locks (SELECT ... FOR UPDATE SKIP LOCKED) and a lease per order, so any process may die
//     without stopping an order.
//
// Each order may have a customer tracking token (TrackingToken, Tracked): 128 random bits, stored with the
// order, found by its SHA-256 and compared in constant time (the embedded engine keeps them in
// DIR/tracking.db, PostgreSQL in two columns of orders, schema version 2).
//
// Both engines apply the outbox's rules from sdk/dispatch (Entry.ApplyEvent, Entry.Reopen), so an order
// reads the same on either. The tests in this directory run every case on both engines.
//
// # Caveats
//
//   - Track and Events read by time range; the embedded engine reads a truck's whole archive and filters
//     (bbolt keys are record order, not time): fine for one host's fleet, and one reason to move to
//     PostgreSQL, which indexes fixes by (store, time).
//   - Truck reads one truck (the tracking page's question): PostgreSQL looks up two primary keys, the
//     embedded engine reads the truck's status and keeps its last fix in memory after the first read.
//   - From the embedded engine to PostgreSQL: `waybill dispatch migrate --config FILE --from DATA_DIR`
//     (embedded.Store.Export and Archive read, the postgres Import methods write; idempotent).
//   - PruneFixes deletes fixes older than a cutoff, a batch of at most limit per call (one short
//     transaction), safe from several processes at once; `waybill dispatch run` calls it for [archive]
//     keep_fixes. Only fixes: events and proofs of delivery, statuses (one per truck), orders and tracking
//     tokens are kept for ever. The files do not shrink: bbolt and PostgreSQL reuse the freed space for new
//     fixes, so the archive stops growing once a retention period of fixes is in it.
package storage
