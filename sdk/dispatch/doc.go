// Package dispatch is the dispatch side of the Waybill SDK: a durable outbox that sends signed orders until
// each truck confirms them, and a consumer that verifies the fleet's telemetry, events and status, drops
// duplicates and hands over typed Go values. Client ties both to one MQTT connection and, with a Record,
// commits what trucks send to dispatch's own durable record and receipts it to them.
//
// # Basics
//
//	ob, err := dispatch.NewOutbox(dispatch.OutboxConfig{Path: "dispatch/outbox.db", Certificate: cert, Key: key})
//	e, err := ob.Create(ctx, sdk.Order{ID: "o-1001", Truck: "truck-17", Expires: time.Now().Add(48 * time.Hour),
//		Recipient: "A. Jones", Address: "1 Quay St", Lat: 51.5, Lon: -0.1, RadiusM: 80})
//	// e.State == dispatch.StatePending: on disk (fsync'd), not yet confirmed
//	rec, err := archive.Open("dispatch/archive.db", archive.Options{}) // sdk/dispatch/archive
//	c, err := dispatch.New(dispatch.Config{Transport: transport.Config{Brokers: ..., CertFile: ..., KeyFile: ...,
//		CAFile: ...}, CA: fleetCA, Certificates: trucks, Outbox: ob, Record: rec, Handle: show})
//	err = c.Run(ctx) // consumes, commits and receipts, confirms orders from received events, re-sends orders
//
// # From the driver's tap to dispatch's disk
//
// A fix or delivery event is lost nowhere between the truck and dispatch's own record, Config.Record (the
// subpackage archive is the embedded default):
//
//	truck store (fsync) -> PUBLISH -> broker -> dispatch commits it to its Record (fsync)
//	  -> PUBACK to the broker -> signed Receipt on <prefix>/trucks/<truck>/receipts -> the truck deletes it
//
// The truck keeps every record, identified by (truck, store epoch, record seq), until a receipt names it;
// the broker's PUBACK only marks it as sent. The consumer commits every verified update to the Record before
// Handle and before the PUBLISH is acknowledged (transport acknowledges only when the handler returns nil);
// a failing Commit leaves the message unacknowledged and the broker delivers it again. Duplicates are
// committed again (a no-op) and receipted again: that is what heals a lost receipt. Events are also applied
// to the outbox before the acknowledgement (one transaction per event, see Client.handle), so a crash
// after the acknowledgement loses no delivered or failed state.
//
// Receipts are coalesced per truck and store epoch for Config.ReceiptDelay (30 s), sent sooner when a
// truck has many ranges pending, at most sdk.MaxReceiptRanges per message, from a goroutine of the Client
// (never paho's delivery goroutine). The first receipt to a truck since the process started, and the first
// after that truck's status turns online, carries dispatch's certificate; later ones leave it out.
// With a Record the Client also keeps a retained, signed status on <prefix>/dispatch/<name>/status: online
// after every connect, and a signed offline will; trucks re-send unreceipted records at once when it turns
// online, and otherwise after their timeout. Without a Record the client sends no receipts and no status:
// a passive observer must never make trucks delete what the office has not stored.
//
// What happens when things go wrong; in each case the truck still holds the record and re-sends it:
//
//   - dispatch down: its session is persistent (use CleanStart false and the default SessionExpiry), so the
//     broker queues for it, up to max_queued_messages; what the broker drops or loses is re-sent by the
//     trucks after their timeout, and at once when dispatch's status turns online again.
//   - dispatch slow: the broker's per-client limits (max_inflight_messages, max_queued_messages) drop
//     messages with one NOTICE line; nothing dropped was receipted, so the trucks re-send it.
//   - a foreign certificate joins the share group: the round robin hands it messages it may not read, which
//     the broker drops, or, if it may read them, it is not our Record: no receipt from us, so the trucks
//     re-send until one of our processes commits and receipts them.
//   - the broker is SIGKILLed: its queue (a periodic snapshot) and in-flight messages may be lost; none were
//     receipted, so the trucks re-send them after reconnecting.
//   - dispatch crashes between Commit and the acknowledgement: the broker delivers again; Commit is
//     idempotent and the duplicate is receipted.
//   - a receipt is lost: the truck re-sends; dispatch commits the duplicate (a no-op) and receipts it.
//
// # Why the outbox is the guarantee
//
// An order is on its way only when the truck says so: the truck verifies an order, stores it, and only then
// acknowledges the PUBLISH and queues a signed received event carrying the order id, revision and OrderHash.
// Everything between dispatch and that event can lose the order. Mosquitto keeps at most
// max_queued_messages per offline client (1000 by default; our brokerconf sets 10000) and drops the rest;
// its persistence is a periodic snapshot, so after a kill -9 an acknowledged QoS 1 message to an offline
// client was lost in our own test (design.md); a truck whose session expired, or that starts clean, has no
// queue at all. So every revision is written to the outbox (a store, fsync'd) before Create, Revise or Cancel
// return, and the re-sender publishes each revision that has no matching received event yet:
//
//   - at once when it is new;
//   - then on a per-order timer, BackoffMin (30 s) doubling to BackoffMax (30 min), each wait random in
//     [d/2, d] so a fleet's orders do not move in lock-step;
//   - when the truck's retained status turns online (Kick), after OnlineGrace (15 s): the broker delivers
//     its queue first, and most confirmations arrive within the grace; what is still unconfirmed then is
//     sent again, which covers a broker that lost its queue;
//   - when a re-sender starts, for orders an earlier run sent more than BackoffMin ago;
//   - at once when a truck's store is new (next section).
//
// # A truck that lost its store
//
// The truck's order book lives in its store (queue.db): a swapped SD card, a file moved aside as unusable or
// a salvage (damaged pages) loses orders the truck had confirmed. Its online status carries its store epoch
// and how it began (sdk.Health StoreEpoch, StoreOrigin, StoreSince). Client passes every online status to
// Outbox.NoteStore, which keeps the last epoch per truck in the outbox's store (bucket dispatch-epochs;
// the first one seen is only recorded). Another epoch means a new store: in one transaction the epoch is
// recorded and every open revision of the truck (pending, received, arrived, problem; not delivered, failed,
// cancelled, conflicting or expired) is marked unconfirmed, due at once (no backoff, no grace) and Awaiting
// the new epoch, whose received event alone confirms it (a salvaged store re-sends its old records, the old
// store's received events among them). The same epoch seen again does nothing, in this or another process
// sharing the outbox. Handle gets that status with Status.NewStore (a StoreChange: epochs, origin, how
// many orders were reopened); waybill watch prints it. A Record commits the status without it.
//
// Each send is signed anew (new envelope time and sequence number, same message id and body, so the same
// OrderHash). A received event confirms a revision when its order id and revision match and its OrderHash
// is the revision's; a received event for a newer revision than the outbox holds also stops the re-sending
// (the truck keeps the newest). Orders that expire unconfirmed are marked expired and no longer sent.
// Duplicates are expected and harmless: the truck applies an order revision once and acknowledges repeats.
//
// A cancellation cannot undo a delivery. Cancel refuses (ErrClosed, nothing stored) an order the outbox
// knows is delivered or failed. One stored before that was known reaches a truck that already closed the
// order, which answers with a conflict: the entry keeps the delivered or failed state (conflict only until
// the driver's event arrives) and sets CancelRefused, so a list says "delivered (cancel refused)".
//
// Orders' envelope sequence numbers come from the outbox's store: each round reserves a block of at most
// MaxBatch (500) numbers in the same store, the first one starting at the clock in microseconds. Trucks
// keep a replay window of 1024 numbers per sender, so numbers must not jump around between processes
// signing as the same identity: only one process signs with a dispatch identity at a time (the one running
// the re-sender of its outbox).
//
// # Sharing an outbox between processes
//
// With OutboxConfig.Path the store is opened for each operation and closed right after (bbolt locks the
// file exclusively; others wait up to StoreOptions.LockTimeout; a PATH.lock file is locked around each open,
// because the store moves a zero-length file aside as damaged and a file another process is just creating is
// zero-length for a moment), so a command-line tool can create orders
// while a long-running process sends them: the re-sender looks at the store every Poll (1 s). Run only
// one re-sender per outbox; the waybill command uses a lock file for that. With OutboxConfig.Store one
// process owns the outbox.
//
// # The consumer
//
// Consumer.HandleMessage verifies every message with an sdk.Verifier (fleet CA, optionally every issued
// certificate so telemetry, which carries only a key id, verifies from its first message) and hands over
// Updates: the new fixes of a telemetry message (Fix: truck, epoch, record seq, sdk.Fix), an Event, a Status
// (with Changed when the online/offline state differs from the last known) or a Rejection with its reason;
// rejections are counted by reason in Stats. Rejected and duplicate messages are acknowledged; only a
// failing Commit or Handle leaves a message unacknowledged.
//
// Duplicates are dropped by identity, not by message: a fix by (truck, epoch, record seq), an event by
// (truck, epoch, record seq), which is its message id. Memory is bounded: per truck the consumer keeps the
// MaxEpochs (4) most recent store epochs, and per epoch the delivered sequence numbers as at most
// MaxRanges (64) runs [a, b]. A truck sends its newest fix first and then the backlog oldest first, a few
// batches in flight, so the delivered numbers form a few growing runs: a high-water mark with a small
// window, generalised to numbers that arrive below it. Past MaxRanges the two lowest runs are merged, which
// marks the gap between them as seen; at 64 runs of 16 bytes that is about 1 KB per truck and epoch, twice
// (fixes and events).
//
// The consumer also takes the fleet CRL, which the broker administrator publishes retained on
// Topics.CRL (Subscriptions includes it, never shared): Verifier.UpdateCRL applies a newer list at once, so
// a revoked truck's messages are refused (sdk.ReasonRevoked) from the moment it arrives, without a restart;
// an older or equal list is ignored, and one the fleet CA did not sign is logged and counted
// (Stats.CRLsRefused). Handle gets an Update with CRL set for each list applied.
//
// Statuses are not de-duplicated by identity: each verified status message is handed over once, the retained
// copy delivered again after a reconnect is dropped by the verifier as a duplicate.
//
// Receipts need the Record, not the duplicate memory: the memory is lossy (merged runs) and forgets at
// restart, so duplicates are committed again before they are receipted; a Record makes that cheap (the
// archive reads first and writes, and fsyncs, nothing for records it holds).
//
// # Scaling out
//
// Config.ShareGroup subscribes telemetry and events as $share/<group>/..., so the processes of a group split
// the fleet's messages (MQTT v5 shared subscriptions; nothing assumes one broker process). Each process
// receipts what it committed; processes of a group must commit to one Record (or records the office merges). Status is never
// shared: every process must know who is online to Kick its outbox. Each event reaches one process of the
// group only, so processes that split events must share their outbox (one Path on one host) or each run an
// outbox-owning process without ShareGroup.
//
// # Caveats
//
//   - Events are applied to the outbox one transaction per event, before the acknowledgement: about 1,000
//     to 2,600 events/s (see Client.handle); events are a few per order, so that is far above need.
//   - The receipt for a record goes out only after Commit, the outbox and Handle succeeded. A record that
//     the bounded duplicate memory wrongly takes for a duplicate (see below) is still committed, applied to
//     the outbox (Apply is idempotent) and receipted, but not handed to Handle.
//   - Entries are never pruned: a dispatch that creates many orders per day should archive old ones.
//   - The verifier's replay state is in memory; after a restart the consumer hands over fixes and events the
//     broker delivers again (its duplicate memory is in memory too): consumers that persist must be
//     idempotent by (truck, epoch, record seq), as Record.Commit is.
//   - Receipts are signed with a sdk.MemorySequencer (clock-based): processes taking turns with one identity
//     (waybill watch and waybill order) stay in order as long as the clock moves forward.
//   - A dispatch identity must not be connected from two processes at once: with the fleet's Mosquitto
//     configuration the client id is the certificate's name, and the second connection takes over the first.
package dispatch
