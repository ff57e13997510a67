package sdk

import (
	"fmt"
	"strings"
)

// Reason says why a message was not accepted. Every value is also an error, so
// errors.Is(err, sdk.ReasonReplayed) matches a *RejectError with that reason.
type Reason uint8

const (
	_                        Reason = iota
	ReasonMalformed                 // not a well-formed envelope or body
	ReasonUnsupportedVersion        // an envelope format version this code does not know
	ReasonTooLarge                  // larger than the receiver's limit
	ReasonBadTopic                  // the topic is not one of design.md's topics under the configured prefix
	ReasonUnsigned                  // the envelope carries no signature
	ReasonBadSignature              // the signature does not verify: altered, or signed by another key
	ReasonUnknownSigner             // no certificate known for the key id, and none carried
	ReasonUntrustedCert             // the certificate does not chain to the fleet CA, is expired or not for clientAuth
	ReasonRevoked                   // the signer's certificate is on the CRL
	ReasonWrongRole                 // e.g. an order signed by a truck certificate
	ReasonWrongSender               // sender is not the certificate's identity, or not the truck the topic names
	ReasonMisaddressed              // message type or body does not match the topic (e.g. an order for another truck)
	ReasonExpired                   // older than the type's maximum age, or an order past its expiry
	ReasonFromFuture                // created further in the future than the allowed clock skew
	ReasonReplayed                  // a sequence number already used or too old for the replay window
	ReasonDuplicate                 // the same message (same id) again: expected with at-least-once delivery
	numReasons
)

var reasonNames = [...]string{
	ReasonMalformed:          "malformed",
	ReasonUnsupportedVersion: "unsupported version",
	ReasonTooLarge:           "too large",
	ReasonBadTopic:           "bad topic",
	ReasonUnsigned:           "unsigned",
	ReasonBadSignature:       "bad signature",
	ReasonUnknownSigner:      "unknown signer",
	ReasonUntrustedCert:      "untrusted certificate",
	ReasonRevoked:            "revoked",
	ReasonWrongRole:          "wrong role",
	ReasonWrongSender:        "wrong sender",
	ReasonMisaddressed:       "misaddressed",
	ReasonExpired:            "expired",
	ReasonFromFuture:         "from the future",
	ReasonReplayed:           "replayed",
	ReasonDuplicate:          "duplicate",
}

// Reasons lists every reason, in order.
func Reasons() []Reason {
	rs := make([]Reason, 0, numReasons-1)
	for r := Reason(1); r < numReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

func (r Reason) String() string {
	if r > 0 && r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

func (r Reason) Error() string { return "sdk: " + r.String() }

// MarshalText writes the reason as a snake_case word, for logs and JSON.
func (r Reason) MarshalText() ([]byte, error) {
	return []byte(strings.ReplaceAll(r.String(), " ", "_")), nil
}

// RejectError is the error for every message a Verifier does not accept.
type RejectError struct {
	Reason Reason
	Topic  string  // the topic the message came on
	Sender string  // the envelope's sender, when it could be decoded
	Type   MsgType // the envelope's type, when it could be decoded
	Seq    uint64  // the envelope's sequence number, when it could be decoded
	Detail string  // what exactly was wrong, for people
	Err    error   // the underlying error, if any (x509, cbor...)
}

func (e *RejectError) Error() string {
	var b strings.Builder
	b.WriteString("sdk: message rejected: ")
	b.WriteString(e.Reason.String())
	if e.Sender != "" || e.Type != 0 {
		fmt.Fprintf(&b, " (%s from %q seq %d)", e.Type, e.Sender, e.Seq)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *RejectError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ReasonX) true for a rejection with that reason.
func (e *RejectError) Is(target error) bool {
	r, ok := target.(Reason)
	return ok && r == e.Reason
}

func reject(r Reason, detail string, err error) *RejectError {
	return &RejectError{Reason: r, Detail: detail, Err: err}
}
