// Package brokerconf generates a hardened Mosquitto configuration and its access rules for the fleet
// from its PKI, and holds the fleet's topic access rules as a Go value (ACL) that the development broker
// enforces too.
//
// # Basics
//
// The rules (ACL): a truck writes its own telemetry, events and status and reads its own orders and
// receipts; dispatch writes orders and receipts for any truck and its own P/dispatch/NAME/status, reads
// the whole fleet and alone may join share groups; everybody reads P/dispatch/+/status and the fleet CRL
// on P/crl, which only the administrator (pki.AdminName) writes. Nobody else writes under P/dispatch/.
//
// Write(pki, OUT, Config{...}) produces a directory that is everything the broker host needs:
//
//	OUT/mosquitto.conf                   mutual TLS listener, access plugin, limits, persistence (Render)
//	OUT/access/dynamic-security.json     one client and one role per identity (ACL.Dynsec)
//	OUT/certs/                           ca.crt, crl.pem, broker.crt, broker.key (0600): copies, never the CA key
//	OUT/data/                            persistence_location
//
// mosquitto.conf loads the plugin from Config.DynsecPlugin (`--dynsec-plugin PATH`), else from the first
// of DynsecPluginPaths found on the host that runs Write: set it when the broker is another machine (an
// arm64 broker configured from an amd64 laptop needs /usr/lib/aarch64-linux-gnu/...).
//
// Start Mosquitto with `mosquitto -c OUT/mosquitto.conf`. Mosquitto started as root drops to the user
// "mosquitto" unless Config.User says otherwise: that user must read certs/ and write data/ and access/
// (`chown -R mosquitto: OUT`; Result.Chown is that command when something in OUT is not the user's yet).
//
// Write is run again into a directory a Mosquitto runs from, for the new CRL after a revoke or `pki
// crl`. Every file it replaces keeps its owner, group and mode (a temporary file in the same directory,
// fchown and fchmod to the old file's, fsync, rename), and a new file or directory takes its directory's
// owner and group, so a directory given to mosquitto once stays its. Writing them root:root 0600 locked
// the fleet out: at the SIGHUP Mosquitto, running as mosquitto, could not read its key ("Unable to load
// server key file ... Permission denied") and refused every new TLS handshake, and the plugin could not
// save its file any more ("File is not writable"), so identities told to it were lost at its restart.
//
// The configuration: require_certificate, use_identity_as_username and use_username_as_clientid (the
// certificate CN is the username and the client id, so a client cannot take over another's session),
// allow_anonymous false, tls_version tlsv1.2 (the minimum) with ECDHE-ECDSA AEAD ciphers, the CRL,
// Mosquitto's dynamic security plugin for access (below), max_packet_size, max_inflight_messages 1000
// instead of 20 (it is the receive maximum clients get, and throughput is at most window / round trip),
// queue limits sized for the fleet (below), persistence with a 10 s autosave, and sessions that expire
// after 30 days.
//
// # Access: the dynamic security plugin
//
// Mosquitto 2.0's acl_file checks publishes and deliveries but never refuses a subscription, and a
// SIGHUP that re-reads it never closes a connection. Measured with 2.0.11 here: with `pattern deny
// $share/#`, even with `pattern deny #`, every SUBACK was 1; a truck certificate could join dispatch's
// share group $share/GROUP/P/trucks/+/events, and Mosquitto dropped at delivery the messages its round
// robin handed that member (the truck's re-sends made up for them, late). After `pki revoke`, the CRL
// copy and SIGHUP, a revoked truck's open connection kept publishing with PUBACK 0.
//
// The dynamic security plugin (mosquitto_dynamic_security.so, shipped in Debian's mosquitto package)
// does both, with certificate identities: the CN is the username, the plugin's password check is
// skipped for certificate logins, and its ACLs apply to subscriptions (SUBACK 135), publishes (PUBACK
// 135) and deliveries. It does not expand %u in 2.0, so every identity gets a role of its own with its
// topics written out (ACL.DynsecRole); a client missing from it may do nothing at all. Its $CONTROL topic
// lets the administrator create and delete clients while the broker runs, and deleting a client closes
// its session at once (DISCONNECT 0x98). sdk/brokeradmin is that administrator: `waybill pki issue
// --broker`, `pki revoke --broker` and `waybill broker sync` drive it. The acl_file is not used: when both
// are configured, Mosquitto decides by the acl_file alone (measured: the plugin's refusals were ignored).
//
// The plugin reads its file only at start and rewrites it after every $CONTROL change, so the file is
// kept in access/ (not data/: a broker that loses its persistence keeps its identities). Write creates
// it from the PKI, and leaves an existing one alone (Config.ResetAccess, `--reset-access`, replaces it,
// with Mosquitto stopped): once Mosquitto runs, the file is its state, which may hold more than the PKI
// index knows (a client an operator disabled with mosquitto_ctrl) or something the PKI learnt after
// Write read it (an identity issued with `--broker` meanwhile). A rendering written under it would be
// overwritten at its next change, or else undo those at its next start, without a word. `waybill broker
// sync` brings a running broker in line with the PKI through the plugin, and reports what it changed.
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
// # Caveats
//
//   - A certificate issued while the broker runs may do nothing until the broker is told (`pki issue
//     --broker URL` or `waybill broker sync`). The development broker reads roles from certificates and
//     needs nothing.
//   - The CRL copy in certs/ is what the TLS listener checks at connect: after a revoke or `pki crl`, run
//     `waybill broker config` again and send SIGHUP (the revoked identity is already deleted from the
//     plugin, so a reconnect before that may connect but do nothing).
//   - Mosquitto does not cluster: failover brokers (a truck's broker.urls) each have their own directory,
//     sessions and access file, and `--broker A,B` tells each of them.
//   - A broker cluster (EMQX, HiveMQ, VerneMQ) has its own access control: render the same rules from ACL
//     for it; nothing here assumes one broker process, but only Mosquitto's plugin is generated.
//   - A will message on a topic the client may not write is accepted at connect and dropped when it
//     fires; a truck's will on its own status topic is allowed (retained is fine), and so is a dispatch
//     process's will on its own P/dispatch/NAME/status.
//   - Persistence is a snapshot every autosave interval: a kill -9 loses up to that much of the queue.
//
// # Connections and open files
//
// Each connection is a file descriptor, and a stock systemd unit allows 1,024: Mosquitto stops accepting
// near 1,000 trucks. The listener's max_connections is ConnectionLimit(FleetSize) = 2 x fleet + 100 (room
// for growth and for sockets a broker restart leaves half-closed) unless Config.MaxConnections sets it,
// and Write puts systemd/mosquitto.service.d/waybill.conf beside the configuration: a drop-in for Debian's
// mosquitto.service that starts this configuration (the stock unit starts /etc/mosquitto/mosquitto.conf)
// with LimitNOFILE = max_connections + 1024 (FileLimit). Mosquitto 2.0's listen backlog is fixed at 100 connections; what
// keeps a fleet-wide reconnect from overflowing it is the trucks' randomised reconnect delay, not the
// broker.
package brokerconf
