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
// throughput is at most window / round trip), max_queued_messages 10000 instead of 1000, persistence with
// a 10 s autosave, and sessions that expire after 30 days.
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
//   - Persistence is a snapshot every autosave interval: a kill -9 loses up to that much of the queue.
package brokerconf
