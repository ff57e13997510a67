// Package truck is the truck side of the Waybill SDK: the uploader that drains the truck's durable store to
// the broker and keeps every record until dispatch's signed receipt names it, and the record formats the
// agent stores fixes and delivery events in.
//
// # Basics
//
// The agent appends fixes (EncodeFix, lane store.Normal) and delivery events (EncodeEvent, lane
// store.Critical) to its store.Store. An Uploader takes batches from the store, signs them as telemetry and
// event messages, and submits them with QoS 1 over a transport.Conn one at a time in store order
// (transport.Conn.Submit returns once the PUBLISH is on the wire), with up to MaxInFlight waiting for their
// PUBACK at once. A failed publish releases its records, which go out again. After every new connection the
// newest fix goes out first, alone, so dispatch sees where the truck is now; the backlog follows oldest
// first, critical records before fixes, in batches of BacklogBatchFixes while it is long.
//
// Each record is stamped with its own origin epoch (store.Record.Epoch) and its store sequence number: a
// record salvaged from a damaged store keeps the epoch of the file that first accepted it, so dispatch still
// knows it by the (truck, epoch, record seq) it may already hold. Decode events with DecodeEvent(data,
// r.Epoch, r.Seq), never with the store's current epoch.
//
// # Receipts: a record leaves the store only when dispatch has it
//
// The broker's PUBACK is one hop: the broker may still drop the message (queue limits while dispatch is
// slow or away, a SIGKILL, a foreign member of dispatch's share group). So a PUBACK only marks a record as
// sent. Dispatch commits what it receives to its durable record (dispatch.Config.Record) and sends a signed
// sdk.Receipt on <prefix>/trucks/<truck>/receipts naming the records by epoch and sequence ranges; the
// Client verifies it (a dispatch certificate of the fleet CA) and Uploader.HandleReceipt deletes the records
// it names from the store (store.Ack). Records it names that the uploader is not waiting for (sent before a
// restart, or named twice) are left alone: they are sent and receipted again, which costs bytes, never data.
//
//	store (fsync) -> PUBLISH -> PUBACK: sent, still stored -> dispatch commits (fsync) -> signed receipt
//	  -> the truck deletes the record
//
// A record still waits when no receipt comes:
//
//   - on a timer: a record sent and pubacked ReceiptTimeout ago (5 minutes) without its receipt is sent
//     again. Each timeout that no receipt interrupted doubles the wait (dispatch is probably down), up to
//     ReceiptTimeoutMax (30 minutes); any receipt resets it. The timeout must be well above dispatch's
//     receipt delay (dispatch.DefaultReceiptDelay, 30 s: dispatch gathers a truck's records into one
//     receipt).
//   - at once when a dispatch status turns online: the Client subscribes to every dispatch's retained,
//     signed status (<prefix>/dispatch/<name>/status); a live (not retained) online status means a dispatch
//     process (re)started, and Uploader.DispatchOnline sends again everything pubacked more than a second
//     ago and still unreceipted, which covers what the broker could not keep for it.
//   - after a restart: which records were sent is kept in memory only, so every record still in the store
//     is handed out and sent again; dispatch commits the duplicate (a no-op) and receipts it.
//
// MaxUnreceipted (20,000) bounds the records sent and waiting for their receipt: at the bound the uploader
// sends nothing new until receipts arrive or a timeout sends the oldest again. It bounds the uploader's
// memory (about 50 bytes a record) and what the broker must queue for an absent dispatch. The records
// themselves stay in the store, whose MaxBytes still applies (the oldest fixes are thinned, then dropped).
// UploaderStats (Unreceipted, Receipts, Receipted, Resent) and the agent's status report all of this.
//
// UploaderConfig.AckOnPuback restores the old behaviour, deleting records at the broker's PUBACK: only for a
// back-end that sends no receipts (a dispatch.Client without a Record sends none), and for tests that are not
// about delivery. Then whatever the broker loses after its PUBACK is gone.
//
// # Envelope sequence numbers
//
// Every signed message carries a sequence number per sender and message type, and receivers keep a replay
// window (sdk.DefaultReplayWindow, 1,024 numbers) that refuses numbers far below the highest seen. A truck
// that restarted its numbers would be refused, so StoreSequencer (the Client's) keeps them increasing across
// restarts, store losses and salvages: it reserves blocks of 1,000 numbers durably both in the store (bucket
// "sdk-sequencer") and in a side file next to it, the store's path with ".seq" appended (queue.db.seq),
// rewritten whole (temporary file, fsync, rename); at start the higher of the two wins, so a store moved
// aside as corrupt, salvaged without that page, or deleted does not restart the numbers. The first number of
// each type since start is also at least the clock in microseconds (when the clock is plausible: after
// 2024), so a unit whose store and side file are both gone (an SD card swapped) still moves forward, as
// long as its clock (GPS time on units without a real-time clock) is right. A restart skips at most one
// block.
//
// # The fleet CRL
//
// The Client subscribes to the fleet CRL (sdk.Topics.CRL, retained, published by the broker administrator
// with every revocation) and applies each list newer than the one in use to its verifier at once
// (sdk.Verifier.UpdateCRL): orders, receipts and dispatch statuses signed by a certificate it revokes are
// refused from that moment, without a restart. An older or equal list is ignored, a list that is not the
// fleet CA's is logged and counted (CRLStats), never fatal. The newest list is written to CRLCacheFile, so
// a restart keeps refusing what it revoked even before the broker sends the list again (or when the
// broker's retained copy is older); at start the newer of Transport.CRLFile and the cache applies.
// Orders already in the book when their signer is revoked stay there.
//
// # The order book
//
// Closed orders (delivered, failed, cancelled) stay ClientConfig.KeepClosed (30 days) after they closed and
// until a day after their expiry; then Client.Run removes them, 500 per transaction. A revision re-sent after
// that is refused as expired, so a pruned order does not come back. Active orders stay however old.
// Book.Active (per fix), Get, Closed (pages) and Counts read two indexes written with each entry, so their
// cost does not grow with the history; Orders reads the whole book.
//
// # Connection
//
// The client sends a Receive Maximum of DefaultReceiveMaximum (16): what reaches a truck is rare, and the
// MQTT default made paho allocate a 65,535-message channel per connection. Reconnection after a drop waits
// a random time over transport.Config.ReconnectWindow (the agent's default is 30 s) so that a fleet does not
// come back to a restarted broker in the same second.
//
// # Caveats
//
//   - Delivery is at least once. A record re-sent after a crash, a lost PUBACK or a lost receipt keeps its
//     identity (its origin epoch and its sequence number), so consumers drop the duplicate.
//   - Without a receipting dispatch (no dispatch.Client with a Record on the broker) nothing leaves the
//     store: it fills up to its MaxBytes, and the uploader re-sends after each timeout. Set AckOnPuback for
//     such a back-end.
//   - Order within a lane holds on one connection. Three things break it, all measured in the tests: the
//     live fix sent ahead of the backlog after each (re)connect, records re-sent after a failed publish, and
//     records re-sent for want of a receipt. Consumers that need strict order sort by record sequence.
package truck
