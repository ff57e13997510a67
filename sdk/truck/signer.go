package truck

import (
	"bytes"
	"crypto"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
)

// Signer is what the uploader and the client sign with; *sdk.Signer and *RenewingSigner implement it.
type Signer interface {
	Identity() pki.Identity
	Sign(t sdk.MsgType, id sdk.MsgID, body []byte, withCert bool) ([]byte, error)
	SignEvent(e *sdk.Event) ([]byte, error)
	SignTelemetry(t *sdk.Telemetry) ([]byte, error)
	SignStatus(st *sdk.Status) ([]byte, error)
}

var (
	_ Signer = (*sdk.Signer)(nil)
	_ Signer = (*RenewingSigner)(nil)
)

// RenewingSigner signs with the certificate and key in two files and picks up a renewed pair when Reload
// is called (the client calls it at every connection): the connection re-reads the same files for TLS, so
// messages and TLS never disagree for long, and a renewed certificate needs no restart.
type RenewingSigner struct {
	certFile, keyFile string
	cfg               sdk.SignerConfig // Sequencer and Clock; Certificate and Key come from the files
	log               *slog.Logger

	mu     sync.RWMutex
	cur    *sdk.Signer // guarded by mu
	curRaw []byte      // guarded by mu: the certificate file's bytes cur was built from
}

// NewRenewingSigner loads the pair (refusing a key file others can read) and keeps cfg's Sequencer and Clock
// for every reload.
func NewRenewingSigner(certFile, keyFile string, cfg sdk.SignerConfig, log *slog.Logger) (*RenewingSigner, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &RenewingSigner{certFile: certFile, keyFile: keyFile, cfg: cfg, log: log}
	if _, err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again and switches to them if the certificate changed. A pair that cannot be used
// (half-copied files, a key that does not match, another identity) is refused and the current one kept.
func (r *RenewingSigner) Reload() (bool, error) {
	raw, err := os.ReadFile(r.certFile)
	if err != nil {
		return false, fmt.Errorf("truck: %w", err)
	}
	r.mu.RLock()
	same := r.cur != nil && bytes.Equal(raw, r.curRaw)
	r.mu.RUnlock()
	if same {
		return false, nil
	}
	pair, err := pki.LoadKeyPair(r.certFile, r.keyFile)
	if err != nil {
		return false, fmt.Errorf("truck: %w", err)
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return false, fmt.Errorf("truck: key in %s cannot sign", r.keyFile)
	}
	cfg := r.cfg
	cfg.Certificate, cfg.Key = pair.Leaf, key
	s, err := sdk.NewSigner(cfg)
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil && s.Identity() != r.cur.Identity() {
		return false, fmt.Errorf("truck: %s now holds %s's certificate, not %s's: keeping the old one", r.certFile,
			s.Identity().Name, r.cur.Identity().Name)
	}
	if r.cur != nil {
		r.log.Info("truck: renewed certificate in use for signing", "serial", pair.Leaf.SerialNumber, "not_after", pair.Leaf.NotAfter)
	}
	r.cur, r.curRaw = s, raw
	return true, nil
}

func (r *RenewingSigner) get() *sdk.Signer {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cur
}

func (r *RenewingSigner) Identity() pki.Identity { return r.get().Identity() }
func (r *RenewingSigner) Sign(t sdk.MsgType, id sdk.MsgID, body []byte, withCert bool) ([]byte, error) {
	return r.get().Sign(t, id, body, withCert)
}
func (r *RenewingSigner) SignEvent(e *sdk.Event) ([]byte, error) { return r.get().SignEvent(e) }
func (r *RenewingSigner) SignTelemetry(t *sdk.Telemetry) ([]byte, error) {
	return r.get().SignTelemetry(t)
}
func (r *RenewingSigner) SignStatus(st *sdk.Status) ([]byte, error) { return r.get().SignStatus(st) }
