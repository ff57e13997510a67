// Package pki is the fleet's public-key infrastructure: one fleet CA, and a key and X.509 certificate from
// it for every party (broker, trucks, dispatch clients), a certificate revocation list, and the identity
// rules of design.md.
//
// # Identities
//
// A certificate's Common Name is the party's identity, which is also its MQTT username and client id. Names
// match ^[a-z0-9][a-z0-9-]{0,62}$ and are not reserved (see ValidateName). The role (truck, dispatch, broker)
// is the certificate's single Subject OrganizationalUnit; IdentityOf reads both.
package pki
