package pki

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"
)

// AdminName is the identity of the broker's administrator: the client that manages the broker's identities
// and access rules (Mosquitto's dynamic security plugin, through $CONTROL) and publishes the fleet CRL.
// The name is reserved, so no truck or dispatch certificate can carry it.
const AdminName = "admin"

// RoleAdmin is the role of AdminName's certificates. It is not a role Issue accepts: admin certificates
// are minted for one session by whoever holds the CA key (MintAdmin), never written to disk.
const RoleAdmin Role = "admin"

// DefaultAdminValidity is how long a minted admin certificate lives: one command's session.
const DefaultAdminValidity = 15 * time.Minute

// MintAdmin creates a short-lived client certificate for AdminName with a fresh key that exists only in
// memory. The holder of the CA key is the fleet's root of trust already; minting instead of issuing means
// there is no administrator key on disk to steal, and nothing to revoke: the certificate expires within
// validity (zero means DefaultAdminValidity). Nothing is recorded in the index.
func (p *PKI) MintAdmin(validity time.Duration) (tls.Certificate, error) {
	if p.caKey == nil {
		return tls.Certificate{}, fmt.Errorf("pki: minting an admin certificate needs the CA key in %s", p.cfg.Dir)
	}
	if validity <= 0 {
		validity = DefaultAdminValidity
	}
	key, err := newKey(ECDSAP256)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := newSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	notBefore := p.cfg.now().Add(-backdate)
	notAfter := p.cfg.now().Add(validity)
	if notAfter.After(p.caCert.NotAfter) {
		notAfter = p.caCert.NotAfter
	}
	tmpl := p.leafTemplate(serial, AdminName, RoleAdmin, notBefore, notAfter)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, key.Public(), p.caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: mint admin certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
