// Package brokeradmin tells a running Mosquitto who may connect and what each identity may do, through
// its dynamic security plugin, and publishes the fleet CRL.
//
// The broker configuration that brokerconf writes lists every identity of the PKI at start. While the
// broker runs, the plugin takes changes only as commands on $CONTROL/dynamic-security/v1 from an
// administrator: Admin is that client. It connects with a certificate for pki.AdminName minted for the
// session from the CA key (pki.MintAdmin), so whoever may issue and revoke certificates may also tell the
// broker, and no administrator key lives on disk.
//
//   - Sync makes the broker's clients and roles match a list of identities (brokerconf.Identities of the
//     PKI): it creates what is missing, corrects roles whose rules differ, and deletes clients that are
//     not in the list. Deleting a client ends its live session at once (DISCONNECT 0x98, administrative
//     action) and refuses it everything if it reconnects.
//   - Remove deletes named identities: `waybill pki revoke` uses it to end a revoked identity's session.
//   - PublishCRL publishes the fleet CRL, retained, on P/crl, where trucks, dispatch and `waybill watch`
//     pick it up and verify it against the fleet CA (sdk.Verifier.UpdateCRL).
//
// Cost: the plugin rewrites its whole file (about 1.7 kB per identity) after every change, inside
// Mosquitto's single thread, and Sync lists every client and role. Measured here (BenchmarkTellOneTruck:
// a Sync creating one truck plus its removal): 20 ms with 100 identities, 143 ms with 1,000, 720 ms with
// 5,000 (an 8.3 MB file). Fine for the trucks of a day; issue a new fleet in bulk, then render the file
// with `waybill broker config` and restart the broker. Only one administrator session can be open at a
// time: the client id is the name, so a second `waybill` command takes the first one's place.
//
// Why the plugin: Mosquitto 2.0 ends a live session for two reasons only, a client taking over the client
// id (impossible with use_username_as_clientid) and an administrative kick by a plugin. Its acl_file is
// re-read on SIGHUP but never closes a connection, and never refuses a subscription (see brokerconf's
// doc). The plugin does both, with certificate identities: use_identity_as_username makes the CN the
// username, the plugin's password check is skipped for certificate logins, and its ACLs apply.
package brokeradmin
