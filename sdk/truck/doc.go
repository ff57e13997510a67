// Package truck is the truck side of the Waybill SDK: the uploader that drains the truck's durable store to
// the broker, acknowledging records only on PUBACK, and the record formats the agent stores fixes and
// delivery events in.
//
// # Basics
//
// The agent appends fixes (EncodeFix, lane store.Normal) and delivery events (EncodeEvent, lane
// store.Critical) to its store.Store. An Uploader takes batches from the store, signs them as telemetry and
// event messages, and submits them with QoS 1 over a transport.Conn one at a time in store order
// (transport.Conn.Submit returns once the PUBLISH is on the wire), with up to MaxInFlight waiting for their
// PUBACK at once; it acks the records in the store only after the broker's PUBACK. A failed publish
// releases its records, which go out again. After every new connection the newest fix goes out first,
// alone, so dispatch sees where the truck is now; the backlog follows oldest first, critical records before
// fixes, in batches of BacklogBatchFixes while it is long.
//
// # Caveats
//
//   - Delivery is at least once. A record re-sent after a crash or a lost PUBACK keeps its identity (the
//     store's epoch and the record's sequence number), so consumers drop the duplicate.
//   - Order within a lane holds on one connection. Two things break it, both measured in the fault tests:
//     the live fix sent ahead of the backlog after each (re)connect, and records re-sent after a failed
//     publish. Consumers that need strict order sort by record sequence.
package truck
