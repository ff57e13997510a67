package sdk

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// Defaults for VerifierConfig's zero values.
const (
	DefaultMaxMessageSize = 256 << 10
	DefaultMaxClockSkew   = 5 * time.Minute
	DefaultMaxCachedCerts = 10000
	DefaultMaxAgeOrder    = 7 * 24 * time.Hour
	DefaultMaxAgeEvent    = 7 * 24 * time.Hour
	DefaultMaxAgeTelem    = 7 * 24 * time.Hour
	// DefaultMaxAgeReceipt is short: a receipt is signed when it is sent, and an old one only acks again
	// what was acked before.
	DefaultMaxAgeReceipt = 24 * time.Hour
	// DefaultMaxAgeStatus is long because a truck's MQTT will is a status signed when it connected, and
	// fires whenever the connection dies, possibly weeks later.
	DefaultMaxAgeStatus = 60 * 24 * time.Hour
)

// MaxAge is the oldest envelope accepted, per message type, measured from the envelope's creation time.
// Zero takes the type's default; a negative value means no limit. Senders sign when they send (the truck's
// uploader signs at upload time, dispatch's outbox signs each re-send), so envelopes are normally fresh.
type MaxAge struct {
	Order, Event, Status, Telemetry, Receipt time.Duration
}

func (a MaxAge) of(t MsgType) time.Duration {
	d, def := time.Duration(0), time.Duration(0)
	switch t {
	case MsgOrder:
		d, def = a.Order, DefaultMaxAgeOrder
	case MsgEvent:
		d, def = a.Event, DefaultMaxAgeEvent
	case MsgStatus:
		d, def = a.Status, DefaultMaxAgeStatus
	case MsgTelemetry:
		d, def = a.Telemetry, DefaultMaxAgeTelem
	case MsgReceipt:
		d, def = a.Receipt, DefaultMaxAgeReceipt
	}
	if d == 0 {
		return def
	}
	return d
}

// VerifierConfig configures a Verifier. Only CA is required.
type VerifierConfig struct {
	// CA holds the fleet CA certificate(s): the roots every signer's certificate must chain to, and the
	// issuers a CRL must be signed by.
	CA []*x509.Certificate
	// CRL is the fleet's revocation list, or nil. Its signature is checked against CA. SetCRL replaces it.
	CRL *x509.RevocationList
	// Topics gives the topic prefix. Zero = DefaultPrefix.
	Topics Topics
	// Clock is the receiver's time, for expiry and certificate validity. Nil = time.Now. A truck without a
	// real-time clock passes GPS time here until its system clock is plausible.
	Clock func() time.Time
	// MaxMessageSize is the largest message accepted, in bytes. Zero = DefaultMaxMessageSize.
	MaxMessageSize int
	// MaxClockSkew is how far in the future an envelope's creation time, and an order's Created, may be.
	// Zero = DefaultMaxClockSkew.
	MaxClockSkew time.Duration
	// MaxAge bounds envelope age per type (zero fields take the defaults).
	MaxAge MaxAge
	// Replay remembers delivered messages. Nil = NewMemoryReplay(0, 0), lost at restart.
	Replay ReplayState
	// MaxCachedCerts bounds the certificates learnt from envelopes. Zero = DefaultMaxCachedCerts.
	// Certificates added with AddCertificate are never evicted.
	MaxCachedCerts int
	// Logger gets one line per rejected message (Warn) and per duplicate (Debug). Nil = discard.
	Logger *slog.Logger
}

// Verifier checks messages: structure, size, topic, signer certificate (fleet CA, clientAuth, CRL,
// validity), signature, role, addressing, age and replays. It is safe for concurrent use.
type Verifier struct {
	cfg   VerifierConfig
	roots *x509.CertPool
	log   *slog.Logger

	mu      sync.RWMutex
	certs   map[pki.KeyID]*knownCert // guarded by mu
	revoked map[string]bool          // serial numbers of crl; guarded by mu
	crl     *x509.RevocationList     // the CRL applied, nil for none; guarded by mu

	accepted atomic.Uint64
	counts   [numReasons]atomic.Uint64
}

