package transport

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
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

// dialError says which broker could not be reached and what to look at. The agent logs it and waybill
// prints it as the reason an order is not sent yet, so it must point the operator somewhere useful; the
// underlying error stays wrapped.
func dialError(b brokerURL, err error) error {
	var dns *net.DNSError
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return &brokerError{msg: fmt.Sprintf("broker %s: connection refused — is Mosquitto running and listening on "+
			"port %s? (`systemctl status mosquitto`)", b.url, b.url.Port()), err: err}
	case errors.As(err, &dns):
		return &brokerError{msg: fmt.Sprintf("broker %s: host %q not found — is the name right and DNS reachable?",
			b.url, b.url.Hostname()), err: err}
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return &brokerError{msg: fmt.Sprintf("broker %s: no route to the host — is the network up?", b.url), err: err}
	case errors.As(err, &ne) && ne.Timeout():
		return &brokerError{msg: fmt.Sprintf("broker %s: no answer — is the address right, the network up and port %s "+
			"open?", b.url, b.url.Port()), err: err}
	}
	return &brokerError{msg: fmt.Sprintf("broker %s: %v", b.url, err), err: err}
}

// brokerError is a failed connection attempt explained for people. Its message is complete on its own
// (autopaho's "failed to connect to URL:" prefix is dropped by Conn); the cause stays available to
// errors.Is and errors.As.
type brokerError struct {
	msg string
	err error
}

func (e *brokerError) Error() string { return e.msg }
func (e *brokerError) Unwrap() error { return e.err }

// handshakeError explains a failed TLS handshake. A broker certificate that does not name the host we
// dialled is the common mistake of a new install (the broker was issued for its DNS name, the operator
// types its IP address): the broker only sees the alert, so its log says nothing useful, and the fix is
// on the PKI host.
func handshakeError(b brokerURL, err error) error {
	var he x509.HostnameError
	if errors.As(err, &he) && he.Certificate != nil {
		names := append([]string(nil), he.Certificate.DNSNames...)
		for _, ip := range he.Certificate.IPAddresses {
			names = append(names, ip.String())
		}
		have := "no host names at all"
		if len(names) > 0 {
			have = strings.Join(names, ", ")
		}
		name := he.Certificate.Subject.CommonName
		if name == "" {
			name = "NAME"
		}
		return &brokerError{msg: fmt.Sprintf("TLS handshake with %s: the broker certificate is for %s; you connected "+
			"to %s: reissue it with `waybill pki issue --role broker --host %s %s` (then install it on the broker and "+
			"restart it), or connect to one of those names", b.url.Host, have, he.Host, he.Host, name), err: err}
	}
	return &brokerError{msg: fmt.Sprintf("TLS handshake with %s: %v", b.url.Host, err), err: err}
}
