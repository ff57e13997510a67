// Package archive is dispatch's embedded durable record: a dispatch.Record on one bbolt file (by convention
// DATA/archive.db in the dispatch data directory) holding every fix, every delivery event and the latest
// status of each truck, as committed by a dispatch.Consumer before it acknowledges a message to the broker
// and before a dispatch.Client receipts the records to the truck (which then deletes them).
//
// # Why a subpackage
//
// The consumer and the client live in sdk/dispatch; their storage engines are subpackages beside it (this
// embedded default; a PostgreSQL engine may follow), so an integrator who wants only the consumer, or who
// brings their own Record, pulls in no storage engine.
//
// # Layout and costs
//
// Per truck a bucket with a "fixes" and an "events" bucket, keyed by the 8-byte store epoch and the
// big-endian record sequence number, so a truck's records read back in record order; fixes and events are
// JSON (a person can read them with bbolt's tools), the event with the time its copy was signed (the first
// copy committed wins: records are idempotent). The latest status is kept under the truck's "status" key.
//
// Commit is one fsync'd bbolt transaction (about 3,000 per second on an SSD, far fewer on an SD card):
// paho delivers messages one at a time and each must be on disk before its acknowledgement, so a telemetry
// batch of 60 fixes costs one transaction, an event one. A Commit whose records are all stored already (a
// duplicate, the normal case after a lost receipt) reads only and costs no fsync.
//
// Open waits at most Options.Timeout for bbolt's file lock (another process, e.g. a second `waybill
// watch`, holds it), then fails with a message naming the file: an Open without a timeout blocks forever.
//
// # Retention
//
// PruneFixes deletes fixes older than a cutoff (the office's [archive] keep_fixes), at most a batch per
// write transaction, found in read transactions that do not hold up Commit; each call goes on where the
// last stopped. Events and statuses are kept. The file is not compacted: its freed pages take new
// records, so it stops growing (fixes are about 150 bytes each as JSON). Reads by time range are not
// done yet.
package archive