type knownCert struct {
	cert   *x509.Certificate
	chain  []*x509.Certificate // leaf first
	id     pki.Identity
	pinned bool // added by the caller: never evicted
}

// NewVerifier checks the configuration and applies defaults.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if len(cfg.CA) == 0 {
		return nil, errors.New("sdk: verifier needs the fleet CA certificate")
	}
	if err := cfg.Topics.Validate(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.MaxClockSkew <= 0 {
		cfg.MaxClockSkew = DefaultMaxClockSkew
	}
	if cfg.Replay == nil {
		cfg.Replay = NewMemoryReplay(0, 0)
	}
	if cfg.MaxCachedCerts <= 0 {
		cfg.MaxCachedCerts = DefaultMaxCachedCerts
	}
	v := &Verifier{cfg: cfg, roots: x509.NewCertPool(), log: cfg.Logger, certs: make(map[pki.KeyID]*knownCert)}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	for _, ca := range cfg.CA {
		if ca == nil || !ca.IsCA {
			return nil, errors.New("sdk: verifier: CA list holds a certificate that is not a CA")
		}
		v.roots.AddCert(ca)
	}
	if cfg.CRL != nil {
		if err := v.SetCRL(cfg.CRL); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// SetCRL replaces the revocation list after checking that a fleet CA signed it, whatever its number (see
// UpdateCRL for a list received from the fleet). A CRL past its NextUpdate is still applied (revoked stays
// revoked) and logged: renew it.
func (v *Verifier) SetCRL(crl *x509.RevocationList) error {
	if err := v.checkCRL(crl); err != nil {
		return err
	}
	v.applyCRL(crl, false)
	return nil
}

// ErrBadCRL is wrapped by UpdateCRL's errors: the bytes are not a CRL, or no fleet CA signed it.
var ErrBadCRL = errors.New("sdk: CRL refused")

// MaxCRLSize is the largest CRL UpdateCRL parses, in bytes: about 30,000 revoked certificates.
const MaxCRLSize = 1 << 20

// UpdateCRL applies a fleet CRL received as bytes, DER (as published on Topics.CRL) or PEM ("X509 CRL"). It
// checks that a fleet CA signed it and replaces the list in use only when the new one is newer: a higher
// CRL Number (RFC 5280 5.2.3; every CRL of sdk/pki has one), or, when either list lacks a number, a later
// ThisUpdate. An equal or older list is ignored: updated is false and err nil, so a stale retained message
// or a replayed old CRL never brings a revoked certificate back. The first valid CRL is always applied.
// Bytes that are not a CRL, or a CRL another CA signed, return an error wrapping ErrBadCRL and change
// nothing. From the moment it returns true, messages signed by a certificate the new list revokes are
// refused (ReasonRevoked), also by Verify calls running concurrently.
func (v *Verifier) UpdateCRL(raw []byte) (updated bool, err error) {
	crl, err := parseCRL(raw)
	if err != nil {
		return false, err
	}
	if err := v.checkCRL(crl); err != nil {
		return false, err
	}
	v.mu.RLock()
	newer := crlNewer(crl, v.crl)
	v.mu.RUnlock()
	if !newer {
		return false, nil // the usual case: the retained CRL again, at every connection
	}
	// Checked again under the lock in applyCRL: of two CRLs arriving at once, the newer one stays.
	return v.applyCRL(crl, true), nil
}

// parseCRL decodes raw as a DER CRL, or a PEM block holding one, of at most MaxCRLSize bytes.
func parseCRL(raw []byte) (*x509.RevocationList, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadCRL)
	}
	if len(raw) > MaxCRLSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadCRL, len(raw), MaxCRLSize)
	}
	crl, err := pki.ParseCRL(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCRL, err)
	}
	return crl, nil
}

