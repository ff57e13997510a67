package sdk

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// Sequencer hands out sequence numbers: strictly increasing per message type, from 1, never reused for a
// signer identity, also across restarts. Receivers refuse a number they have seen or one far behind the
// newest (see MemoryReplay), so a truck persists its sequencer (the store) rather than starting over.
type Sequencer interface {
	Next(t MsgType) (uint64, error)
}

// MemorySequencer is a Sequencer in memory: one counter per message type, all starting after start.
type MemorySequencer struct {
	mu   sync.Mutex
	next [numMsgTypes]uint64 // guarded by mu
}

// NewMemorySequencer returns counters whose first number is start+1. NewSigner's default uses the clock in
// microseconds as start, so a signer restarted without saved state still moves forward, as long as its
// clock does and it signed fewer than a million messages per second.
func NewMemorySequencer(start uint64) *MemorySequencer {
	s := &MemorySequencer{}
	for i := range s.next {
		s.next[i] = start
	}
	return s
}

// Next returns the next number for t.
func (s *MemorySequencer) Next(t MsgType) (uint64, error) {
	if t == 0 || t >= numMsgTypes {
		return 0, fmt.Errorf("sdk: sequencer: unknown message type %d", t)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next[t]++
	return s.next[t], nil
}

// SignerConfig configures a Signer.
type SignerConfig struct {
	// Certificate is the signer's fleet certificate; its CN and OU give the identity (pki.IdentityOf).
	Certificate *x509.Certificate
	// Key is the certificate's private key: ECDSA P-256 or Ed25519. Any crypto.Signer works (a TPM, an HSM).
	Key crypto.Signer
	// Sequencer gives sequence numbers. Nil = NewMemorySequencer(clock in microseconds): fine for tests and
	// for dispatch tools, not for a truck (persist it: see Sequencer).
	Sequencer Sequencer
	// Clock gives the time written into envelopes. Nil = time.Now. A unit without a real-time clock passes
	// GPS-derived time: receivers refuse messages that look too old or too new.
	Clock func() time.Time
}

// Signer signs envelopes with one fleet identity. It is safe for concurrent use.
type Signer struct {
	cert  *x509.Certificate
	key   crypto.Signer
	id    pki.Identity
	keyID pki.KeyID
	alg   Alg
	seq   Sequencer
	clock func() time.Time
}

// NewSigner checks that the key matches the certificate and is of a supported kind, and reads the identity.
func NewSigner(cfg SignerConfig) (*Signer, error) {
	if cfg.Certificate == nil || cfg.Key == nil {
		return nil, errors.New("sdk: signer needs a certificate and its key")
	}
	id, err := pki.IdentityOf(cfg.Certificate)
	if err != nil {
		return nil, fmt.Errorf("sdk: signer: %w", err)
	}
	s := &Signer{cert: cfg.Certificate, key: cfg.Key, id: id, keyID: pki.KeyIDOf(cfg.Certificate),
		seq: cfg.Sequencer, clock: cfg.Clock}
	switch pub := cfg.Key.Public().(type) {
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, errors.New("sdk: signer: ECDSA keys must be P-256")
		}
		s.alg = AlgECDSAP256
	case ed25519.PublicKey:
		s.alg = AlgEd25519
	default:
		return nil, fmt.Errorf("sdk: signer: unsupported key type %T: use ECDSA P-256 or Ed25519", pub)
	}
	if eq, ok := cfg.Key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(cfg.Certificate.PublicKey) {
		return nil, errors.New("sdk: signer: the key does not belong to the certificate")
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.seq == nil {
		s.seq = NewMemorySequencer(uint64(s.clock().UnixMicro()))
	}
	return s, nil
}

// NewSignerTLS builds a Signer from a tls.Certificate (tls.LoadX509KeyPair); cfg's Certificate and Key are
// taken from it.
func NewSignerTLS(c tls.Certificate, cfg SignerConfig) (*Signer, error) {
	if len(c.Certificate) == 0 {
		return nil, errors.New("sdk: signer: the TLS certificate is empty")
	}
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("sdk: signer: %w", err)
		}
	}
	key, ok := c.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("sdk: signer: private key %T cannot sign", c.PrivateKey)
	}
	cfg.Certificate, cfg.Key = leaf, key
	return NewSigner(cfg)
}

// Identity is who this signer signs as.
func (s *Signer) Identity() pki.Identity { return s.id }

// Certificate returns the signer's certificate.
func (s *Signer) Certificate() *x509.Certificate { return s.cert }

