// Package embedded is the office storage engine for one host (storage.Store): the bbolt files of a
// dispatch data directory, DIR/archive.db (sdk/dispatch/archive) and DIR/outbox.db (dispatch.Outbox),
// the same files `waybill order` and `waybill watch` use, and DIR/tracking.db (the customer tracking
// tokens: token by order, order by SHA-256 of the token), so moving from those commands to `waybill
// dispatch run` keeps every order and every archived record.
//
// # Basics
//
//	st, err := embedded.Open(embedded.Options{Dir: "/var/lib/waybill-dispatch",
//		Outbox: dispatch.OutboxConfig{Certificate: cert, Key: key}})
//
// It wraps the archive and the outbox rather than rewriting them: Commit commits to the archive and then
// applies an event to the outbox (both idempotent, so a crash between them is healed by the broker's
// redelivery), RunSender is Outbox.Run, NoteStatus is Outbox.NoteStore and Kick.
//
// # Caveats
//
//   - The archive is held open (an exclusive bbolt lock): one process per data directory. The outbox is
//     opened per operation, so `waybill order list` still reads it while the office runs.
//   - Track and Events read the truck's whole archive and filter by time; the last fix per truck is
//     found once per truck and then kept in memory.
//   - PruneFixes is the archive's (sdk/dispatch/archive Archive.PruneFixes): read transactions find old
//     fixes, one write transaction per batch deletes them, each call going on where the last stopped.
//     After a restart, a truck
//     whose every fix was pruned has no last fix (PostgreSQL keeps it in last_fixes).
package embedded
