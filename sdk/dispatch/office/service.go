package office

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
	"github.com/waybill-iot/waybill/sdk/pki"
)

// DefaultListen is the HTTP address when Config.Listen is empty: loopback only.
const DefaultListen = "127.0.0.1:8470"

// The HTTP server's timeouts when Config leaves them zero.
const (
	DefaultReadTimeout  = 30 * time.Second
	DefaultIdleTimeout  = 60 * time.Second
	DefaultWriteTimeout = 5 * time.Minute
)

// Config configures a Service.
type Config struct {
	// Store is the office storage. Required; the caller closes it after Run returned.
	Store storage.Store
	// Dispatch configures the MQTT client: Transport, Topics, ShareGroup, CA / Verifier, Certificates,
	// ReceiptDelay. Record, Outbox and Handle are set by the service.
	Dispatch dispatch.Config
	// Listen is the HTTP address. Zero: DefaultListen (loopback).
	Listen string
	// Token is the API's bearer token: at least 16 characters. Required unless ClientCAs is set; zero
	// then: only client certificates authenticate.
	Token string
	// TLS, when not nil, makes the server speak HTTPS with it (it must carry the server's certificate:
	// Certificates or GetCertificate, unless TLSCertFile is set). The service sets ClientAuth and ClientCAs
	// from ClientCAs or ClientCAFile. Nil: plain HTTP, unless TLSCertFile is set.
	TLS *tls.Config
	// TLSCertFile and TLSKeyFile are the HTTPS server's certificate (PEM, the chain after it) and key (PEM,
	// not readable by group or others): read by New (a missing, mismatched or expired pair fails it) and
	// again when either file changes (size, modification time or mode, looked at no more than every
	// CertCheck, at a handshake), so a renewed certificate is served without a restart. A changed pair that does not
	// load (half written, mismatched, expired) is logged and the one read before served on. They replace
	// TLS's certificates; TLS zero: TLS 1.2 and later, Go's defaults. Zero: TLS's own certificates.
	TLSCertFile, TLSKeyFile string
	// ClientCAs, when set, lets a client certificate authenticate API requests instead of the token (which
	// keeps working when set): a certificate of these CAs (the fleet CA) with the dispatch role, not
	// revoked. A certificate of another CA fails the TLS handshake; one of another role (a truck's) or a
	// revoked one gets 403. Requests without a certificate still reach the public pages (/t/, /healthz)
	// and, with the token, the API. Requires TLS. Zero: the token only.
	ClientCAs []*x509.Certificate
	// ClientCAFile is ClientCAs from a PEM file, read by New and again when it changes, as TLSCertFile
	// (a CA rollover: put both CAs in the file). Zero: ClientCAs.
	ClientCAFile string
	// CertCheck is how often at most TLSCertFile, TLSKeyFile and ClientCAFile are looked at. Zero:
	// DefaultCertCheck (5 s).
	CertCheck time.Duration
	// ClientCRL returns the CRL client certificates are checked against, read at each request. Nil: the
	// current CRL of Dispatch.Verifier (the broker section's file, then each newer one the broker
	// delivers); no check without a verifier.
	ClientCRL func() *x509.RevocationList
	// Logger; nil discards.
	Logger *slog.Logger
	// Clock is the time for fix ages and default ranges. Nil: time.Now.
	Clock func() time.Time

	// TileURL is the console's and the tracking page's map tile URL template, like
	// "https://tile.openstreetmap.org/{z}/{x}/{y}.png" (mind the tile server's usage policy). Empty: no
	// tiles; the maps draw a graticule and stay readable.
	TileURL string
	// TileAttribution is shown on the maps with the tiles, like "© OpenStreetMap contributors".
	TileAttribution string
	// PublicURL is where customers reach the tracking pages (/t/TOKEN), like "https://track.example.com"
	// (a proxy that forwards only /t/ to this server). Empty: links are relative to the console's address.
	PublicURL string
	// MaxStreams bounds the console's open event streams. Zero: DefaultMaxStreams.
	MaxStreams int
	// ReadTimeout bounds reading one request with its body, IdleTimeout the wait for the next request on a
	// kept-alive connection, WriteTimeout writing an answer (event streams set a deadline per event
	// instead; a large track export must fit): a client that stalls cannot hold a connection. Zero:
	// DefaultReadTimeout (30 s), DefaultIdleTimeout (60 s), DefaultWriteTimeout (5 min).
	ReadTimeout, IdleTimeout, WriteTimeout time.Duration

	// TrackingRate and TrackingBurst limit the public pages per client (the tracking pages /t/ and the
	// /console/ files they load; wrong tokens count too): a token bucket of TrackingBurst requests refilled
	// at TrackingRate, and 429 with Retry-After beyond. Requests the API would accept (cookie, token,
	// dispatch certificate) and the API itself are not limited. Zero: DefaultTrackingRate (60/min) and
	// DefaultTrackingBurst (30).
	TrackingRate  Rate
	TrackingBurst int
	// TrackingClients bounds the clients the limit remembers (the least recently seen is forgotten first
	// and comes back with a full bucket). Zero: DefaultTrackingClients (10,000: 1.7 MB).
	TrackingClients int
	// TrustedProxies are proxies whose X-Forwarded-For is believed: a request from one of them counts
	// against the nearest address in that header that is not a trusted proxy. Zero: the connection's
	// address, so behind a proxy every customer shares the proxy's limit (list the proxy here).
	TrustedProxies []netip.Prefix

	// KeepFixes is how long fixes are kept, by their GPS time: every PruneEvery the older ones are deleted,
	// PruneBatch per transaction (storage.Store.PruneFixes), counted in /metrics and logged. At least
	// MinKeepFixes (7 days). Events and proofs of delivery, statuses, orders and tracking links are never
	// deleted. Several processes on one database may all prune (give them the same value: the shortest
	// wins). Zero: fixes are kept for ever.
	KeepFixes time.Duration
	// PruneEvery is the time between pruning passes; the first is a minute after Run starts (PruneEvery if
	// shorter). Zero: DefaultPruneEvery (1 h).
	PruneEvery time.Duration
	// PruneBatch is the most fixes one transaction deletes. Zero: DefaultPruneBatch (5,000).
	PruneBatch int
}