// Sign wraps body in a signed envelope of type t with message id id. withCert carries the signer's
// certificate so that a receiver that has not seen it can verify (about 500 bytes).
func (s *Signer) Sign(t MsgType, id MsgID, body []byte, withCert bool) ([]byte, error) {
	if t == 0 || t >= numMsgTypes {
		return nil, fmt.Errorf("sdk: sign: unknown message type %d", t)
	}
	if len(body) > maxBodyLen {
		return nil, fmt.Errorf("sdk: sign: body of %d bytes is over %d", len(body), maxBodyLen)
	}
	seq, err := s.seq.Next(t)
	if err != nil {
		return nil, fmt.Errorf("sdk: sign: sequence: %w", err)
	}
	u := unsignedEnvelope{
		Version: FormatVersion, Type: uint8(t), Sender: s.id.Name, ID: id[:], Seq: seq,
		Created: s.clock().UnixMilli(), Alg: uint8(s.alg), KeyID: s.keyID[:], Body: body,
	}
	if withCert {
		u.Cert = s.cert.Raw
	}
	enc, err := encMode.Marshal(u)
	if err != nil {
		return nil, fmt.Errorf("sdk: sign: %w", err)
	}
	if enc[0] != cborArray10 {
		return nil, errors.New("sdk: sign: unexpected envelope encoding") // cannot happen with toarray
	}
	signed := make([]byte, 0, len(signPrefix)+len(enc))
	signed = append(append(signed, signPrefix...), enc...)
	sig, err := s.signBytes(signed)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(enc)+2+sigLen)
	out = append(out, cborArray11)
	out = append(out, enc[1:]...)
	out = append(out, 0x58, sigLen)
	return append(out, sig...), nil
}

// SignOrder signs an order revision (with the certificate, so a truck can learn dispatch's certificate).
func (s *Signer) SignOrder(o *Order) ([]byte, error) {
	body, err := o.MarshalBody()
	if err != nil {
		return nil, err
	}
	return s.Sign(MsgOrder, o.MessageID(), body, true)
}

// SignEvent signs a delivery event (with the certificate); its message id is its (epoch, record seq).
func (s *Signer) SignEvent(e *Event) ([]byte, error) {
	body, err := e.MarshalBody()
	if err != nil {
		return nil, err
	}
	return s.Sign(MsgEvent, e.MessageID(), body, true)
}

// SignStatus signs a status (with the certificate) under a random message id.
func (s *Signer) SignStatus(st *Status) ([]byte, error) {
	body, err := st.MarshalBody()
	if err != nil {
		return nil, err
	}
	return s.Sign(MsgStatus, randomID(), body, true)
}

// SignTelemetry signs a telemetry batch without the certificate (bytes matter there) under a random message
// id: consumers drop duplicate fixes by (truck, epoch, record seq).
func (s *Signer) SignTelemetry(t *Telemetry) ([]byte, error) {
	body, err := t.MarshalBody()
	if err != nil {
		return nil, err
	}
	return s.Sign(MsgTelemetry, randomID(), body, false)
}

// SignReceipt signs a receipt under a random message id. withCert carries the certificate: a truck learns
// dispatch's certificate from orders and from dispatch's retained status, so most receipts leave it out.
func (s *Signer) SignReceipt(r *Receipt, withCert bool) ([]byte, error) {
	body, err := r.MarshalBody()
	if err != nil {
		return nil, err
	}
	return s.Sign(MsgReceipt, randomID(), body, withCert)
}

func randomID() MsgID {
	var id MsgID
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails (Go 1.24+)
	return id
}

func (s *Signer) signBytes(msg []byte) ([]byte, error) {
	if s.alg == AlgEd25519 {
		sig, err := s.key.Sign(rand.Reader, msg, crypto.Hash(0))
		if err != nil {
			return nil, fmt.Errorf("sdk: sign: %w", err)
		}
		return sig, nil
	}
	digest := sha256.Sum256(msg)
	der, err := s.key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("sdk: sign: %w", err)
	}
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &rs); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("sdk: sign: the key returned an unparsable ECDSA signature")
	}
	// Low-S form: (r, s) and (r, n-s) both verify; allowing only one keeps signatures non-malleable.
	n := elliptic.P256().Params().N
	if rs.S.Cmp(halfOrder) > 0 {
		rs.S.Sub(n, rs.S)
	}
	sig := make([]byte, sigLen)
	rs.R.FillBytes(sig[:32])
	rs.S.FillBytes(sig[32:])
	return sig, nil
}

var halfOrder = new(big.Int).Rsh(elliptic.P256().Params().N, 1)

// verifySig checks sig over msg with the certificate's public key.
func verifySig(alg Alg, pub crypto.PublicKey, msg, sig []byte) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if alg != AlgECDSAP256 || k.Curve != elliptic.P256() {
			return errors.New("algorithm does not match the certificate key")
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if s.Sign() == 0 || s.Cmp(halfOrder) > 0 {
			return errors.New("ECDSA signature is not in low-S form")
		}
		digest := sha256.Sum256(msg)
		if !ecdsa.Verify(k, digest[:], r, s) {
			return errors.New("ECDSA signature does not verify")
		}
		return nil
	case ed25519.PublicKey:
		if alg != AlgEd25519 {
			return errors.New("algorithm does not match the certificate key")
		}
		if !ed25519.Verify(k, msg, sig) {
			return errors.New("Ed25519 signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("unsupported certificate key %T", pub)
}
