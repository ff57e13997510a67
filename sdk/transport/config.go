package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Defaults applied by New to zero Config fields. See doc.go for why each was chosen.
const (
	DefaultKeepAlive         = 60 * time.Second
	DefaultConnectTimeout    = 30 * time.Second
	DefaultBackoffMin        = 1 * time.Second
	DefaultBackoffMax        = 2 * time.Minute
	DefaultSessionExpiry     = 7 * 24 * time.Hour
	DefaultDisconnectTimeout = 3 * time.Second
)

// Config configures a Conn. Every field documents what its zero value means; New applies the defaults to a
// copy, so one Config value may be reused.
type Config struct {
	// Brokers is the ordered list of broker URLs, "mqtts://host:port" or "tls://host:port" (port 8883 when
	// omitted). Each connection attempt tries them in order, so the first one is preferred and the others are
	// fall-backs; after a drop the next attempt starts again at the first. Required.
	Brokers []string

	// AllowPlaintext permits "mqtt://" and "tcp://" URLs (port 1883 when omitted), for local development only:
	// without TLS there is no client certificate, so the broker cannot know who we are. Zero refuses them.
	AllowPlaintext bool

	// ClientID is the MQTT client id. With the fleet's Mosquitto configuration (use_identity_as_username,
	// use_username_as_clientid) it must equal the certificate's Common Name. Required.
	ClientID string

	// CertFile and KeyFile are the PEM client certificate (leaf first, chain may follow) and its private key.
	// They are read again before every TLS handshake, so a renewed certificate written over them is used at
	// the next reconnect without a restart. Zero: no certificate from files (see GetCertificate).
	CertFile, KeyFile string

	// GetCertificate, when set, supplies the client certificate instead of CertFile/KeyFile (a hardware key,
	// a secrets store). It is called once before every TLS handshake with the handshake's context. Zero: use
	// CertFile/KeyFile.
	GetCertificate func(ctx context.Context) (*tls.Certificate, error)

	// CAFile is the PEM file of the fleet CA that must have signed the broker's certificate; it is read again
	// before every handshake. RootCAs may be given instead (or in addition). One of them is required for TLS
	// brokers: the system roots are never trusted implicitly.
	CAFile  string
	RootCAs *x509.CertPool

	// CRLFile is an optional PEM or DER certificate revocation list of the fleet CA, read again before every
	// handshake: a broker certificate it lists is refused. A CRL past its NextUpdate is still applied and
	// logged as stale. Zero: no revocation check of the broker.
	CRLFile string

	// Clock returns the current time used to check certificates (tls.Config.Time) and the CRL. Units without
	// a real-time clock boot in 1970 and would refuse every certificate; the agent passes a clock that falls
	// back to GPS time. Zero: time.Now.
	Clock func() time.Time

	// Username and Password are sent in CONNECT (Mosquitto password_file), for dispatch tools. Only allowed
	// when every broker URL uses TLS. Zero: not sent (the certificate is the identity).
	Username string
	Password []byte

	// KeepAlive is the MQTT keep-alive, rounded to whole seconds (max 65535 s). It keeps cellular NAT
	// mappings alive and bounds how long a dead link goes unnoticed (at most about twice this). Zero:
	// DefaultKeepAlive (60 s). Negative: no keep-alive.
	KeepAlive time.Duration

	// ConnectTimeout bounds one connection attempt to one broker: TCP, TLS handshake and CONNACK. Zero:
	// DefaultConnectTimeout (30 s, several round trips on a congested cellular link).
	ConnectTimeout time.Duration

	// BackoffMin and BackoffMax bound the jittered exponential wait between connection attempts (after a
	// failed round over all brokers the wait doubles up to BackoffMax; each wait is random in [d/2, d]). A
	// drop is followed by a random wait in [0, BackoffMin] so a fleet does not reconnect in lock-step after a
	// broker restart. Zero: DefaultBackoffMin (1 s) and DefaultBackoffMax (2 min).
	BackoffMin, BackoffMax time.Duration
	// ReconnectWindow spreads reconnections after a drop: the first attempt comes after a random wait in
	// [0, ReconnectWindow]. A broker restart drops every client at once, and Mosquitto (single-threaded,
	// about 1.1 ms of CPU per TLS handshake, a listen backlog of 100) times out attempts that arrive
	// together. Zero: BackoffMin. The agent's default is 30 s (its broker.reconnect_window).
	ReconnectWindow time.Duration
	// ReceiveMaximum is this client's Receive Maximum (MQTT v5 CONNECT): how many QoS 1 messages the broker
	// may send before this client acknowledges one. paho allocates a channel of that many messages per
	// connection: the MQTT default 65535 costs about 512 kB. Zero: 65535 (dispatch, which receives the
	// fleet); the truck client sets a small one (orders and receipts are rare).
	ReceiveMaximum uint16

	// SessionExpiry is the MQTT v5 session expiry interval sent in CONNECT, rounded to seconds: how long the
	// broker keeps our subscriptions and queued QoS 1 messages (orders) while we are offline. Zero:
	// DefaultSessionExpiry (7 days); the broker may lower it. Negative: the session ends with the connection.
	SessionExpiry time.Duration

	// CleanStart discards the broker's session on the first connection after New. Zero (false): resume it,
	// so orders queued for us while this process was not running are delivered. Reconnections never use
	// clean start.
	CleanStart bool

	// Will is published by the broker when the connection ends without a DISCONNECT (power loss, dead link).
	// Zero (nil): no will.
	Will *Will

	// Subscriptions are (re-)established after every successful connection, before OnConnect runs.
	// Zero: none.
	Subscriptions []Subscription

	// OnPublish handles every message received on the subscriptions. The PUBLISH is acknowledged only when it
	// returns nil; see doc.go for what happens to one that is not. ctx ends when the connection or Run ends.
	// It runs on paho's single delivery goroutine: a slow handler delays the next message. Zero (nil):
	// received messages are logged and not acknowledged (never silently acknowledged and lost).
	OnPublish func(ctx context.Context, m Message) error

	// OnConnect runs after every successful connection and after the subscriptions were made, in its own
	// goroutine owned by Run; ctx ends when that connection or Run ends. The truck publishes its retained
	// online status here. Zero (nil): nothing.
	OnConnect func(ctx context.Context, info ConnectInfo)

	// DisconnectTimeout bounds the clean DISCONNECT when Run's context ends. Zero: DefaultDisconnectTimeout (3 s).
	DisconnectTimeout time.Duration

	// DisableCoalescing writes each part of an MQTT packet separately to TLS (paho's behaviour: about three
	// TLS records per PUBLISH). Only for measuring the difference. Zero (false): one write per packet.
	DisableCoalescing bool

	// Logger receives connection events and paho's errors. Zero (nil): discard.
	Logger *slog.Logger

	// LogPahoDebug also routes paho's debug log to Logger at Debug level (very chatty). Zero: off.
	LogPahoDebug bool
}