// Service is one office process.
type Service struct {
	cfg    Config
	client *dispatch.Client
	log    *slog.Logger
	ln     net.Listener

	statusErrors atomic.Uint64 // NoteStatus failures (messages left unacknowledged)
	storeChanges atomic.Uint64

	limit       *limiter    // the public pages' rate limit
	proxyWarned atomic.Bool // the untrusted X-Forwarded-For warning was logged

	tls             *tls.Config                // the server's; nil: plain HTTP
	cert            *watched[*tls.Certificate] // Config.TLSCertFile's; nil without
	cas             *watched[clientCAs]        // Config.ClientCAFile's; nil without
	tlsReloadErrors atomic.Uint64              // changed certificate files that did not load

	fixesPruned atomic.Uint64
	pruneErrors atomic.Uint64
	prunePass   atomic.Int64 // when the last complete pruning pass ended (Unix seconds); 0: none yet

	hub         *hub
	stopping    chan struct{} // closed when Run begins to stop: the event streams end
	tileOrigin  string
	consoleHTML []byte
	trackHTML   []byte
}

// New checks cfg, prepares the client and binds the HTTP listener (so a taken port fails here, at
// start); it does not touch the broker.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("office: Config.Store is required")
	}
	certsOn := len(cfg.ClientCAs) > 0 || cfg.ClientCAFile != ""
	if len(cfg.Token) < 16 && (cfg.Token != "" || !certsOn) {
		return nil, errors.New("office: Config.Token must be at least 16 characters (the API's bearer token), or " +
			"empty with Config.ClientCAs or ClientCAFile (client certificates only)")
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("office: Config.TLSCertFile and TLSKeyFile go together")
	}
	if certsOn && cfg.TLS == nil && cfg.TLSCertFile == "" {
		return nil, errors.New("office: Config.ClientCAs and ClientCAFile need HTTPS (Config.TLS or TLSCertFile)")
	}
	if cfg.TLS != nil && cfg.TLSCertFile == "" && len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil {
		return nil, errors.New("office: Config.TLS has no server certificate (Certificates or GetCertificate)")
	}
	if cfg.ClientCRL == nil && cfg.Dispatch.Verifier != nil {
		cfg.ClientCRL = cfg.Dispatch.Verifier.CRL
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if err := cfg.checkLimit(); err != nil {
		return nil, err
	}
	if err := cfg.checkRetention(); err != nil {
		return nil, err
	}
	tileOrigin, err := checkTileURL(cfg.TileURL)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: cfg.Logger, hub: newHub(cfg.MaxStreams), stopping: make(chan struct{}), tileOrigin: tileOrigin,
		limit: newLimiter(cfg.TrackingRate, cfg.TrackingBurst, cfg.TrackingClients, cfg.Clock)}
	if err := s.setupTLS(); err != nil {
		return nil, err
	}
	s.consoleHTML, s.trackHTML = s.page("console.html"), s.page("track.html")
	dc := cfg.Dispatch
	dc.Record, dc.Outbox, dc.Handle = cfg.Store, nil, s.handle
	if dc.Logger == nil {
		dc.Logger = cfg.Logger
	}
	if s.client, err = dispatch.New(dc); err != nil {
		return nil, fmt.Errorf("office: %w", err)
	}
	if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("office: listen: %w", err)
	}
	return s, nil
}

// Addr is the HTTP server's address.
func (s *Service) Addr() string { return s.ln.Addr().String() }

// Client is the MQTT client (stats, connection state).
func (s *Service) Client() *dispatch.Client { return s.client }

// handle runs after Commit, before the PUBLISH is acknowledged: an online status goes to the storage's
// outbox (new store epochs, online kicks), and a failure leaves the message unacknowledged.
func (s *Service) handle(ctx context.Context, u dispatch.Update) error {
	s.notify(ctx, u)
	if u.Status == nil || u.Status.Status.State != sdk.StateOnline {
		return nil
	}
	ch, err := s.cfg.Store.NoteStatus(ctx, *u.Status)
	if err != nil {
		s.statusErrors.Add(1)
		return err
	}
	if ch != nil {
		s.storeChanges.Add(1)
	}
	return nil
}

