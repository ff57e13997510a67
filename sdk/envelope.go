package sdk

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// FormatVersion is the envelope format this package writes and reads.
const FormatVersion = 1

// MsgType is the envelope's message type.
type MsgType uint8

const (
	_            MsgType = iota
	MsgOrder             // dispatch -> truck: Order
	MsgEvent             // truck -> dispatch: Event
	MsgStatus            // truck -> dispatch: Status
	MsgTelemetry         // truck -> dispatch: Telemetry
	MsgReceipt           // dispatch -> truck: Receipt (records committed at dispatch)
	numMsgTypes
)

var msgTypeNames = [...]string{MsgOrder: "order", MsgEvent: "event", MsgStatus: "status", MsgTelemetry: "telemetry", MsgReceipt: "receipt"}

func (t MsgType) String() string {
	if t > 0 && t < numMsgTypes {
		return msgTypeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

func (t MsgType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// Alg is the signature algorithm, fixed by the signer's certificate key.
type Alg uint8

const (
	_            Alg = iota
	AlgECDSAP256     // ECDSA P-256 with SHA-256, signature r||s, 32 bytes each, low-S
	AlgEd25519       // Ed25519 (pure), 64 bytes
)

func (a Alg) String() string {
	switch a {
	case AlgECDSAP256:
		return "ecdsa-p256-sha256"
	case AlgEd25519:
		return "ed25519"
	}
	return fmt.Sprintf("alg(%d)", uint8(a))
}

func (a Alg) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// MsgID is a sender-unique message id. The same logical message keeps its id when it is sent again, so
// receivers can drop the duplicate: events use their (epoch, record seq), orders their (id, revision)
// (Order.MessageID), telemetry and status a random id.
type MsgID [16]byte

func (id MsgID) String() string { return hex.EncodeToString(id[:]) }

func (id MsgID) MarshalText() ([]byte, error) { return hexText(id[:]), nil }

func hexText(b []byte) []byte {
	out := make([]byte, hex.EncodedLen(len(b)))
	hex.Encode(out, b)
	return out
}

// unhexText decodes text made by hexText into dst, which it must fill exactly.
func unhexText(dst, text []byte) error {
	if hex.DecodedLen(len(text)) != len(dst) {
		return fmt.Errorf("sdk: %d hex digits, want %d", len(text), 2*len(dst))
	}
	_, err := hex.Decode(dst, text)
	return err
}

// UnmarshalText reads the hex form MarshalText writes.
func (id *MsgID) UnmarshalText(b []byte) error { return unhexText(id[:], b) }

// sigLen is the length of both algorithms' signatures.
const sigLen = 64

// signPrefix separates Waybill message signatures from anything else the same key might sign (a TLS
// handshake, a CSR): the signed bytes always start with it.
const signPrefix = "waybill signed message v1\x00"

// Envelope is a decoded message envelope. On the wire it is the CBOR array
//
//	[version, type, sender, id, seq, created, alg, key id, cert, body, signature]
//
// and the signature covers signPrefix followed by the array of the first ten fields exactly as they were
// received (the same bytes as the wire message minus its first byte and its last element), so no field
// can be changed, dropped or moved without breaking it.
type Envelope struct {
	Version uint8     // FormatVersion
	Type    MsgType   // what Body holds
	Sender  string    // the signer's identity (certificate CN)
	ID      MsgID     // sender-unique message id
	Seq     uint64    // per-sender, per-type sequence number, from 1
	Created time.Time // when it was signed, by the sender's clock, to the millisecond
	Alg     Alg       // signature algorithm
	KeyID   pki.KeyID // which certificate signed it
	Cert    []byte    // the signer's certificate (DER), or empty (telemetry leaves it out)
	Body    []byte    // the CBOR body (Order, Event, Status, Telemetry)
	Sig     []byte    // the signature

	signed []byte // what Sig covers
}

// wireEnvelope is the envelope on the wire; unsignedEnvelope is the same without the signature.
type wireEnvelope struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Type    uint8
	Sender  string
	ID      []byte
	Seq     uint64
	Created int64
	Alg     uint8
	KeyID   []byte
	Cert    []byte
	Body    []byte
	Sig     []byte
}

type unsignedEnvelope struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Type    uint8
	Sender  string
	ID      []byte
	Seq     uint64
	Created int64
	Alg     uint8
	KeyID   []byte
	Cert    []byte
	Body    []byte
}

// CBOR array headers for 10 and 11 elements.
const (
	cborArray10 = 0x8a
	cborArray11 = 0x8b
)

// Limits that hold for every envelope, whatever the receiver's size limit.
const (
	maxCertLen = 8 << 10
	maxBodyLen = 1 << 20
)

// DecodeEnvelope parses an envelope without verifying anything but its structure. Errors are *RejectError
// (malformed, unsupported version, unsigned). It never panics, whatever the input.
func DecodeEnvelope(b []byte) (*Envelope, error) {
	// Peek at the version first, so a newer format (which may have another shape) is reported as such.
	if len(b) < 2 || b[0]&0xe0 != 0x80 {
		return nil, reject(ReasonMalformed, "not a CBOR array", nil)
	}
	if b[1] != FormatVersion {
		if b[1] <= 0x17 {
			return nil, reject(ReasonUnsupportedVersion, fmt.Sprintf("format version %d, this code reads %d",
				b[1], FormatVersion), nil)
		}
		return nil, reject(ReasonMalformed, "the first element is not a version number", nil)
	}
	if b[0] != cborArray11 {
		return nil, reject(ReasonMalformed, "envelope is not an array of 11 elements", nil)
	}
	var w wireEnvelope
	if err := decMode.Unmarshal(b, &w); err != nil {
		return nil, reject(ReasonMalformed, "envelope", err)
	}
	e := &Envelope{
		Version: w.Version, Type: MsgType(w.Type), Sender: w.Sender, Seq: w.Seq,
		Created: time.UnixMilli(w.Created).UTC(), Alg: Alg(w.Alg), Cert: w.Cert, Body: w.Body, Sig: w.Sig,
	}
	switch {
	case e.Type == 0 || e.Type >= numMsgTypes:
		return nil, reject(ReasonMalformed, fmt.Sprintf("unknown message type %d", w.Type), nil)
	case len(w.ID) != len(MsgID{}):
		return nil, reject(ReasonMalformed, fmt.Sprintf("message id is %d bytes, want 16", len(w.ID)), nil)
	case len(w.KeyID) != len(pki.KeyID{}):
		return nil, reject(ReasonMalformed, fmt.Sprintf("key id is %d bytes, want 8", len(w.KeyID)), nil)
	case e.Seq == 0:
		return nil, reject(ReasonMalformed, "sequence number 0", nil)
	case len(e.Cert) > maxCertLen || len(e.Body) > maxBodyLen:
		return nil, reject(ReasonMalformed, "certificate or body too long", nil)
	case e.Alg != AlgECDSAP256 && e.Alg != AlgEd25519:
		return nil, reject(ReasonMalformed, fmt.Sprintf("unknown signature algorithm %d", w.Alg), nil)
	case len(e.Sig) == 0:
		return nil, reject(ReasonUnsigned, "no signature", nil)
	case len(e.Sig) != sigLen:
		return nil, reject(ReasonMalformed, fmt.Sprintf("signature is %d bytes, want %d", len(e.Sig), sigLen), nil)
	}
	if err := pki.ValidateName(e.Sender); err != nil {
		return nil, reject(ReasonMalformed, "sender", err)
	}
	copy(e.ID[:], w.ID)
	copy(e.KeyID[:], w.KeyID)
	// The signature is the last element; its preferred encoding is 0x58 0x40 and 64 bytes. Requiring exactly
	// that suffix pins down where the signed part ends.
	sigEnc := append([]byte{0x58, sigLen}, e.Sig...)
	if !bytes.HasSuffix(b, sigEnc) {
		return nil, reject(ReasonMalformed, "signature is not in preferred encoding", nil)
	}
	signed := make([]byte, 0, len(signPrefix)+len(b)-len(sigEnc))
	signed = append(signed, signPrefix...)
	signed = append(signed, cborArray10)
	e.signed = append(signed, b[1:len(b)-len(sigEnc)]...)
	return e, nil
}

// SignedBytes returns the exact bytes the signature covers.
func (e *Envelope) SignedBytes() []byte { return e.signed }

func keyIDOfDER(der []byte) [8]byte {
	sum := sha256.Sum256(der)
	var id [8]byte
	copy(id[:], sum[:8])
	return id
}
