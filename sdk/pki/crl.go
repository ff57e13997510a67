package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

const (
	// DefaultCRLValidity is how far ahead a new CRL's NextUpdate lies when Config.CRLValidity is zero.
	DefaultCRLValidity = 90 * 24 * time.Hour
	// DefaultCRLWarnBefore is how long before NextUpdate CheckCRL starts warning when warnBefore is zero:
	// a third of the default validity, so a monthly job that refreshes the CRL never triggers it.
	DefaultCRLWarnBefore = 30 * 24 * time.Hour
)

var (
	// ErrCRLStale: the CRL is past its NextUpdate. Mosquitto then refuses every client (TLS alert), so
	// the whole fleet is locked out until the CRL is refreshed.
	ErrCRLStale = errors.New("pki: CRL is stale")
	// ErrCRLExpiringSoon: the CRL is still valid but its NextUpdate is within the warning window.
	ErrCRLExpiringSoon = errors.New("pki: CRL expires soon")
)

// LoadCRL reads a PEM (or DER) certificate revocation list.
func LoadCRL(path string) (*x509.RevocationList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	crl, err := ParseCRL(data)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	return crl, nil
}

// ParseCRL decodes a certificate revocation list, DER or one PEM "X509 CRL" block. Text that starts like
// PEM but holds no complete block is an error, not DER.
func ParseCRL(data []byte) (*x509.RevocationList, error) {
	der := data
	if bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("-----BEGIN")) {
		block, _ := pem.Decode(data)
		if block == nil {
			return nil, errors.New("PEM without a complete block")
		}
		if block.Type != "X509 CRL" {
			return nil, fmt.Errorf("PEM block %q, want \"X509 CRL\"", block.Type)
		}
		der = block.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("not a CRL: %w", err)
	}
	return crl, nil
}

// CheckCRL reports whether crl is fresh at now. It returns an error wrapping ErrCRLStale when NextUpdate
// has passed, one wrapping ErrCRLExpiringSoon when it is less than warnBefore away (zero means
// DefaultCRLWarnBefore), and nil otherwise. Both messages say how to refresh it. The agent and waybill
// call it at start and periodically: logging the warning weeks ahead is what keeps a fleet from being
// locked out of Mosquitto by a forgotten CRL.
func CheckCRL(crl *x509.RevocationList, now time.Time, warnBefore time.Duration) error {
	if warnBefore == 0 {
		warnBefore = DefaultCRLWarnBefore
	}
	const fix = "refresh it with `waybill pki crl` on the PKI host, then on the broker host run `waybill broker config` again " +
		"and send Mosquitto SIGHUP"
	if crl.NextUpdate.IsZero() {
		return nil // a CRL without NextUpdate never goes stale
	}
	if !now.Before(crl.NextUpdate) {
		return fmt.Errorf("%w: its next update was due %s (%s ago); Mosquitto refuses every client until it is replaced: %s",
			ErrCRLStale, crl.NextUpdate.UTC().Format(time.RFC3339), now.Sub(crl.NextUpdate).Round(time.Second), fix)
	}
	if left := crl.NextUpdate.Sub(now); left < warnBefore {
		return fmt.Errorf("%w: it goes stale at %s (in %s) and Mosquitto will then refuse every client: %s",
			ErrCRLExpiringSoon, crl.NextUpdate.UTC().Format(time.RFC3339), left.Round(time.Minute), fix)
	}
	return nil
}

// CheckCRLFile is LoadCRL followed by CheckCRL.
func CheckCRLFile(path string, now time.Time, warnBefore time.Duration) error {
	crl, err := LoadCRL(path)
	if err != nil {
		return err
	}
	if err := CheckCRL(crl, now, warnBefore); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
