// Package brokerconf generates a hardened Mosquitto configuration and ACL for the fleet from its PKI, and
// holds the fleet's topic access rules as a Go value (ACL) that the development broker enforces too.
//
// # Basics
//
// The rules (ACL): a truck writes its own telemetry, events and status and reads its own orders and
// receipts; dispatch writes orders and receipts for any truck and its own P/dispatch/NAME/status, and reads
// the whole fleet; everybody reads P/dispatch/+/status. Nobody else writes under P/dispatch/.
//
// Write(pki, OUT, Config{...}) produces a directory that is everything the broker host needs:
//
//	OUT/mosquitto.conf    mutual TLS listener, ACL, limits, persistence (see Render)
//	OUT/acl               the topic rules (ACL.Mosquitto)
//	OUT/certs/            ca.crt, crl.pem, broker.crt, broker.key (0600): copies, never the CA key
//	OUT/data/             persistence_location
//
// Start Mosquitto with `mosquitto -c OUT/mosquitto.conf`. Mosquitto started as root drops to the user
// "mosquitto" unless Config.User says otherwise: that user must read certs/ and write data/
// (`chown -R mosquitto: OUT`).
//
// The configuration: require_certificate, use_identity_as_username and use_username_as_clientid (the
// certificate CN is the username and the client id, so a client cannot take over another's session),
// allow_anonymous false, tls_version tlsv1.2 (the minimum) with ECDHE-ECDSA AEAD ciphers, the CRL,
// max_packet_size, max_inflight_messages 1000 instead of 20 (it is the receive maximum clients get, and
// throughput is at most window / round trip), queue limits sized for the fleet (below), persistence with
// a 10 s autosave, and sessions that expire after 30 days.
//
// # Queue sizing
//
// Mosquitto's max_queued_messages (default 1000) bounds the queue of each client: messages beyond the
// in-flight window wait there while the client is slow or away. The client that needs it most is
// dispatch: while it is down its persistent session collects everything every truck sends. So
//
//	max_queued_messages = fleet size x messages per truck-hour x tolerated dispatch outage (hours)
//
// with Config.FleetSize (zero: 1000 trucks, `--fleet-size`), Config.DispatchOutage (zero: 1 h,
// `--dispatch-outage`) and Config.TruckMessagesPerHour (zero: 130, a telemetry batch every 30 s while
// driving plus about 10 events and status changes), rounded up and kept between 10,000 (the former fixed
// value) and 1,000,000. Defaults: 1000 x 130 x 1 = 130,000 messages. max_queued_bytes is that count x
// 1 KiB of payload (a signed 30-60 fix batch is 500-850 bytes), so larger messages than planned cannot
// take more memory. Config.MaxQueued and MaxQueuedBytes (`--max-queued`) override the computation.
//
// Memory: Mosquitto keeps queues in RAM. Measured with 2.0.11 here: 100,000 queued QoS 1 messages of
// 500 bytes for one offline session added 86 MB of resident memory, about 860 bytes a message. The
// defaults thus cost about 112 MB per absent dispatch session when full, the ceiling about 860 MB; the
// payload is stored once for all sessions, the rest is per session. Persistence snapshots write every
// queue whole each autosave_interval, so size the data disk (and its write rate) for the same figure.
// Messages beyond the limits are dropped with a NOTICE; the trucks keep every record in their stores
// until dispatch's signed receipt, so an outage longer than planned costs re-sends, not data. The
// generated mosquitto.conf repeats the computation and the figures in its comments.
//
// # Shared subscriptions
//
// Any authenticated client may subscribe to $share/GROUP/P/trucks/+/events: Mosquitto grants it and
// drops, at delivery, the messages its round robin hands to a member without read access, so a truck
// certificate in dispatch's share group makes dispatch miss its share of the proofs (it reads nothing;
// without dispatch's receipt the truck re-sends, so nothing is lost, but delivery is delayed). Measured
// with Mosquitto 2.0.11 here, each with a truck and a dispatch client subscribing to
// $share/g/fleet/trucks/+/events, their own orders and fleet/trucks/+/events:
//
//   - The file ACL never refuses a subscription: with `pattern deny $share/#` before or after the other
//     rules, and even with `pattern deny #` (which did refuse the truck's publishes with 135), every SUBACK
//     was 1. Mosquitto 2.0's acl_file checks only publishes and deliveries.
//   - The dynamic security plugin (mosquitto_dynamic_security.so, subscribe default-deny, dispatch given
//     subscribePattern $share/#) together with our acl_file: every SUBACK still 1, also for a truck listed
//     in the plugin with a default-deny role; the file ACL's grant wins.
//   - The plugin without acl_file: a client missing from its JSON is refused everything (SUBACK and
//     PUBACK 135, even its own orders), and `%u` in its ACL topics does not match (a truck role with
//     subscribePattern fleet/trucks/%u/orders/# got 135 for its own orders). With every identity listed
//     and literal ACLs per truck (role truck-a: subscribe, receive fleet/trucks/truck-a/orders/#, send its
//     own topics) it works: the truck's $share/g/fleet/trucks/+/events got SUBACK 135, its own orders 1,
//     dispatch's $share 1, and messages flowed.
//
// So the only mechanism is replacing the file ACL by the plugin with one client and role per truck. We did
// not adopt it here: the plugin reads its JSON only at start, so every truck issued or revoked would need
// a broker restart (a reconnect storm for the whole fleet) or an admin client driving $CONTROL
// (mosquitto_ctrl), and the plugin rewrites that JSON itself. Until then dispatch should not rely on
// share groups being closed: end-to-end receipts make a stolen message a delay, not a loss.
//
// # Caveats
//
//   - Mosquitto learns roles only from the ACL file's `user` blocks, one per dispatch identity of the PKI
//     index. After issuing or revoking a dispatch certificate, run `waybill broker config` again and send
//     Mosquitto SIGHUP. Trucks need nothing: `pattern` lines with %u cover every truck. The same applies to
//     a revocation of any kind, for the CRL copy in certs/.
//   - Mosquitto grants every subscription and checks read access per delivered message (so a truck that
//     subscribes to another truck's orders gets SUBACK 0 and no messages). The development broker does the
//     same for wildcard filters; a forbidden subscription to a plain topic gets SUBACK 135 there.
//   - A will message on a topic the client may not write is accepted at connect and dropped when it
//     fires; a truck's will on its own status topic is allowed (retained is fine), and so is a dispatch
//     process's will on its own P/dispatch/NAME/status.
//   - Mosquitto logs "Warning: ACL pattern 'P/dispatch/+/status' does not contain '%c' or '%u'" at start:
//     that pattern is meant for everybody (a `topic` line outside a user block would apply only to
//     anonymous clients, and we have none).
//   - Persistence is a snapshot every autosave interval: a kill -9 loses up to that much of the queue.
package brokerconf
