// Package sdk is Waybill's fleet messaging library, for both sides: trucks and dispatch. It defines
// design.md's topics and signed messages; the MQTT connection lives in sdk/transport, the PKI rules in
// sdk/pki, and the truck and dispatch clients are built from these parts.
//
// # Basics
//
// Topics (Topics) sit under a configurable prefix, default "fleet":
//
//	fleet/trucks/<truck>/telemetry         truck -> dispatch   Telemetry: batches of fixes
//	fleet/trucks/<truck>/events            truck -> dispatch   Event: received, arrived, delivered, failed, problem
//	fleet/trucks/<truck>/status            truck -> dispatch   Status: retained online/offline and health
//	fleet/trucks/<truck>/orders/<order>    dispatch -> truck   Order: revisions; a cancellation is a revision
//	fleet/trucks/<truck>/receipts          dispatch -> truck   Receipt: records dispatch has committed
//	fleet/dispatch/<name>/status           dispatch -> trucks  Status: a dispatch process's retained online/offline
//
// A truck keeps every record until a Receipt names it: the broker's PUBACK is one hop, the receipt is the
// end of the road (dispatch has the record in its own durable store). Receipts are cumulative sets of
// record sequence numbers per store epoch, idempotent, and cheap to lose: an unreceipted record is sent
// again and dispatch receipts the duplicate.
//
// Every message is an Envelope, a CBOR array
//
//	[version, type, sender, id, seq, created, alg, key id, cert, body, signature]
//
// signed by the sender's certificate key: ECDSA P-256 (64-byte r||s, low-S) or Ed25519. The signature covers
// a domain-separation prefix and the first ten fields exactly as sent. Orders, events and status carry the
// signer's certificate so receivers can learn it; telemetry carries only the 8-byte key id (pki.KeyID).
//
// A Signer (NewSigner, NewSignerTLS) signs with one identity; its Sequencer numbers each message type.
// A Verifier (NewVerifier) checks, in order: size, topic, structure, the signer's certificate (chain to the
// fleet CA, clientAuth, validity at the receiver's clock, CRL), the signature, the role (orders, receipts
// and dispatch status only from dispatch, a dispatch status only from the identity its topic names;
// telemetry, events and status only from the truck the topic names), age and clock skew, the body
// (an order must name the topic's truck and order and not be expired), and last replays (ReplayState:
// a sliding window of sequence numbers and the recent message ids per sender and type; offline statuses,
// among them the MQTT will signed at connect, have a window of their own). Every refusal is a
// *RejectError with a Reason, counted in Stats; a message delivered again is reported as ReasonDuplicate
// together with the message, so the receiver acknowledges it without applying it twice.
//
// The fleet CRL travels as a retained message (DER) on Topics.CRL, published by the broker administrator.
// Verifier.UpdateCRL applies one only if a fleet CA signed it and it is newer than the list in use (a
// higher CRL Number), so an old retained copy never brings a revoked certificate back; from then on
// messages signed by a certificate it lists are refused (ReasonRevoked), also by Verify calls already
// running. The truck client (sdk/truck) and the dispatch consumer (sdk/dispatch) subscribe to it; CRLInfo
// says which list is in use, or that there is none.
//
// Identities for duplicate detection: an event's message id is its (store epoch, record seq); an order's is
// derived from (order id, revision); fixes in telemetry are identified by (truck, epoch, record seq), because
// the uploader cuts batches at upload time and may cut them differently after a crash. OrderHash, the SHA-256
// of an order's body bytes as signed, ties an event to the exact revision it answers.
//
// Telemetry uses a column codec (see telemetry.go): 60 fixes of 1 Hz city driving take about 6 bytes each
// in the body and about 9.3 bytes each on the wire, TLS record and MQTT PUBLISH included.
//
// # Caveats
//
//   - Sequence numbers must never go backwards for an identity. The default MemorySequencer starts from the
//     clock in microseconds, which survives restarts only while the clock does: a truck without a real-time
//     clock must persist its Sequencer. Two processes must not sign with the same identity at once.
//   - MemoryReplay forgets at restart, and a dispatch fleet split across processes (shared subscriptions)
//     has one replay state per process: consumers still drop duplicates by id (events, orders) and by
//     (truck, epoch, record seq) (fixes), which is the guarantee; the replay state is the first filter.
//   - A certificate is checked at the receiver's current time, not the message's: messages signed with a
//     certificate that has since expired are refused. Renew certificates before they expire.
//   - Verify does the crypto on the caller's goroutine: about 80 µs per ECDSA message on one x86 core, far
//     more on a small ARM board; bound what you feed it.
package sdk
