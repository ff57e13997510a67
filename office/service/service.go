package service

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waybill-iot/waybill/office/storage"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
)

// DefaultListen is the HTTP address when Config.Listen is empty: loopback only.
const DefaultListen = "127.0.0.1:8470"

// Config configures a Service.
type Config struct {
	// Store is the office storage. Required; the caller closes it after Run returned.
	Store storage.Store
	// Dispatch configures the MQTT client: Transport, Topics, ShareGroup, CA / Verifier, Certificates,
	// ReceiptDelay. Record, Outbox and Handle are set by the service.
	Dispatch dispatch.Config
	// Listen is the HTTP address. Zero: DefaultListen (loopback).
	Listen string
	// Token is the API's bearer token. Required: at least 16 characters.
	Token string
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
}

// Service is one office process.
type Service struct {
	cfg    Config
	client *dispatch.Client
	log    *slog.Logger
	ln     net.Listener

	statusErrors atomic.Uint64 // NoteStatus failures (messages left unacknowledged)
	storeChanges atomic.Uint64

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
		return nil, errors.New("service: Config.Store is required")
	}
	if len(cfg.Token) < 16 {
		return nil, errors.New("service: Config.Token must be at least 16 characters (the API's bearer token)")
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
	tileOrigin, err := checkTileURL(cfg.TileURL)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: cfg.Logger, hub: newHub(cfg.MaxStreams), stopping: make(chan struct{}), tileOrigin: tileOrigin}
	s.consoleHTML, s.trackHTML = s.page("console.html"), s.page("track.html")
	dc := cfg.Dispatch
	dc.Record, dc.Outbox, dc.Handle = cfg.Store, nil, s.handle
	if dc.Logger == nil {
		dc.Logger = cfg.Logger
	}
	if s.client, err = dispatch.New(dc); err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("service: listen: %w", err)
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
// sender, the client (its last receipts). It returns once every goroutine it started has returned.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errs := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("service: http: %w", err)
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
	s.log.Info("dispatch office: serving", "http", s.Addr())
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
