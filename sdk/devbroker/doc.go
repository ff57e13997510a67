// Package devbroker is an embedded development MQTT broker (mochi-mqtt/server v2) that enforces the
// fleet's rules like the generated Mosquitto configuration does, for the demo and for people without
// Mosquitto (`waybill broker run`).
//
// # Basics
//
// New(Config) loads the fleet CA, the broker's certificate and the CRL (FromPKI fills the paths from a PKI
// directory); Listen binds, Serve runs until its context ends and returns when every connection and
// goroutine has stopped; Run does both.
//
//   - Mutual TLS, 1.2 minimum, client certificates verified against the fleet CA with clientAuth usage,
//     the CRL honoured (re-read when the file changes) and a stale CRL refusing everyone, as Mosquitto does.
//   - The certificate CN is the identity: it replaces the CONNECT username; an empty client id becomes the
//     CN; a different client id is refused with CONNACK 133.
//   - brokerconf.ACL (orders, receipts, truck and dispatch status, telemetry, events, the CRL) decides
//     every subscription (SUBACK 135 for a filter outside the identity's rights, $share for anyone but
//     dispatch), every publish (MQTT v5 QoS 1/2: PUBACK/PUBREC 135; QoS 0 dropped) and every delivered
//     message; a will on a topic the client may not write is dropped. These are the rules Mosquitto's
//     dynamic security plugin enforces with brokerconf's configuration.
//   - Receive maximum, stored messages per client and packet size as in brokerconf (1000, 10000, 256 KiB).
//
// # Caveats
//
//   - Nothing is persisted: a restart loses sessions, queued and retained messages.
//   - Differences from Mosquitto: a foreign client id is refused rather than replaced; the CRL is re-read
//     without SIGHUP when the file changes, and a revoked client's session is closed at its next publish,
//     subscription or delivery (Mosquitto's administrator deletes it at once, see sdk/brokeradmin); there
//     is no administrator, so nobody publishes the fleet CRL on it; MQTT 3.1.1 clients are disconnected on a denied QoS 1 publish (Mosquitto acknowledges and
//     drops). Rights come from the certificate's role, so a new certificate needs no broker change.
//   - Refused TLS handshakes are logged at Info on Config.Logger, ACL denials of publishes at Info.
package devbroker
