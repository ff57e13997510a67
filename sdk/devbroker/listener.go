package devbroker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/waybill-iot/waybill/sdk/pki"
)

// handshakeTimeout bounds the TLS handshake and the wait for CONNECT, so a silent TCP connection cannot
// hold a goroutine (mochi sets no deadline until CONNECT has arrived).
const handshakeTimeout = 10 * time.Second

// identConn is an authenticated connection: the identity comes from the verified client certificate and
// is what the hook uses for the username, client id and ACL.
type identConn struct {
	*tls.Conn
	id   pki.Identity
	cert *x509.Certificate // the verified client certificate, checked against the CRL as it changes
}

// tlsListener is a mochi listener that owns its connections: it performs the mutual TLS handshake itself
// (with a timeout), hands only verified connections to mochi, and on Close closes every connection and
// waits for every goroutine it started.
type tlsListener struct {
	id     string
	ln     net.Listener
	tlsCfg *tls.Config
	log    *slog.Logger

	wg   sync.WaitGroup // accept loop and per-connection goroutines
	mu   sync.Mutex     // guards the fields below
	conn map[net.Conn]struct{}
	done bool
}

var _ listeners.Listener = (*tlsListener)(nil)

func (l *tlsListener) ID() string       { return l.id }
func (l *tlsListener) Address() string  { return l.ln.Addr().String() }
func (l *tlsListener) Protocol() string { return "tcp+mtls" }

// Init is called by mochi's AddListener; the socket is already bound.
func (l *tlsListener) Init(*slog.Logger) error { return nil }

// Serve runs the accept loop; mochi calls it in its own goroutine, so the loop registers with wg before
// Close can wait (Broker.Serve calls Close only after mochi's Serve has returned).
func (l *tlsListener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		return
	}
	l.wg.Add(1)
	l.mu.Unlock()
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		if !l.track(c) {
			c.Close()
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer l.untrack(c)
			defer c.Close()
			l.handle(c, establish)
		}()
	}
}

func (l *tlsListener) handle(c net.Conn, establish listeners.EstablishFn) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	tc := tls.Server(c, l.tlsCfg)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		l.log.Info("TLS handshake refused", "remote", c.RemoteAddr().String(), "error", err)
		return
	}
	state := tc.ConnectionState()
	id, err := pki.IdentityOf(state.PeerCertificates[0]) // verified in VerifyConnection
	if err != nil {
		l.log.Info("client refused", "remote", c.RemoteAddr().String(), "error", err)
		return
	}
	// The handshake deadline stays until CONNECT has been read; mochi then sets its keep-alive deadline.
	if err := establish(l.id, &identConn{Conn: tc, id: id, cert: state.PeerCertificates[0]}); err != nil {
		l.log.Debug("client connection ended", "identity", id.Name, "error", err)
	}
}

func (l *tlsListener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return false
	}
	l.conn[c] = struct{}{}
	return true
}

func (l *tlsListener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conn, c)
	l.mu.Unlock()
}

// Close stops accepting, lets mochi disconnect its clients, closes whatever is left and waits.
func (l *tlsListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		return
	}
	l.done = true
	l.mu.Unlock()
	l.ln.Close()
	closeClients(l.id)
	l.mu.Lock()
	for c := range l.conn {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}