// Will is the message the broker publishes for us when the connection ends abruptly. It is sent with QoS 1.
type Will struct {
	Topic   string
	Payload []byte
	Retain  bool
	// Delay postpones the will (MQTT v5 Will Delay Interval, whole seconds): a reconnect within it cancels
	// the will. Zero: published at once.
	Delay time.Duration
	// Refresh, if set, is called before every connection attempt and its result replaces Payload: a signed
	// will carries its creation time and a sequence number, which receivers check, so it must be signed anew
	// for each connection rather than once at start-up. An error fails that attempt (retried with backoff).
	Refresh func() ([]byte, error)
}

// Subscription is one topic filter subscribed at every connect.
type Subscription struct {
	Topic string // filter; "$share/<group>/<filter>" for a shared subscription
	QoS   byte   // maximum QoS; zero: QoS 0 (use 1 for orders)
	// Required drops a connection on which the broker refused this subscription, and tries again with
	// backoff (growing while it goes on refusing): a client that cannot receive what it exists to receive
	// is not connected in any useful sense. A revoked identity that reconnects before the broker reloads
	// its CRL is let in by the TLS listener and refused every topic by the access rules; without this it
	// would stay there, reported as connected. Zero: the refusal is logged and reported in
	// ConnectInfo.SubscribeErr, and the connection stays up.
	Required bool
}

// Message is a PUBLISH received from the broker.
type Message struct {
	Topic    string
	Payload  []byte
	QoS      byte
	Retained bool // delivered from the broker's retained store, not live
}

// PublishOptions are per-publish settings.
type PublishOptions struct {
	// QoS is 0, 1 or 2. Zero: QoS 0 (at most once; Publish returns once the packet is written). Use 1 for
	// anything that must arrive: Publish then returns after the broker's PUBACK.
	QoS byte
	// Retain asks the broker to keep the message as the topic's last known value. Zero: not retained.
	Retain bool
}

// ConnectInfo describes a successful connection, given to OnConnect and carried in State.
type ConnectInfo struct {
	Broker         string // URL of the broker in use
	SessionPresent bool   // the broker resumed our session (subscriptions and queued messages kept)
	// ReceiveMaximum is the broker's receive maximum: how many QoS 1/2 publishes may be awaiting their
	// acknowledgement at once (Mosquitto: max_inflight_messages). Publish calls beyond it wait for a slot.
	ReceiveMaximum uint16
	TLSVersion     uint16 // tls.VersionTLS12 or tls.VersionTLS13; 0 over plaintext
	TLSResumed     bool   // the TLS session was resumed (shorter handshake)
	// CertSerial is the serial number of the client certificate presented in this handshake ("" if none).
	CertSerial string
	// SubscribeErr is why a Config.Subscriptions entry was refused (a SUBACK reason code >= 128, or the
	// SUBSCRIBE failed); nil when all were granted. The connection stays up either way, unless
	// the subscription is Required (then it is the reason the connection was dropped).
	SubscribeErr error
}

