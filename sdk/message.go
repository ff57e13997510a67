package sdk

import (
	"crypto/sha256"
	"crypto/x509"
	"fmt"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// Message is a decoded message: its envelope, the topic it came on, and its body. Verify fills Signer and
// Certificate; DecodeMessage, which checks nothing but structure, leaves them zero.
type Message struct {
	Envelope
	Topic       Topic             // zero when decoded without a topic
	Signer      pki.Identity      // the verified signer
	Certificate *x509.Certificate // the signer's certificate, verified to the fleet CA

	// Exactly one body is set, by Type.
	Order     *Order
	Event     *Event
	Status    *Status
	Telemetry *Telemetry
	Receipt   *Receipt
}

// DecodeMessage parses an envelope and its body without verifying the signature or anything else: for
// tools that show messages to people. Errors are *RejectError. It never panics, whatever the input.
func DecodeMessage(b []byte) (*Message, error) {
	env, err := DecodeEnvelope(b)
	if err != nil {
		return nil, err
	}
	m := &Message{Envelope: *env}
	if err := m.decodeBody(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Message) decodeBody() error {
	var err error
	switch m.Type {
	case MsgOrder:
		m.Order, err = UnmarshalOrder(m.Body)
	case MsgEvent:
		m.Event, err = UnmarshalEvent(m.Body)
	case MsgStatus:
		m.Status, err = UnmarshalStatus(m.Body)
	case MsgTelemetry:
		m.Telemetry, err = UnmarshalTelemetry(m.Body)
	case MsgReceipt:
		m.Receipt, err = UnmarshalReceipt(m.Body)
	default:
		err = fmt.Errorf("unknown message type %d", m.Type)
	}
	if err != nil {
		return &RejectError{Reason: ReasonMalformed, Sender: m.Sender, Type: m.Type, Seq: m.Seq, Detail: "body", Err: err}
	}
	return nil
}

// BodyHash is the SHA-256 of the body as signed; for an order, its OrderHash.
func (m *Message) BodyHash() OrderHash { return sha256.Sum256(m.Body) }
