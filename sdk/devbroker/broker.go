package devbroker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/waybill-iot/waybill/sdk/brokerconf"
	"github.com/waybill-iot/waybill/sdk/pki"
)

// DefaultAddr is the listen address when Config.Addr is empty: loopback only, it is a development broker.
const DefaultAddr = "127.0.0.1:8883"

// Config configures a development broker. Zero values are documented per field.
type Config struct {
	// Addr is the TCP address to listen on; "" means DefaultAddr. Port 0 picks a free port (see Addr()).
	Addr string
	// CAFile, CertFile, KeyFile and CRLFile are the fleet CA, the broker's certificate and key (0600), and
	// the CRL; all required (FromPKI fills them). The CRL is re-read when the file changes, without a
	// restart (Mosquitto needs SIGHUP).
	CAFile, CertFile, KeyFile, CRLFile string
	// ACL holds the topic prefix; the rules are brokerconf's, the same as the Mosquitto ACL's.
	ACL brokerconf.ACL
	// ReceiveMaximum is the in-flight window announced to clients; zero means brokerconf.DefaultMaxInflight,
	// like the generated mosquitto.conf.
	ReceiveMaximum int
	// MaxQueued bounds the QoS 1/2 messages stored per client; zero means brokerconf.DefaultMaxQueued.
	MaxQueued int
	// MaxPacketSize zero means brokerconf.DefaultMaxPacketSize.
	MaxPacketSize int
	// Now is the clock for certificate and CRL checks; nil means time.Now.
	Now func() time.Time
	// Logger receives connection refusals and ACL denials; nil discards.
	Logger *slog.Logger
}

// FromPKI returns a Config using the PKI directory's CA and CRL and the broker certificate name ("" means
// the only broker certificate issued).
func FromPKI(p *pki.PKI, name string) (Config, error) {
	if name == "" {
		brokers, err := p.Names(pki.RoleBroker)
		if err != nil {
			return Config{}, err
		}
		switch len(brokers) {
		case 0:
			return Config{}, fmt.Errorf("devbroker: no broker certificate in %s: run `waybill pki issue --role broker NAME` first", p.Dir())
		case 1:
			name = brokers[0]
		default:
			return Config{}, fmt.Errorf("devbroker: several broker certificates in %s (%v): pick one by name", p.Dir(), brokers)
		}
	}
	return Config{CAFile: p.CAPath(), CertFile: p.CertPath(name), KeyFile: p.KeyPath(name), CRLFile: p.CRLPath()}, nil
}

// Broker is a development MQTT v5 broker with the fleet's mutual TLS and ACL.
type Broker struct {
	cfg    Config
	log    *slog.Logger
	roots  *x509.CertPool
	crl    crlCache
	server *mqtt.Server
	ln     *tlsListener
}

// New checks cfg and loads the certificates; it does not touch the network.
func New(cfg Config) (*Broker, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.ReceiveMaximum == 0 {
		cfg.ReceiveMaximum = brokerconf.DefaultMaxInflight
	}
	if cfg.MaxQueued == 0 {
		cfg.MaxQueued = brokerconf.DefaultMaxQueued
	}
	if cfg.MaxPacketSize == 0 {
		cfg.MaxPacketSize = brokerconf.DefaultMaxPacketSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ReceiveMaximum < 1 || cfg.ReceiveMaximum > 65535 || cfg.MaxQueued < 1 || cfg.MaxQueued > 65535 {
		return nil, errors.New("devbroker: receive maximum and max queued must be 1-65535")
	}
	if err := cfg.ACL.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for _, f := range []string{cfg.CAFile, cfg.CertFile, cfg.KeyFile, cfg.CRLFile} {
		if f == "" {
			return nil, errors.New("devbroker: CAFile, CertFile, KeyFile and CRLFile are required")
		}
	}
	roots, err := pki.LoadCertPool(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	pair, err := pki.LoadKeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	if _, err := (pki.Verifier{Roots: roots}).Verify(pair.Leaf, nil, cfg.Now(), x509.ExtKeyUsageServerAuth); err != nil {
		return nil, fmt.Errorf("devbroker: broker certificate: %w", err)
	}
	b := &Broker{cfg: cfg, log: log, roots: roots, crl: crlCache{path: cfg.CRLFile}}
	if _, err := b.crl.get(); err != nil {
		return nil, err
	}
	if err := pki.CheckCRLFile(cfg.CRLFile, cfg.Now(), 0); err != nil {
		if errors.Is(err, pki.ErrCRLStale) {
			log.Error("stale CRL: every client will be refused, like Mosquitto does", "error", err)
		} else {
			log.Warn("CRL", "error", err)
		}
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.ReceiveMaximum = uint16(cfg.ReceiveMaximum)
	caps.MaximumInflight = uint16(cfg.MaxQueued)
	caps.MaximumPacketSize = uint32(cfg.MaxPacketSize)
	caps.MaximumMessageExpiryInterval = 0 // like Mosquitto: messages expire only when the publisher says so
	caps.MaximumSessionExpiryInterval = uint32(brokerconf.DefaultSessionExpiry / time.Second)
	caps.MinimumProtocolVersion = 4 // MQTT 3.1.1 and 5
	b.server = mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 log,
		SysTopicResendInterval: 3600,
	})
	if err := b.server.AddHook(&hook{b: b}, nil); err != nil {
		return nil, fmt.Errorf("devbroker: %w", err)
	}
	b.ln = &tlsListener{
		id:   "mtls",
		log:  log,
		conn: make(map[net.Conn]struct{}),
		tlsCfg: &tls.Config{
			MinVersion:       tls.VersionTLS12,
			Certificates:     []tls.Certificate{pair},
			ClientAuth:       tls.RequireAndVerifyClientCert,
			ClientCAs:        roots,
			VerifyConnection: b.verifyClient,
			CipherSuites: []uint16{ // TLS 1.2 only; the same as the generated mosquitto.conf
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
				tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
				tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			},
			Time: cfg.Now,
		},
	}
	return b, nil
}

// verifyClient runs after Go has verified the chain against the fleet CA (with clientAuth usage): it adds
// the CRL and the identity rules.
func (b *Broker) verifyClient(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no client certificate")
	}
	crl, err := b.crl.get()
	if err != nil {
		return err
	}
	v := pki.Verifier{Roots: b.roots, CRL: crl}
	_, err = v.Verify(cs.PeerCertificates[0], cs.PeerCertificates[1:], b.cfg.Now(), x509.ExtKeyUsageClientAuth)
	return err
}

