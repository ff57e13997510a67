// Package truck is the truck side of the Waybill SDK: the uploader that drains the truck's durable store to
// the broker, acknowledging records only on PUBACK, and the record formats the agent stores fixes and
// delivery events in.
//
// # Basics
//
// The agent appends fixes (EncodeFix, lane store.Normal) and delivery events (EncodeEvent, lane
// store.Critical) to its store.Store. An Uploader takes batches from the store, signs them as telemetry and
// event messages, publishes them with QoS 1 over a transport.Conn, keeping up to MaxInFlight publishes
// waiting for their PUBACK at once, and acks the records in the store only after the broker's PUBACK. A failed
// publish releases its records, which go out again. After every new connection the newest fix goes out first,
// alone, so dispatch sees where the truck is now; the backlog follows oldest first, critical records before
// fixes.
//
// # Caveats
//
//   - Delivery is at least once. A record re-sent after a crash or a lost PUBACK keeps its identity (the
//     store's epoch and the record's sequence number), so consumers drop the duplicate.
//   - Messages in flight at once may reach the broker in a different order than they were taken from the
//     store when a publish fails and is retried; consumers that need strict order sort by record sequence.
package truck
