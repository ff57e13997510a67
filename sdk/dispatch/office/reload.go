package office

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// DefaultCertCheck is how often at most the certificate files are looked at when Config.CertCheck is zero.
const DefaultCertCheck = 5 * time.Second

// watched is a value read from files, read again on use when one of them changed (size, modification
// time or mode), looked at no more than every `every`. A read that fails keeps the old value and is logged once
// per change of the files, so a half-written renewal is retried when its second file lands.
type watched[T any] struct {
	what   string // for the log: "HTTPS certificate"
	files  []string
	read   func() (T, error)
	attrs  func(T) []any // what the log says of a value read
	every  time.Duration
	log    *slog.Logger
	errors *atomic.Uint64 // failed reads

	mu      sync.Mutex // guards the fields below; held while reading, so one handshake reads for all
	cur     T
	stamp   string    // the files' sizes and times at the last read, good or bad
	checked time.Time // the last look
}

// newWatched reads the files once: an error here is the caller's (a service that cannot start).
func newWatched[T any](w *watched[T]) (*watched[T], error) {
	w.stamp = stamp(w.files)
	v, err := w.read()
	if err != nil {
		return nil, err
	}
	w.cur, w.checked = v, time.Now()
	return w, nil
}

// get returns the current value, reading the files again first when they changed.
func (w *watched[T]) get() T {
	w.mu.Lock()
	defer w.mu.Unlock()
	if time.Since(w.checked) < w.every {
		return w.cur
	}
	w.checked = time.Now()
	st := stamp(w.files)
	if st == w.stamp {
		return w.cur
	}
	w.stamp = st
	v, err := w.read()
	if err != nil {
		w.errors.Add(1)
		w.log.Error(w.what+": the changed files do not load; still serving the one read before (fix the files: "+
			"they are read again when they change)", "files", strings.Join(w.files, ", "), "err", err)
		return w.cur
	}
	w.cur = v
	w.log.Info(w.what+": read again after a change", append([]any{"files", strings.Join(w.files, ", ")}, w.attrs(v)...)...)
	return v
}

// stamp is the files' sizes, modification times and modes (a chmod 600 of a refused key is a change), or
// why one cannot be looked at.
func stamp(files []string) string {
	var b strings.Builder
	for _, f := range files {
		fi, err := os.Stat(f) // follows symbolic links: a renewal that moves the link changes the stamp
		if err != nil {
			fmt.Fprintf(&b, "%s: %v;", f, err)
			continue
		}
		fmt.Fprintf(&b, "%s %d %d %v;", f, fi.Size(), fi.ModTime().UnixNano(), fi.Mode())
	}
	return b.String()
}

// readServerCert loads an HTTPS certificate and key, refusing a key file others can read and a certificate
// that has expired (a renewal must not put an older one in place).
func readServerCert(certFile, keyFile string) (*tls.Certificate, error) {
	if err := pki.CheckKeyFile(keyFile); err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if now := time.Now(); now.After(pair.Leaf.NotAfter) {
		return nil, fmt.Errorf("the certificate in %s expired on %s", certFile, pair.Leaf.NotAfter.Format(time.RFC3339))
	}
	return &pair, nil
}

func certAttrs(c *tls.Certificate) []any {
	return []any{"subject", c.Leaf.Subject.CommonName, "serial", c.Leaf.SerialNumber.Text(16),
		"not_after", c.Leaf.NotAfter.Format(time.RFC3339)}
}

// clientCAs are the CAs of the API's client certificates and the TLS configuration that asks for them.
type clientCAs struct {
	certs []*x509.Certificate
	conf  *tls.Config
}

// newClientCAs makes the handshake's configuration for certs from base. Certificates are asked for, not
// required: the public pages and token clients need none. One that is given must chain to certs (else the
// handshake fails); its role and revocation are checked per request (clientAuth).
func newClientCAs(base *tls.Config, certs []*x509.Certificate) clientCAs {
	pool := x509.NewCertPool()
	for _, ca := range certs {
		pool.AddCert(ca)
	}
	c := base.Clone()
	c.ClientCAs, c.ClientAuth, c.GetConfigForClient = pool, tls.VerifyClientCertIfGiven, nil
	return clientCAs{certs: certs, conf: c}
}

func caAttrs(c clientCAs) []any {
	var names []string
	for _, ca := range c.certs {
		names = append(names, ca.Subject.CommonName)
	}
	return []any{"cas", strings.Join(names, ", ")}
}

// setupTLS builds the server's TLS configuration: Config.TLS or the certificate files (read again when
// they change), asking for client certificates of Config.ClientCAs or ClientCAFile (likewise). It reads
// the files once here, so a missing or bad one fails New.
func (s *Service) setupTLS() error {
	cfg := &s.cfg
	if cfg.TLSCertFile == "" && cfg.TLSKeyFile == "" && cfg.TLS == nil {
		return nil
	}
	c := &tls.Config{}
	if cfg.TLS != nil {
		c = cfg.TLS.Clone()
	}
	c.MinVersion = max(c.MinVersion, tls.VersionTLS12)
	if len(c.NextProtos) == 0 {
		c.NextProtos = []string{"h2", "http/1.1"} // as http.Server sets, here so that GetConfigForClient's carry it
	}
	every := cfg.CertCheck
	if every == 0 {
		every = DefaultCertCheck
	}
	if cfg.TLSCertFile != "" {
		w, err := newWatched(&watched[*tls.Certificate]{what: "HTTPS certificate", files: []string{cfg.TLSCertFile, cfg.TLSKeyFile},
			read:  func() (*tls.Certificate, error) { return readServerCert(cfg.TLSCertFile, cfg.TLSKeyFile) },
			attrs: certAttrs, every: every, log: s.log, errors: &s.tlsReloadErrors})
		if err != nil {
			return fmt.Errorf("office: HTTPS certificate %s, key %s: %w", cfg.TLSCertFile, cfg.TLSKeyFile, err)
		}
		s.cert = w
		c.Certificates, c.GetCertificate = nil, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return w.get(), nil }
	}
	switch {
	case cfg.ClientCAFile != "":
		base := c.Clone()
		w, err := newWatched(&watched[clientCAs]{what: "API client CA", files: []string{cfg.ClientCAFile},
			read: func() (clientCAs, error) {
				certs, err := pki.LoadCertificates(cfg.ClientCAFile)
				if err != nil {
					return clientCAs{}, err
				}
				return newClientCAs(base, certs), nil
			},
			attrs: caAttrs, every: every, log: s.log, errors: &s.tlsReloadErrors})
		if err != nil {
			return fmt.Errorf("office: client CA %s: %w", cfg.ClientCAFile, err)
		}
		s.cas = w
		c.ClientAuth = tls.VerifyClientCertIfGiven
		c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return w.get().conf, nil }
	case len(cfg.ClientCAs) > 0:
		c = newClientCAs(c, cfg.ClientCAs).conf
	}
	s.tls = c
	return nil
}

// fleetCAs are the CAs client certificates must chain to; none: the token only.
func (s *Service) fleetCAs() []*x509.Certificate {
	if s.cas != nil {
		return s.cas.get().certs
	}
	return s.cfg.ClientCAs
}