// Listen binds the listen address. After it, Addr reports the address.
func (b *Broker) Listen() error {
	if b.ln.ln != nil {
		return errors.New("devbroker: already listening")
	}
	ln, err := net.Listen("tcp", b.cfg.Addr)
	if err != nil {
		return fmt.Errorf("devbroker: %w", err)
	}
	b.ln.ln = ln
	if err := b.server.AddListener(b.ln); err != nil {
		ln.Close()
		return fmt.Errorf("devbroker: %w", err)
	}
	return nil
}

// Addr returns the bound address (nil before Listen).
func (b *Broker) Addr() net.Addr {
	if b.ln.ln == nil {
		return nil
	}
	return b.ln.ln.Addr()
}

// Serve runs the broker until ctx ends, then disconnects every client and returns once every goroutine
// has stopped. Listen must have been called.
func (b *Broker) Serve(ctx context.Context) error {
	if b.ln.ln == nil {
		return errors.New("devbroker: Serve before Listen")
	}
	if err := b.server.Serve(); err != nil {
		b.ln.Close(func(string) {})
		return fmt.Errorf("devbroker: %w", err)
	}
	b.log.Info("development broker listening", "addr", b.Addr().String())
	<-ctx.Done()
	b.server.Close()
	return nil
}

// Run is Listen followed by Serve.
func (b *Broker) Run(ctx context.Context) error {
	if err := b.Listen(); err != nil {
		return err
	}
	return b.Serve(ctx)
}

// revoked reports whether the client's certificate is on the current CRL. It runs for every publish,
// subscription and delivery: one stat of the file (re-read only when it changed) and a set lookup.
func (b *Broker) revoked(cl *mqtt.Client) bool {
	ic, ok := cl.Net.Conn.(*identConn)
	if !ok || ic.cert == nil {
		return false
	}
	serials, err := b.crl.revokedSerials()
	if err != nil {
		return false // the file is being replaced: the connect-time check stays
	}
	return serials[ic.cert.SerialNumber.String()]
}

// crlCache re-reads the CRL file when its size or modification time changes.
type crlCache struct {
	path    string
	mu      sync.Mutex // guards the fields below
	mod     time.Time
	size    int64
	crl     *x509.RevocationList
	serials map[string]bool // of crl's revoked certificates
}

func (c *crlCache) get() (*x509.RevocationList, error) {
	fi, err := os.Stat(c.path)
	if err != nil {
		return nil, fmt.Errorf("devbroker: CRL: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crl != nil && fi.ModTime().Equal(c.mod) && fi.Size() == c.size {
		return c.crl, nil
	}
	crl, err := pki.LoadCRL(filepath.Clean(c.path))
	if err != nil {
		return nil, err
	}
	serials := make(map[string]bool, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		serials[e.SerialNumber.String()] = true
	}
	c.crl, c.mod, c.size, c.serials = crl, fi.ModTime(), fi.Size(), serials
	return crl, nil
}

// revokedSerials returns the serial numbers the current CRL revokes.
func (c *crlCache) revokedSerials() (map[string]bool, error) {
	if _, err := c.get(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.serials, nil
}
