package transport

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// dial opens one connection to one broker: TCP, the byte counter, TLS, the packet coalescer.
func (c *Conn) dial(ctx context.Context, b brokerURL) (*link, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", b.url.Host)
	if err != nil {
		return nil, dialError(b, err)
	}
	var nc net.Conn = &countingConn{Conn: raw, read: &c.wireRead, written: &c.wireWritten}
	info := ConnectInfo{Broker: b.url.String()}
	if !b.plain {
		tcfg, cert, err := c.tlsConfig(ctx, b.url.Hostname())
		if err != nil {
			_ = raw.Close()
			return nil, err
		}
		tc := tls.Client(nc, tcfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, handshakeError(b, err)
		}
		st := tc.ConnectionState()
		info.TLSVersion, info.TLSResumed = st.Version, st.DidResume
		if st.DidResume {
			c.resumed.Add(1)
		}
		if cert != nil && cert.Leaf != nil {
			info.CertSerial = cert.Leaf.SerialNumber.String()
		}
		nc = tc
	}
	l := newLink(c.linkParent(), nc, !c.cfg.DisableCoalescing)
	l.published = c.publishWritten
	l.info = info
	c.mu.Lock()
	c.cur = l
	c.mu.Unlock()
	return l, nil
}

// tlsConfig builds the TLS configuration for one handshake. The certificate, CA and CRL files are read now,
// so files replaced on disk take effect at the next connection without a restart.
func (c *Conn) tlsConfig(ctx context.Context, serverName string) (*tls.Config, *tls.Certificate, error) {
	cert, err := c.loadCertificate(ctx)
	if err != nil {
		return nil, nil, err
	}
	roots := c.cfg.RootCAs
	if c.cfg.CAFile != "" {
		pemBytes, err := os.ReadFile(c.cfg.CAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("reading CA file: %w", err)
		}
		if roots == nil {
			roots = x509.NewCertPool()
		} else {
			roots = roots.Clone()
		}
		if !roots.AppendCertsFromPEM(pemBytes) {
			return nil, nil, fmt.Errorf("CA file %s holds no PEM certificate", c.cfg.CAFile)
		}
	}
	var crl *x509.RevocationList
	if c.cfg.CRLFile != "" {
		if crl, err = pki.LoadCRL(c.cfg.CRLFile); err != nil {
			return nil, nil, err
		}
	}
	// The session cache is keyed by the client certificate too: a resumed TLS session skips the client
	// certificate, so after a renewal the broker would go on seeing the old one.
	prefix := "none|"
	if cert != nil && len(cert.Certificate) > 0 {
		sum := sha256.Sum256(cert.Certificate[0])
		prefix = hex.EncodeToString(sum[:8]) + "|"
	}
	tcfg := &tls.Config{
		MinVersion: tls.VersionTLS12, // 1.3 is preferred by crypto/tls whenever the broker offers it
		ServerName: serverName,
		RootCAs:    roots,
		Time:       c.cfg.Clock,
		// X25519 and P-256 only: Go's default also offers a hybrid post-quantum key share, about 1.2 KB more per
		// full handshake on a metered link, which Mosquitto's OpenSSL does not use.
		CurvePreferences:   []tls.CurveID{tls.X25519, tls.CurveP256},
		ClientSessionCache: prefixedCache{inner: c.sessionCache, prefix: prefix},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cert == nil {
				return &tls.Certificate{}, nil // none: the broker decides (password login)
			}
			return cert, nil
		},
	}
	if crl != nil {
		tcfg.VerifyConnection = func(cs tls.ConnectionState) error { return c.checkCRL(crl, cs) }
	}
	return tcfg, cert, nil
}

func (c *Conn) loadCertificate(ctx context.Context) (*tls.Certificate, error) {
	var cert *tls.Certificate
	switch {
	case c.cfg.GetCertificate != nil:
		got, err := c.cfg.GetCertificate(ctx)
		if err != nil {
			return nil, fmt.Errorf("getting client certificate: %w", err)
		}
		cert = got
	case c.cfg.CertFile != "":
		kp, err := tls.LoadX509KeyPair(c.cfg.CertFile, c.cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading client certificate %s / key %s: %w", c.cfg.CertFile, c.cfg.KeyFile, err)
		}
		cert = &kp
	default:
		return nil, nil
	}
	if cert == nil || len(cert.Certificate) == 0 {
		return nil, errors.New("client certificate is empty")
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("parsing client certificate: %w", err)
		}
		cert.Leaf = leaf
	}
	if now := c.cfg.Clock(); now.After(cert.Leaf.NotAfter) {
		c.cfg.Logger.Warn("client certificate has expired; the broker will refuse it",
			"serial", cert.Leaf.SerialNumber.String(), "not_after", cert.Leaf.NotAfter)
	}
	return cert, nil
}

// checkCRL refuses a broker certificate listed in crl. It runs after the chain was verified (also on a
// resumed session), so VerifiedChains holds the issuer.
func (c *Conn) checkCRL(crl *x509.RevocationList, cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) < 2 {
		return errors.New("transport: cannot check the broker against the CRL: no verified chain")
	}
	leaf, issuer := cs.VerifiedChains[0][0], cs.VerifiedChains[0][1]
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("transport: CRL is not signed by the broker certificate's issuer %q: %w",
			issuer.Subject.CommonName, err)
	}
	if !crl.NextUpdate.IsZero() && c.cfg.Clock().After(crl.NextUpdate) {
		c.cfg.Logger.Warn("CRL is stale (past its next update); applying it anyway", "next_update", crl.NextUpdate)
	}
	for _, rc := range crl.RevokedCertificateEntries {
		if rc.SerialNumber != nil && rc.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
			return fmt.Errorf("transport: broker certificate %q (serial %s) is revoked",
				leaf.Subject.CommonName, leaf.SerialNumber)
		}
	}
	return nil
}

// prefixedCache partitions a TLS session cache by client certificate.
type prefixedCache struct {
	inner  tls.ClientSessionCache
	prefix string
}

func (p prefixedCache) Get(key string) (*tls.ClientSessionState, bool) {
	return p.inner.Get(p.prefix + key)
}
func (p prefixedCache) Put(key string, cs *tls.ClientSessionState) { p.inner.Put(p.prefix+key, cs) }