// Run serves until ctx ends, then stops front to back: the HTTP server (in-flight requests get 10 s), the
// sender and the pruner, the client (its last receipts). It returns once every goroutine it started has
// returned.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	orDefault := func(d, def time.Duration) time.Duration {
		if d <= 0 {
			return def
		}
		return d
	}
	read := orDefault(s.cfg.ReadTimeout, DefaultReadTimeout)
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: min(10*time.Second, read), ReadTimeout: read,
		IdleTimeout: orDefault(s.cfg.IdleTimeout, DefaultIdleTimeout), WriteTimeout: orDefault(s.cfg.WriteTimeout, DefaultWriteTimeout),
		MaxHeaderBytes: 16 << 10, TLSConfig: s.tls,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)} // TLS handshake refusals, among others
	tlsOn := srv.TLSConfig != nil // read before Serve: serving changes srv.TLSConfig
	errs := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		serve := srv.Serve
		if tlsOn {
			serve = func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") }
		}
		if err := serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("office: http: %w", err)
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		if err := s.client.Run(ctx); err != nil {
			errs <- err
		}
		cancel()
	}()
	go func() {
		defer wg.Done()
		if err := s.cfg.Store.RunSender(ctx, s.client.Conn()); err != nil {
			errs <- err
			cancel()
		}
	}()
	if s.cfg.KeepFixes > 0 {
		wg.Go(func() { s.runPruner(ctx) })
	}
	if w, ok := s.cfg.Store.(storage.Watcher); ok {
		// The other processes on the same database: their commits reach this process's consoles too.
		wg.Go(func() { _ = w.Watch(ctx, func(c storage.Change) { s.notifyChange(ctx, c) }) })
	}
	s.log.Info("dispatch office: serving", "http", s.Addr(), "tls", tlsOn,
		"client_certificates", len(s.fleetCAs()) > 0, "token", s.cfg.Token != "", "keep_fixes", keepText(s.cfg.KeepFixes))
	<-ctx.Done()
	close(s.stopping)
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	scancel()
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// authorized checks the bearer token in constant time.
func (s *Service) authorized(r *http.Request) bool {
	const p = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(p) || h[:len(p)] != p {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(h[len(p):]), []byte(s.cfg.Token)) == 1
}

// errCertNeeded is the 401 of a request without credentials when only client certificates authenticate.
var errCertNeeded = errors.New("this API needs a client certificate: a dispatch certificate of the fleet CA " +
	"(waybill pki issue --role dispatch NAME; curl --cert NAME.crt --key NAME.key --cacert ca.crt)")

// apiAuth authorises an API request: a verified client certificate of the dispatch role, else the token
// (bearer or the console's cookie). code is 401 or 403 when it is refused.
func (s *Service) apiAuth(r *http.Request) (ok bool, code int, why error) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && len(s.fleetCAs()) > 0 {
		if err := s.clientAuth(r); err != nil {
			return false, http.StatusForbidden, err
		}
		return true, 0, nil
	}
	if s.cfg.Token == "" {
		return false, http.StatusUnauthorized, errCertNeeded
	}
	if ok, why := s.consoleAuth(r); !ok {
		return false, http.StatusUnauthorized, why
	}
	return true, 0, nil
}

// clientAuth checks the request's client certificate: the fleet CA (again, with the usage), the dispatch
// role, the CRL. A browser sends its certificate with cross-site requests too, so a POST it authorises must
// be JSON or carry the console's header: neither can a cross-site form send.
func (s *Service) clientAuth(r *http.Request) error {
	pool := x509.NewCertPool()
	for _, ca := range s.fleetCAs() {
		pool.AddCert(ca)
	}
	v := pki.Verifier{Roots: pool, AllowStaleCRL: true} // a stale CRL is the broker's lock-out; its revocations still bite here
	if s.cfg.ClientCRL != nil {
		v.CRL = s.cfg.ClientCRL()
	}
	peer := r.TLS.PeerCertificates
	id, err := v.Verify(peer[0], peer[1:], s.cfg.Clock(), x509.ExtKeyUsageClientAuth)
	if err != nil {
		s.log.Warn("API: client certificate refused", "cn", peer[0].Subject.CommonName, "err", err)
		return fmt.Errorf("client certificate refused: %v", err)
	}
	if id.Role != pki.RoleDispatch {
		s.log.Warn("API: client certificate of the wrong role refused", "name", id.Name, "role", id.Role)
		return fmt.Errorf("client certificate %q has the role %s: the API takes dispatch certificates "+
			"(waybill pki issue --role dispatch NAME)", id.Name, id.Role)
	}
	if r.Method == http.MethodPost && r.Header.Get(consoleHeader) == "" {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			return errors.New("a POST authorised by a client certificate needs Content-Type: application/json")
		}
	}
	return nil
}
