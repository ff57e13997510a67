package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"regexp"
)

// Role is what a certificate's holder may do in the fleet. It is carried in the certificate as the single
// Subject OrganizationalUnit, and checked by the broker's ACL and by every message receiver.
type Role string

const (
	RoleTruck    Role = "truck"    // a truck's agent: clientAuth
	RoleDispatch Role = "dispatch" // a dispatch client or back-end: clientAuth
	RoleBroker   Role = "broker"   // an MQTT broker: serverAuth
)

// Valid reports whether r is one of the three roles.
func (r Role) Valid() bool { return r == RoleTruck || r == RoleDispatch || r == RoleBroker }

// namePattern is design.md's rule for identities (the certificate CN, MQTT username and client id): a '/',
// '+' or '#' in a CN would break topic isolation in Mosquitto's ACL patterns.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// reservedNames may not be issued to any party: they name roles, the CA or broker-internal identities, and
// an identity named like a role invites ACL mistakes.
var reservedNames = map[string]bool{
	"truck": true, "trucks": true, "dispatch": true, "broker": true, "fleet": true, "ca": true,
	"fleet-ca": true, "admin": true, "root": true, "mosquitto": true, "all": true, "share": true,
}

// ErrInvalidName is wrapped by ValidateName's errors.
var ErrInvalidName = errors.New("pki: invalid identity name")

// ValidateName checks an identity name against design.md's rules and the reserved names.
func ValidateName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%w %q: use 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit",
			ErrInvalidName, name)
	}
	if reservedNames[name] {
		return fmt.Errorf("%w %q: the name is reserved", ErrInvalidName, name)
	}
	return nil
}

// Identity is who a verified certificate belongs to.
type Identity struct {
	Name string // the certificate's Common Name
	Role Role   // from the certificate's OrganizationalUnit
}

// IdentityOf reads the name and role of a certificate. It does not verify the chain: callers verify first.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	name := cert.Subject.CommonName
	if err := ValidateName(name); err != nil {
		return Identity{}, err
	}
	if len(cert.Subject.OrganizationalUnit) != 1 {
		return Identity{}, fmt.Errorf("pki: certificate %q carries %d organizational units, want exactly one role",
			name, len(cert.Subject.OrganizationalUnit))
	}
	role := Role(cert.Subject.OrganizationalUnit[0])
	if !role.Valid() {
		return Identity{}, fmt.Errorf("pki: certificate %q has unknown role %q", name, role)
	}
	return Identity{Name: name, Role: role}, nil
}

// KeyID is the short identifier of a certificate that signed messages carry instead of the certificate
// itself: the first 8 bytes of the SHA-256 of its DER encoding.
type KeyID [8]byte

// KeyIDOf returns cert's KeyID.
func KeyIDOf(cert *x509.Certificate) KeyID {
	sum := sha256.Sum256(cert.Raw)
	var id KeyID
	copy(id[:], sum[:8])
	return id
}
