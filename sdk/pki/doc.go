// Package pki is the fleet's public-key infrastructure: one fleet CA, and a key and X.509 certificate from
// it for every party (broker, trucks, dispatch clients), a certificate revocation list, and the identity
// rules of design.md.
//
// # Identities
//
// A certificate's Common Name is the party's identity, which is also its MQTT username and client id. Names
// match ^[a-z0-9][a-z0-9-]{0,62}$ and are not reserved (see ValidateName). The role (truck, dispatch, broker)
// is the certificate's single Subject OrganizationalUnit; IdentityOf reads both. Brokers get serverAuth
// certificates with DNS/IP SANs (their name, localhost, 127.0.0.1, ::1 and any --host); trucks and dispatch
// clients get clientAuth certificates. Keys are ECDSA P-256 unless Ed25519 is asked for; the CA is always
// ECDSA P-256.
//
// # Basics
//
// Init creates a PKI directory, Open opens one; Issue, Revoke, RefreshCRL and List work on it. The
// directory is plain files that OpenSSL and Mosquitto read directly:
//
//	DIR/                  0700
//	  ca.crt              the fleet CA certificate (PEM); every party needs it
//	  ca.key              the CA private key (PKCS#8 PEM, 0600); keep this directory offline if you can
//	  crl.pem             the certificate revocation list, signed by the CA; brokers need it
//	  index.json          every certificate issued: name, role, serial, validity, revocation time
//	  index.lock          the writers' lock (empty, or the pid and command of the writer holding it)
//	  issued/NAME.crt     NAME's certificate (PEM, 0644)
//	  private/NAME.key    NAME's private key (PKCS#8 PEM, 0600; directory 0700)
//
// A truck needs ca.crt, issued/NAME.crt and private/NAME.key; move the key to the truck and delete it
// here. The broker needs ca.crt, crl.pem and its own certificate and key. A dispatch host needs ca.crt and
// its own pair.
//
// The loaders (LoadKeyPair, LoadPrivateKey, LoadCertPool, LoadCRL) and the checks (CheckKeyFile,
// CheckCRL) work on single files and need no PKI directory: the agent and the SDK use them.
//
// # Caveats
//
//   - The CRL has a NextUpdate (Config.CRLValidity, 90 days by default). Past it, Mosquitto refuses every
//     client: the whole fleet is locked out. Run `waybill pki crl` (PKI.RefreshCRL) monthly, then
//     `waybill broker config` again on the broker host (it keeps every file's owner) and send it SIGHUP.
//     CheckCRL warns 30 days ahead; the agent and waybill log that warning.
//   - Revocation reaches a broker's TLS listener only when it reloads the CRL; `waybill pki revoke
//     --broker` ends the revoked client's session at once through the broker's access plugin.
//   - Issuing a name again with the same role renews it; the older certificate stays valid until it expires
//     or is revoked (Revoke revokes every certificate of a name). A name is never reused for another role.
//   - Writers take turns: Init, Issue, IssueMany (per chunk of 512), Revoke and RefreshCRL hold an
//     exclusive flock on DIR/index.lock around their read-modify-write of index.json and crl.pem, so
//     concurrent `waybill pki issue` and `revoke` lose nothing. A writer waits Config.LockTimeout (30 s)
//     and then fails with ErrLocked, naming the pid and command holding it. Readers take no lock: every
//     file is replaced atomically, so a reader or a crash sees the old or the new version.
//   - Serial numbers are random 127-bit integers, so no counter file is needed.
package pki