type brokerURL struct {
	url   *url.URL
	plain bool
}

// parseBrokers validates the broker list and fills in default ports.
func (cfg *Config) parseBrokers() ([]brokerURL, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("transport: Config.Brokers is empty: give at least one mqtts://host:port URL")
	}
	out := make([]brokerURL, 0, len(cfg.Brokers))
	for _, s := range cfg.Brokers {
		if !strings.Contains(s, "://") {
			// "127.0.0.1:8883" fails to parse and "broker:8883" parses as scheme "broker": say what to write.
			return nil, fmt.Errorf("transport: broker URL %q has no scheme: write mqtts://%s (TLS, port 8883 when omitted)",
				s, s)
		}
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("transport: broker URL %q: %w", s, err)
		}
		if u.Hostname() == "" {
			return nil, fmt.Errorf("transport: broker URL %q has no host (want mqtts://host:port)", s)
		}
		var plain bool
		port := "8883"
		switch strings.ToLower(u.Scheme) {
		case "mqtts", "tls", "ssl":
		case "mqtt", "tcp":
			if !cfg.AllowPlaintext {
				return nil, fmt.Errorf("transport: broker URL %q is plaintext MQTT: without TLS there is no "+
					"client certificate, so the broker cannot tell who we are and anyone on the path can read and "+
					"alter messages; use mqtts://, or, for local development only, allow plaintext: "+
					"broker.allow_plaintext = true in the agent's config, --allow-plaintext on the waybill command "+
					"line, Config.AllowPlaintext in Go", s)
			}
			plain, port = true, "1883"
		default:
			return nil, fmt.Errorf("transport: broker URL %q: unsupported scheme %q (want mqtts:// or tls://)",
				s, u.Scheme)
		}
		if u.Port() == "" {
			u.Host = u.Hostname() + ":" + port
			if strings.Contains(u.Hostname(), ":") { // IPv6 literal
				u.Host = "[" + u.Hostname() + "]:" + port
			}
		}
		out = append(out, brokerURL{url: u, plain: plain})
	}
	return out, nil
}

// withDefaults validates cfg and returns a copy with defaults applied.
func (cfg Config) withDefaults() (Config, []brokerURL, error) {
	brokers, err := cfg.parseBrokers()
	if err != nil {
		return cfg, nil, err
	}
	if cfg.ClientID == "" {
		return cfg, nil, errors.New("transport: Config.ClientID is empty: it must be the certificate's Common Name")
	}
	anyTLS, anyPlain := false, false
	for _, b := range brokers {
		anyTLS = anyTLS || !b.plain
		anyPlain = anyPlain || b.plain
	}
	if (cfg.Username != "" || len(cfg.Password) > 0) && anyPlain {
		return cfg, nil, errors.New("transport: Username/Password are only sent over TLS, " +
			"and a broker URL is plaintext: the password would cross the network in clear")
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return cfg, nil, errors.New("transport: set both Config.CertFile and Config.KeyFile, or neither")
	}
	if anyTLS {
		if cfg.CAFile == "" && cfg.RootCAs == nil {
			return cfg, nil, errors.New("transport: no CA to verify the broker: set Config.CAFile to the fleet CA")
		}
		if cfg.CertFile == "" && cfg.GetCertificate == nil && cfg.Username == "" {
			return cfg, nil, errors.New("transport: no client identity: set Config.CertFile and Config.KeyFile " +
				"(or GetCertificate), or Username/Password")
		}
	}
	if cfg.Will != nil && cfg.Will.Topic == "" {
		return cfg, nil, errors.New("transport: Config.Will has no Topic")
	}
	for _, s := range cfg.Subscriptions {
		if s.Topic == "" || s.QoS > 2 {
			return cfg, nil, fmt.Errorf("transport: bad subscription %+v: want a topic filter and QoS 0-2", s)
		}
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = cfg.BackoffMin
	}
	if cfg.SessionExpiry == 0 {
		cfg.SessionExpiry = DefaultSessionExpiry
	}
	if cfg.DisconnectTimeout <= 0 {
		cfg.DisconnectTimeout = DefaultDisconnectTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, brokers, nil
}

// seconds converts d to whole seconds for an MQTT field of the given maximum; negative means 0.
func seconds(d time.Duration, max uint64) uint64 {
	if d <= 0 {
		return 0
	}
	s := uint64((d + time.Second/2) / time.Second)
	if s == 0 {
		s = 1
	}
	return min(s, max)
}
