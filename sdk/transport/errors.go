package transport

import (
	"errors"
	"fmt"
)

var (
	// ErrNotConnected is returned by Publish when the link is down at the time of the call (or drops while
	// the call waits for a free slot in the broker's receive window). Nothing was sent; wait with Wait and
	// publish again.
	ErrNotConnected = errors.New("transport: not connected")

	// ErrClosed is returned when Run has ended (or has not started) and by publishes that were waiting for
	// their acknowledgement when it ended. The message may or may not have reached the broker.
	ErrClosed = errors.New("transport: connection closed")

	// ErrSessionLost is returned by a Publish that was waiting for its acknowledgement when the broker answered
	// a reconnect without our session (it restarted without persistence, the session expired, or it was
	// taken over): the broker will never acknowledge it, and the message may or may not have arrived. Publish
	// it again; receivers drop duplicates by id.
	ErrSessionLost = errors.New("transport: broker lost the session: publish again")

	// ErrTooLarge is returned by Publish for a message larger than the broker's maximum packet size (from
	// its CONNACK). Nothing was sent: the broker would drop the connection, and paho would resend the packet
	// after every reconnect.
	ErrTooLarge = errors.New("transport: message too large for the broker")
)

// PublishError is a publish the broker refused: its acknowledgement carried a reason code >= 128. The message
// was not accepted; retrying it unchanged on the same connection gives the same answer.
type PublishError struct {
	Topic      string
	ReasonCode byte   // MQTT v5 reason code, >= 128
	Reason     string // the broker's reason string, often empty
}

func (e *PublishError) Error() string {
	s := fmt.Sprintf("transport: broker refused publish to %q: reason code %d (%s)", e.Topic, e.ReasonCode,
		ReasonName(e.ReasonCode))
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// ReasonName names an MQTT v5 PUBACK/PUBREC/SUBACK reason code.
func ReasonName(code byte) string {
	switch code {
	case 0x00:
		return "success"
	case 0x01:
		return "granted QoS 1"
	case 0x02:
		return "granted QoS 2"
	case 0x10:
		return "no matching subscribers"
	case 0x80:
		return "unspecified error"
	case 0x83:
		return "implementation specific error"
	case 0x87:
		return "not authorized"
	case 0x8F:
		return "topic filter invalid"
	case 0x90:
		return "topic name invalid"
	case 0x91:
		return "packet identifier in use"
	case 0x97:
		return "quota exceeded"
	case 0x99:
		return "payload format invalid"
	case 0x9E:
		return "shared subscriptions not supported"
	case 0xA1:
		return "subscription identifiers not supported"
	case 0xA2:
		return "wildcard subscriptions not supported"
	}
	return "unknown reason code"
}

// disconnectReason names an MQTT v5 DISCONNECT reason code sent by a broker.
func disconnectReason(code byte) string {
	switch code {
	case 0x00:
		return "normal disconnection"
	case 0x80:
		return "unspecified error"
	case 0x81:
		return "malformed packet"
	case 0x82:
		return "protocol error"
	case 0x83:
		return "implementation specific error"
	case 0x87:
		return "not authorized"
	case 0x89:
		return "server busy"
	case 0x8B:
		return "server shutting down"
	case 0x8D:
		return "keep alive timeout"
	case 0x8E:
		return "session taken over"
	case 0x93:
		return "receive maximum exceeded"
	case 0x95:
		return "packet too large"
	case 0x96:
		return "message rate too high"
	case 0x97:
		return "quota exceeded"
	case 0x98:
		return "administrative action"
	case 0x9C:
		return "use another server"
	case 0x9D:
		return "server moved"
	}
	return "unknown reason code"
}
