package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// ErrRevoked is wrapped by Verifier.Verify when a certificate's serial is on the CRL.
var ErrRevoked = errors.New("pki: certificate revoked")

// Verifier checks certificates against the fleet CA and, if set, a CRL. The zero value is unusable:
// Roots is required.
type Verifier struct {
	Roots *x509.CertPool // the fleet CA
	// CRL, if not nil, lists revoked serials. It must have been issued by a certificate in Roots; Verify
	// checks its signature. A stale CRL is refused like Mosquitto refuses it, unless AllowStaleCRL.
	CRL           *x509.RevocationList
	AllowStaleCRL bool
}

// Verify checks cert (and intermediates, usually none) at time now for the given extended key usage
// (x509.ExtKeyUsageClientAuth for trucks and dispatch, ServerAuth for brokers) and returns its identity.
func (v Verifier) Verify(cert *x509.Certificate, intermediates []*x509.Certificate, now time.Time,
	usage x509.ExtKeyUsage) (Identity, error) {
	if v.Roots == nil {
		return Identity{}, errors.New("pki: verifier has no fleet CA")
	}
	opts := x509.VerifyOptions{
		Roots:       v.Roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{usage},
	}
	if len(intermediates) > 0 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range intermediates {
			opts.Intermediates.AddCert(c)
		}
	}
	chains, err := cert.Verify(opts)
	if err != nil {
		return Identity{}, fmt.Errorf("pki: certificate %q: %w", cert.Subject.CommonName, err)
	}
	if v.CRL != nil {
		if err := v.checkCRL(cert, chains, now); err != nil {
			return Identity{}, err
		}
	}
	return IdentityOf(cert)
}

func (v Verifier) checkCRL(cert *x509.Certificate, chains [][]*x509.Certificate, now time.Time) error {
	// The CRL must come from the issuer of cert in a verified chain.
	var signed bool
	for _, chain := range chains {
		if len(chain) > 1 && v.CRL.CheckSignatureFrom(chain[1]) == nil {
			signed = true
			break
		}
	}
	if !signed {
		return errors.New("pki: CRL is not signed by the certificate's issuer")
	}
	if !v.AllowStaleCRL {
		if err := CheckCRL(v.CRL, now, time.Nanosecond); errors.Is(err, ErrCRLStale) {
			return err
		}
	}
	for _, rc := range v.CRL.RevokedCertificateEntries {
		if rc.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return fmt.Errorf("%w: %q (serial %x) since %s", ErrRevoked, cert.Subject.CommonName,
				cert.SerialNumber, rc.RevocationTime.UTC().Format(time.RFC3339))
		}
	}
	return nil
}
