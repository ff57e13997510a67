// Package store is Waybill's durable, prioritised record queue and small keyed state, in one bbolt file.
//
// The truck's agent puts every GPS fix and delivery event here before anyone is told it was accepted, and
// the uploader removes records only after the broker acknowledged the message that carried them. The
// dispatch side uses the same store as its order outbox.
//
// # Basics
//
//	s, err := store.Open("/var/lib/waybill/queue.db", store.Options{MaxBytes: 32 << 20})
//	seqs, err := s.Append(ctx, store.Entry{Lane: store.Normal, Kind: kindFix, Data: fix})
//	recs, err := s.Peek(ctx, 100)      // critical first, oldest first; handed out until acked
//	err = s.Ack(ctx, recs[0].Seq)      // after the broker's PUBACK
//	s.Release(recs[1].Seq)             // publish failed: hand it out again, in order
//
// Records have a Lane: Critical (delivery events, order receipts) or Normal (fixes). Peek returns every
// available critical record before any normal one, and each lane oldest first (by Seq, which increases with
// append order and survives restarts). Each (Record.Epoch, Seq) identifies a record for good: a receiver that
// sees the same pair twice drops the duplicate.
//
// The keyed state (order book, counters, seen ids) lives in named buckets beside the queue. Update runs a
// transaction on both, so "store the order and queue its receipt" commits as one.
//
// # Durability contract
//
//   - Append, Ack, Quarantine, Put and Update return nil only after their transaction is committed and
//     fsync'd (bbolt writes the data pages, fsyncs, writes the meta page, fsyncs). After that, a power cut or
//     kill -9 cannot lose it: a record whose Append returned is handed out by Peek after any restart until it
//     is acked. If the disk lies about fsync (some cheap SD cards do), no software can keep this promise.
//   - A call that returns an error stored nothing of its own, with one exception: when its ctx ends while it
//     waits for the commit it returns ctx.Err(), and the commit may still happen. Callers treat that as
//     "maybe stored": duplicates are allowed, losses are not.
//   - Concurrent calls share one commit (group commit): the committer takes every waiting operation and
//     commits them in one transaction, so n concurrent appenders cost one fsync instead of n. A caller that
//     collects records itself passes them to one Append.
//   - Handing out is in memory: after a crash or reopen every unacked record is handed out again. Ack after
//     the broker's acknowledgement, not before.
//   - Records are thinned or dropped only to honour Options.MaxBytes, only in the Normal lane, oldest first,
//     and every one is counted in Stats (Thinned, Dropped), persistently.
//
// # Integrity
//
// bbolt checks its meta pages but not data pages. Every record and state value carries a CRC-32C over its key
// and contents; one that fails is moved to the quarantine with the reason and counted, never returned and
// never silently dropped. A file bbolt cannot open (garbage, zeroed, truncated) or a zero-length file is moved
// aside as PATH.corrupt-<UTC time>, logged at error level, and a fresh database takes its place. A file that
// opens but has damaged pages (bbolt would panic on them), or is truncated, is moved aside too, after what can
// still be read is copied into the fresh file: the records, from both ends of each lane, with their sequence
// numbers, the quarantine with its reasons, the state and the counters. No panic from a damaged page escapes
// the package: reads run with recover and SetPanicOnFault. Open waits at most Options.LockTimeout for the file
// lock and then fails with ErrLocked.
//
// A fresh file always gets a new random Epoch, salvaged or not: the old file had handed out sequence numbers
// that did not survive (acked, or on the damaged page), and reusing them under the old epoch would make
// receivers drop new records as duplicates. So each Record carries its origin epoch, Record.Epoch: the epoch
// of the store that first accepted it. A salvaged record keeps the old file's epoch (the first one, however
// often it is salvaged) and its seq, so a receiver that already has it drops the re-sent copy; new records get
// the new epoch and seqs above every seq the old file handed out, so seqs stay unique within the file. Senders
// stamp each record with its Record.Epoch, not with Store.Epoch. On disk, records of the store's own epoch
// keep value format 1; only carried-over records use format 2, which adds the 8-byte origin epoch.
//
// Origin tells the truck's status, and so dispatch, how the current epoch began: OriginCreated (no file: the
// first start, a deleted file, a swapped card), OriginRecreated (the file was unusable and nothing in it could
// be read: its data is lost), OriginSalvaged (damaged; what could be read was carried over, the rest is lost)
// or OriginExisting (a file from before origins were recorded). It is recorded in the file with its time when
// the epoch begins, so it is reported after restarts too, with Origin.Reopened set.
//
// # Flash wear and batching
//
// bbolt writes whole pages: every commit writes the changed leaf and branch pages, the root page, the
// freelist page and a meta page (4 KiB each) and fsyncs twice. So the bytes written per record fall almost
// inversely with the records per commit. Measured by BenchmarkFlashWear and BenchmarkDurableAppend
// (`go test -run '^$' -bench . -benchtime 1x ./store`; bytes from /proc/self/io write_bytes; 40-byte fix
// records; one run on this project's 2-core build machine):
//
//	policy                               disk bytes/record   appends/s
//	one bbolt transaction per record           33,063           3,430
//	this store, 1 fix per commit               32,999           2,680
//	this store, 5 fixes per commit              6,735          15,054
//	this store, 10 fixes per commit             3,467          29,169
//	this store, 30 fixes per commit             1,259          75,552   (26x less wear than a commit per fix)
//	this store, 60 fixes per commit               709         151,863
//	this store, 64 concurrent appenders         1,587          76,674   (22x the one-per-record rate)
//
// Recommended policy for the agent: fixes wait in memory until 30 are pending or the oldest has waited
// 30 s, then go in one Append. At 1 Hz that is 30 fixes per commit, about 4 MB written per hour instead of
// 119 MB, at the price of at most 30 s of fixes lost to a power cut; those fixes were never acknowledged to
// anyone, so the durability contract holds. Delivery events never wait: they are appended alone and reported
// to the driver only once on disk. Drain (Peek + Ack, BenchmarkDrain): about 220,000 records/s in batches of
// 100, 790,000 in batches of 1,000.
//
// # Caveats
//
//   - One process at a time: bbolt takes an exclusive lock on the file.
//   - MaxBytes bounds the records' bytes, not the file: bbolt reuses freed pages but does not shrink the file.
//   - Quarantined records count against MaxBytes; inspect them with Quarantined.
package store
