// Package transport is the fleet's MQTT v5 connection over mutual TLS: one Conn, kept up by Run, built on
// github.com/eclipse/paho.golang v0.23.0 (autopaho manages reconnection). It knows nothing about message
// formats; package sdk puts signed messages on it and the durable store behind it.
//
// # Basics
//
//	c, err := transport.New(transport.Config{
//		Brokers:  []string{"mqtts://broker.fleet.example:8883", "mqtts://standby.fleet.example:8883"},
//		ClientID: "truck-17", // = the certificate's Common Name
//		CertFile: "/var/lib/waybill/truck.pem", KeyFile: "/var/lib/waybill/truck.key",
//		CAFile:   "/var/lib/waybill/fleet-ca.pem",
//		Will:     &transport.Will{Topic: "fleet/trucks/truck-17/status", Payload: offline, Retain: true},
//		Subscriptions: []transport.Subscription{{Topic: "fleet/trucks/truck-17/orders/#", QoS: 1}},
//		OnPublish: storeOrder, // acknowledged only if it returns nil
//		OnConnect: publishOnline,
//	})
//	go c.Run(ctx)               // connects, reconnects, disconnects cleanly when ctx ends
//	err = c.Wait(ctx)           // link up
//	err = c.Publish(ctx, topic, payload, transport.PublishOptions{QoS: 1}) // returns after PUBACK
//
// New never touches the network, so a unit that boots in a dead zone starts normally; Run connects and keeps
// trying. States delivers every change of the link (connected with the broker's session and window,
// disconnected with the reason: a reset, a keep-alive timeout, a DISCONNECT reason code, a TLS alert from the
// broker such as "expired certificate"), Connected and Current read it, Wait blocks until the link is up.
// Stats counts the bytes at the TCP socket.
//
// # Publishing
//
// Publish with QoS 1 returns after the broker's PUBACK, and any reason code >= 128 is a *PublishError naming
// it (Mosquitto answers 135 "not authorized" when its ACL refuses a topic): never a silent success.
// A message larger than the broker's announced maximum packet size is refused locally with ErrTooLarge.
//
// When the link is down Publish returns ErrNotConnected at once rather than blocking: the caller's durable
// queue is the offline buffer, and the caller decides when to retry (Wait). Once sent, a publish survives a
// drop: paho keeps it in the session state, sends it again (DUP) on the next connection and the PUBACK
// answers the original call. If the broker answers that reconnect without our session (restarted without
// persistence, session expired), paho would silently forget every unacknowledged publish; Conn fails those
// calls with ErrSessionLost so they are published again. Receivers must drop duplicates by message id.
//
// Many Publish calls may run at once, and must, on a slow link: throughput is at most the window divided by
// the round trip. paho v0.23.0 enforces the broker's receive maximum (Mosquitto's max_inflight_messages,
// default 20; ConnectInfo.ReceiveMaximum) with a send quota: up to that many publishes are in flight and the
// others wait for a slot, in order. Through a 100 ms round trip one publisher gets about 10 messages/s and 64
// publishers fill the window. PublishViaQueue is deliberately not used: it drops a message from its queue once
// written, not at PUBACK, and its memory session loses it on any session reset. paho's own per-request
// timeout is disabled for publishes (it also covered the wait for a window slot); bound Publish with ctx.
//
// # Receiving
//
// Config.OnPublish is installed as paho's ClientConfig.OnPublishReceived, so it survives reconnects (handlers
// added with AddOnPublishReceived are lost on reconnect, paho #326), with manual acknowledgement: the PUBLISH
// is acknowledged only when OnPublish returns nil, after the handler has made the message durable. paho sends
// acknowledgements in the order the messages arrived (every 50 ms), and drops pending ones when the
// connection ends (#327, #160); the broker then redelivers every unacknowledged QoS 1 message on the next
// connection, because the session is persistent. A handler error therefore means: not acknowledged, and Conn
// closes the connection so the broker redelivers it (an unacknowledged message would otherwise hold back the
// acknowledgements of all later ones until the next drop); repeated failures back off exponentially. Handlers
// must be idempotent (orders by id and revision): a message can be delivered again after it was handled.
//
// # Session and reconnection
//
// MQTT v5 with a persistent session: SessionExpiry (default 7 days) tells the broker to keep our
// subscriptions and queue QoS 1 messages while we are offline, and CleanStart is false on every connection,
// also the first after a restart (unless Config.CleanStart), so orders queued while the agent was stopped are
// delivered. The broker's queue is a help, not the guarantee: Mosquitto bounds it and loses it on a crash.
// Subscriptions are made again after every connection anyway, in case the broker lost the session. A
// refused subscription is reported in ConnectInfo.SubscribeErr; a refused Required one ends the connection,
// and the next attempt backs off as after a failed round (a revoked identity let in by a broker that has not
// reloaded its CRL is refused every topic: it must not look connected).
//
// Brokers are tried in order on every attempt, so the first is preferred and the next are fall-backs. Between
// failed rounds the wait grows exponentially from BackoffMin to BackoffMax, each wait random in [d/2, d]; after
// a drop the first attempt waits a random time up to BackoffMin so a fleet does not reconnect in lock-step
// after a broker restart.
//
// Keep-alive defaults to 60 s. Cellular carriers put trucks behind carrier-grade NAT whose idle timeouts for
// TCP are often a few minutes and sometimes shorter; a mapping that expires silently turns the connection
// into a black hole that neither side notices until it writes. A PINGREQ every minute of idleness keeps the
// mapping alive at a cost of about 70 bytes each way per idle minute (TLS record and TCP/IP headers),
// and paho declares the link dead when a PINGRESP does not come back within another keep-alive interval, so
// a dead link is noticed within about two minutes, or at once on a reset.
//
// With a Will, the broker publishes it when the connection ends without a DISCONNECT; on a clean stop (Run's
// context ends) Conn sends DISCONNECT with reason 0x04 so the will is published too: the truck is offline
// either way.
//
// # TLS
//
// TLS 1.2 at least; crypto/tls negotiates 1.3 when the broker offers it. The certificate and key (or
// GetCertificate), the CA file and the CRL are read again before every handshake, so files renewed on disk
// are used at the next reconnect without a restart. TLS sessions are resumed (a shorter handshake on a slow
// link), with the session cache partitioned by client certificate: a resumed session does not send the
// client certificate, so after a renewal the broker would otherwise go on seeing the old one. Config.Clock
// replaces the system clock for certificate checks: a unit without a real-time clock boots in 1970 and would
// refuse every certificate; the agent passes GPS time. Key exchange is limited to X25519 and P-256 (Go also
// offers a post-quantum hybrid share, about 1.2 KB more per handshake, which Mosquitto does not use).
// Username/Password are for dispatch tools against a Mosquitto password_file and are refused unless every
// broker URL is TLS. Plaintext URLs are refused unless AllowPlaintext is set, for local development.
//
// # Bytes on the wire
//
// paho writes each MQTT packet in several parts (fixed header, topic and properties, payload); over TLS each
// write is its own record with 22 bytes of TLS 1.3 overhead. Conn's connection wrapper follows the MQTT
// framing of what paho writes and passes each packet to TLS in one write, at the end of the packet, so nothing
// waits for a timer: a 56-byte QoS 1 publish on fleet/trucks/truck-1/telemetry costs 115 bytes at the socket
// instead of 159 (-28 %). Stats.WireBytesWritten/WireBytesRead count at the TCP socket, under TLS, handshakes
// included.
//
// # Caveats
//
//   - paho's session state is in memory: a publish in flight when the process dies is the caller's to send
//     again (from its durable queue).
//   - A publish can race a reconnect in paho: one that picked the old connection just before it dropped may
//     wait until the next reconnect or its context; bound Publish with ctx.
//   - paho's send quota is a uint16 that retransmissions after a reconnect may push below zero (wrapping):
//     after a fail-over to a broker with a smaller window than the messages in flight, flow control is lost
//     for that connection. It also prints a line to stdout when a cancelled publish wins a slot.
//   - Mosquitto 2.0.11 closes a taken-over session without a DISCONNECT packet, and grants subscriptions its
//     ACL denies (it filters delivery instead), so ConnectInfo.SubscribeErr stays nil for those.
//   - A handler that fails permanently (disk full) makes Conn reconnect repeatedly, with backoff.
package transport