// checkCRL checks that a fleet CA signed crl.
func (v *Verifier) checkCRL(crl *x509.RevocationList) error {
	if crl == nil {
		return fmt.Errorf("%w: no CRL given", ErrBadCRL)
	}
	var err error = errors.New("no CA given")
	for _, ca := range v.cfg.CA {
		if err = crl.CheckSignatureFrom(ca); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: the CRL is not signed by the fleet CA: %w", ErrBadCRL, err)
}

// crlNewer reports whether a is newer than b (nil: none): a higher CRL Number, or a later ThisUpdate when
// either has no number.
func crlNewer(a, b *x509.RevocationList) bool {
	if b == nil {
		return true
	}
	if a.Number != nil && b.Number != nil {
		return a.Number.Cmp(b.Number) > 0
	}
	return a.ThisUpdate.After(b.ThisUpdate)
}

// applyCRL makes crl the list in use; with onlyNewer, only if it is newer than the one in use. It reports
// whether it did.
func (v *Verifier) applyCRL(crl *x509.RevocationList, onlyNewer bool) bool {
	revoked := make(map[string]bool, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber != nil {
			revoked[e.SerialNumber.String()] = true
		}
	}
	v.mu.Lock()
	if onlyNewer && !crlNewer(crl, v.crl) {
		v.mu.Unlock()
		return false
	}
	v.revoked, v.crl = revoked, crl
	v.mu.Unlock()
	if !crl.NextUpdate.IsZero() && v.cfg.Clock().After(crl.NextUpdate) {
		v.log.Warn("the fleet CRL is past its next update: issue a new one", "next_update", crl.NextUpdate)
	}
	return true
}

// CRLInfo describes the revocation list a Verifier applies (Verifier.CRLInfo) or a truck reports in its
// status (Health.CRL).
type CRLInfo struct {
	// Loaded is false when there is no CRL at all: no certificate is refused as revoked, so a stolen
	// dispatch or truck key stays trusted until its certificate expires.
	Loaded bool `json:"loaded"`
	// Number is the CRL Number extension; nil when the list has none (or none is loaded).
	Number *big.Int `json:"number,omitempty"`
	// ThisUpdate is when the CA signed the list; NextUpdate when a newer one is due (zero: not given).
	ThisUpdate time.Time `json:"this_update,omitzero"`
	NextUpdate time.Time `json:"next_update,omitzero"`
	// Revoked is the number of revoked certificates it lists.
	Revoked int `json:"revoked"`
}

// CRLInfoOf describes crl (nil: none loaded).
func CRLInfoOf(crl *x509.RevocationList) CRLInfo {
	if crl == nil {
		return CRLInfo{}
	}
	i := CRLInfo{Loaded: true, ThisUpdate: crl.ThisUpdate.UTC(), Revoked: len(crl.RevokedCertificateEntries)}
	if crl.Number != nil {
		i.Number = new(big.Int).Set(crl.Number)
	}
	if !crl.NextUpdate.IsZero() {
		i.NextUpdate = crl.NextUpdate.UTC()
	}
	return i
}

// String is "none" or "#<number> of <this update>, <n> revoked".
func (i CRLInfo) String() string {
	if !i.Loaded {
		return "none"
	}
	num := "without number"
	if i.Number != nil {
		num = "#" + i.Number.String()
	}
	return fmt.Sprintf("%s of %s, %d revoked", num, i.ThisUpdate.UTC().Format(time.RFC3339), i.Revoked)
}

// CRLInfo describes the CRL in use.
func (v *Verifier) CRLInfo() CRLInfo {
	return CRLInfoOf(v.CRL())
}

// Topics is the topic prefix the verifier checks topics against (and the fleet CRL's topic, Topics.CRL).
func (v *Verifier) Topics() Topics { return v.cfg.Topics }

// CRL returns the CRL in use, nil for none. It must not be modified.
func (v *Verifier) CRL() *x509.RevocationList {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.crl
}

// AddCertificate makes a fleet certificate known, so that messages signed with it verify without carrying
// it (telemetry). It must chain to the CA and allow clientAuth. Dispatch adds every issued certificate of its
// PKI directory at start.
func (v *Verifier) AddCertificate(cert *x509.Certificate) error {
	kc, err := v.checkCert(cert)
	if err != nil {
		return fmt.Errorf("sdk: verifier: %s: %w", cert.Subject.CommonName, err)
	}
	kc.pinned = true
	v.mu.Lock()
	v.certs[pki.KeyIDOf(cert)] = kc
	v.mu.Unlock()
	return nil
}

// checkCert verifies a certificate's chain to the fleet CA at the receiver's time, its clientAuth usage and
// its identity.
func (v *Verifier) checkCert(cert *x509.Certificate) (*knownCert, error) {
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return nil, errors.New("certificate does not allow clientAuth")
	}
	chains, err := cert.Verify(x509.VerifyOptions{
		Roots: v.roots, CurrentTime: v.cfg.Clock(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	id, err := pki.IdentityOf(cert)
	if err != nil {
		return nil, err
	}
	return &knownCert{cert: cert, chain: chains[0], id: id}, nil
}

// signerCert finds the certificate for an envelope: the one it carries (verified and cached) or a known one.
func (v *Verifier) signerCert(env *Envelope) (*knownCert, *RejectError) {
	if len(env.Cert) > 0 {
		if pki.KeyID(keyIDOfDER(env.Cert)) != env.KeyID {
			return nil, reject(ReasonMalformed, "the carried certificate does not match the key id", nil)
		}
		v.mu.RLock()
		kc := v.certs[env.KeyID]
		v.mu.RUnlock()
		if kc != nil && bytes.Equal(kc.cert.Raw, env.Cert) {
			return kc, nil
		}
		cert, err := x509.ParseCertificate(env.Cert)
		if err != nil {
			return nil, reject(ReasonMalformed, "carried certificate", err)
		}
		kc, err = v.checkCert(cert)
		if err != nil {
			return nil, reject(ReasonUntrustedCert, "carried certificate", err)
		}
		v.cache(env.KeyID, kc)
		return kc, nil
	}
	v.mu.RLock()
	kc := v.certs[env.KeyID]
	v.mu.RUnlock()
	if kc == nil {
		return nil, reject(ReasonUnknownSigner, fmt.Sprintf("no certificate known for key id %x", env.KeyID[:]), nil)
	}
	return kc, nil
}

func (v *Verifier) cache(id pki.KeyID, kc *knownCert) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.certs) >= v.cfg.MaxCachedCerts {
		for k, c := range v.certs { // evict one learnt certificate, any
			if !c.pinned {
				delete(v.certs, k)
				break
			}
		}
		if len(v.certs) >= v.cfg.MaxCachedCerts {
			return
		}
	}
	v.certs[id] = kc
}

// Verify checks a message received on topic. It returns the decoded message, or a *RejectError. A
// duplicate (a message whose id this stream delivered before) returns the message AND a *RejectError with
// ReasonDuplicate: acknowledge it again, do not apply it twice. Every outcome is counted in Stats. ctx is
// passed to the ReplayState (which may write to disk); an error from it is returned as is and not counted.
func (v *Verifier) Verify(ctx context.Context, topic string, payload []byte) (*Message, error) {
	m, rerr, err := v.verify(ctx, topic, payload)
	if err != nil {
		return nil, err // the replay state failed: not the message's fault, not counted
	}
	if rerr == nil {
		v.accepted.Add(1)
		return m, nil
	}
	rerr.Topic = topic
	if m != nil {
		rerr.Sender, rerr.Type, rerr.Seq = m.Sender, m.Type, m.Seq
	}
	v.counts[rerr.Reason].Add(1)
	if rerr.Reason == ReasonDuplicate {
		v.log.Debug("duplicate message", "topic", topic, "sender", rerr.Sender, "type", rerr.Type, "id", m.ID)
		return m, rerr
	}
	v.log.Warn("message rejected", "reason", rerr.Reason.String(), "topic", topic, "sender", rerr.Sender,
		"type", rerr.Type.String(), "seq", rerr.Seq, "err", rerr)
	return nil, rerr
}

func (v *Verifier) verify(ctx context.Context, topic string, payload []byte) (*Message, *RejectError, error) {
	if len(payload) > v.cfg.MaxMessageSize {
		return nil, reject(ReasonTooLarge, fmt.Sprintf("%d bytes, limit %d", len(payload), v.cfg.MaxMessageSize), nil), nil
	}
	tp, err := v.cfg.Topics.Parse(topic)
	if err != nil {
		return nil, reject(ReasonBadTopic, "", err), nil
	}
	env, err := DecodeEnvelope(payload)
	if err != nil {
		var re *RejectError
		if errors.As(err, &re) {
			return nil, re, nil
		}
		return nil, reject(ReasonMalformed, "", err), nil
	}
	m := &Message{Envelope: *env, Topic: tp}
	fail := func(r Reason, detail string, err error) (*Message, *RejectError, error) {
		return m, reject(r, detail, err), nil
	}
	if env.Type != tp.Kind.MsgType() {
		return fail(ReasonMisaddressed, fmt.Sprintf("a %s message on a %s topic", env.Type, tp.Kind), nil)
	}

	// Who signed it, and is the signature theirs?
	kc, rerr := v.signerCert(env)
	if rerr != nil {
		return m, rerr, nil
	}
	now := v.cfg.Clock()
	for _, c := range kc.chain {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return fail(ReasonUntrustedCert, fmt.Sprintf("certificate %q is not valid at %v (valid %v to %v)",
				c.Subject.CommonName, now.UTC().Format(time.RFC3339), c.NotBefore, c.NotAfter), nil)
		}
	}
	v.mu.RLock()
	revoked := v.revoked[kc.cert.SerialNumber.String()]
	v.mu.RUnlock()
	if revoked {
		return fail(ReasonRevoked, fmt.Sprintf("certificate of %q (serial %s) is revoked", kc.id.Name, kc.cert.SerialNumber), nil)
	}
	if kc.id.Name != env.Sender {
		return fail(ReasonWrongSender, fmt.Sprintf("envelope says %q, certificate is %q", env.Sender, kc.id.Name), nil)
	}
	if err := verifySig(env.Alg, kc.cert.PublicKey, env.signed, env.Sig); err != nil {
		return fail(ReasonBadSignature, "", err)
	}
	m.Signer, m.Certificate = kc.id, kc.cert

	// May this signer send this here?
	switch {
	case env.Type == MsgOrder || env.Type == MsgReceipt:
		if kc.id.Role != pki.RoleDispatch {
			return fail(ReasonWrongRole, fmt.Sprintf("%ss come from dispatch, %q is a %s", env.Type, kc.id.Name, kc.id.Role), nil)
		}
	case tp.Kind == KindDispatchStatus:
		if kc.id.Role != pki.RoleDispatch {
			return fail(ReasonWrongRole, fmt.Sprintf("a dispatch status comes from dispatch, %q is a %s", kc.id.Name, kc.id.Role), nil)
		}
		if kc.id.Name != tp.Dispatch {
			return fail(ReasonWrongSender, fmt.Sprintf("%q sent on %q's status topic", kc.id.Name, tp.Dispatch), nil)
		}
	default:
		if kc.id.Role != pki.RoleTruck {
			return fail(ReasonWrongRole, fmt.Sprintf("%s messages come from trucks, %q is a %s", env.Type, kc.id.Name, kc.id.Role), nil)
		}
		if kc.id.Name != tp.Truck {
			return fail(ReasonWrongSender, fmt.Sprintf("%q sent on %q's topic", kc.id.Name, tp.Truck), nil)
		}
	}

	// Is it current?
	if env.Created.After(now.Add(v.cfg.MaxClockSkew)) {
		return fail(ReasonFromFuture, fmt.Sprintf("created %v, now %v", env.Created.Format(time.RFC3339), now.UTC().Format(time.RFC3339)), nil)
	}
	if max := v.cfg.MaxAge.of(env.Type); max > 0 && now.Sub(env.Created) > max {
		return fail(ReasonExpired, fmt.Sprintf("created %v, older than %v", env.Created.Format(time.RFC3339), max), nil)
	}

	if err := m.decodeBody(); err != nil {
		return m, err.(*RejectError), nil
	}
	if o := m.Order; o != nil {
		if o.Truck != tp.Truck || o.ID != tp.Order {
			return fail(ReasonMisaddressed, fmt.Sprintf("order %s for %q on the topic of order %s for %q", o.ID, o.Truck, tp.Order, tp.Truck), nil)
		}
		if !now.Before(o.Expires) {
			return fail(ReasonExpired, fmt.Sprintf("order %s rev %d expired at %v", o.ID, o.Revision, o.Expires.Format(time.RFC3339)), nil)
		}
		// The order's own creation time is dispatch's clock like the envelope's: one further ahead than the
		// allowed skew is refused, so a mis-set or forged clock cannot date an order a year ahead. (Created
		// after Expires never gets here: UnmarshalOrder refuses it as malformed, a body that contradicts
		// itself, whatever the receiver's clock says.)
		if o.Created.After(now.Add(v.cfg.MaxClockSkew)) {
			return fail(ReasonFromFuture, fmt.Sprintf("order %s rev %d created %v, now %v", o.ID, o.Revision,
				o.Created.Format(time.RFC3339), now.UTC().Format(time.RFC3339)), nil)
		}
	}
	if r := m.Receipt; r != nil && r.Truck != tp.Truck {
		return fail(ReasonMisaddressed, fmt.Sprintf("a receipt for %q on %q's topic", r.Truck, tp.Truck), nil)
	}

	// Last, and only for a message that passed everything: has it been delivered before?
	key := StreamKey{Sender: env.Sender, Type: env.Type}
	if m.Status != nil && m.Status.State == StateOffline {
		// The MQTT will is signed at connect and fires maybe days later: in the online statuses' window it
		// would fall behind after a thousand refreshes on one connection. Offline statuses have their own.
		key.Offline = true
	}
	verdict, err := v.cfg.Replay.Check(ctx, key, env.Seq, env.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("sdk: verifier: replay state: %w", err)
	}
	switch verdict {
	case ReplayDuplicate:
		return fail(ReasonDuplicate, fmt.Sprintf("message %s seen before", env.ID), nil)
	case ReplayReused:
		return fail(ReasonReplayed, fmt.Sprintf("sequence number %d already used by another message", env.Seq), nil)
	case ReplayTooOld:
		return fail(ReasonReplayed, fmt.Sprintf("sequence number %d is behind the replay window", env.Seq), nil)
	}
	return m, nil, nil
}

// Stats counts a Verifier's outcomes.
type Stats struct {
	Accepted uint64            `json:"accepted"`
	ByReason map[Reason]uint64 `json:"by_reason"` // rejections and duplicates, per reason; zero counts left out
}

// Rejected is the number of rejections, duplicates not included.
func (s Stats) Rejected() uint64 {
	var n uint64
	for r, c := range s.ByReason {
		if r != ReasonDuplicate {
			n += c
		}
	}
	return n
}

// Stats returns a snapshot of the counters.
func (v *Verifier) Stats() Stats {
	s := Stats{Accepted: v.accepted.Load(), ByReason: make(map[Reason]uint64)}
	for r := Reason(1); r < numReasons; r++ {
		if c := v.counts[r].Load(); c > 0 {
			s.ByReason[r] = c
		}
	}
	return s
}
