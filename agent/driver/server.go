package driver

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/truck"
)

// Orders is the order book as the driver's side uses it; *truck.Book implements it. Nothing here lists the
// whole book: the page and the hook read the active orders, a page of closed ones, one order or the counts,
// each from the book's indexes, so their cost does not grow with the closed history (a year of deliveries).
type Orders interface {
	// Active returns the orders waiting for the driver (state active).
	Active() ([]truck.Entry, error)
	// Closed returns a page of closed orders (delivered, failed, cancelled), newest closed first, and the
	// cursor of the next page; truck.ErrBadCursor for a cursor no page gave.
	Closed(q truck.ClosedQuery) (truck.ClosedPage, error)
	// Get returns one order, and false when the book holds none with that id.
	Get(id string) (truck.Entry, bool, error)
	// Counts returns how many orders the book holds in each state.
	Counts() (map[truck.State]int, error)
	// Act records a driver's action; the proof is on disk when it returns.
	Act(ctx context.Context, a truck.Action) (truck.ActionResult, error)
}

// Config configures a Server. Zero values are documented per field.
type Config struct {
	// Orders is the truck's order book. Required.
	Orders Orders
	// Position returns the latest GPS fix and whether there is one. Nil: never a fix (no distances, and
	// actions carry no fix).
	Position func() (sdk.Fix, bool)
	// Status returns the agent's status for GET /api/status, marshalled with encoding/json. Nil: null.
	Status func() any
	// Token, when set, is required on every request (Authorization: Bearer, the cookie, or ?token= once).
	// Empty: no token, and requests must name a loopback host (localhost, 127.0.0.0/8, ::1) in Host, which
	// stops DNS rebinding from a web page the cab's browser visits.
	Token string
	// MaxBody is the largest request body accepted, in bytes; larger is 413. Zero: 16 KiB.
	MaxBody int64
	// MaxReason is the longest reason accepted, in bytes; longer is 422. Zero: 500.
	MaxReason int
	// ActTimeout bounds one action's write to the store. It does not end when the client hangs up: a proof
	// that is being written is finished. Zero: 30 s.
	ActTimeout time.Duration
	// Recent is how long a closed (delivered, failed, cancelled) order stays in the page's snapshot, counted
	// from when the order book recorded it closed, so a page that reconnects still sees what happened
	// meanwhile. The snapshot holds at most the newest 200 of them. Zero: 10 minutes.
	Recent time.Duration
	// PositionEvery is how often each event stream looks for a new fix to send. Zero: 1 s.
	PositionEvery time.Duration
	// KeepAlive is the interval of comment lines on an idle event stream, so proxies and the browser keep
	// it open. Zero: 15 s.
	KeepAlive time.Duration
	// MaxStreams is how many /events streams may be open at once. A new stream beyond it closes the oldest
	// one (which is told so in an "closed" event, code too_many_streams, and asked to reconnect only after
	// 30 s): the page the driver opened last always works, and a phone that left the cab without closing
	// its stream cannot lock the driver out. Zero: 8 (a cab has a phone or two, each with a tab or two).
	MaxStreams int
	// IdempotencyKeys is how many Idempotency-Key results are remembered (oldest forgotten first), and
	// IdempotencyTTL for how long. Zero: 1024 keys, 24 hours.
	IdempotencyKeys int
	IdempotencyTTL  time.Duration
	// Clock is the time for idempotency expiry and the recent window. Nil: time.Now.
	Clock func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.MaxBody <= 0 {
		c.MaxBody = 16 << 10
	}
	if c.MaxReason <= 0 {
		c.MaxReason = 500
	}
	if c.ActTimeout <= 0 {
		c.ActTimeout = 30 * time.Second
	}
	if c.Recent <= 0 {
		c.Recent = 10 * time.Minute
	}
	if c.PositionEvery <= 0 {
		c.PositionEvery = time.Second
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = 15 * time.Second
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = 8
	}
	if c.IdempotencyKeys <= 0 {
		c.IdempotencyKeys = 1024
	}
	if c.IdempotencyTTL <= 0 {
		c.IdempotencyTTL = 24 * time.Hour
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Position == nil {
		c.Position = func() (sdk.Fix, bool) { return sdk.Fix{}, false }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

//go:embed page.html
var page []byte

// Server is the driver's page, its event stream and the JSON hook. It is an http.Handler.
type Server struct {
	cfg Config
	// page is page.html with the message catalogues in it; langs are the catalogues' languages.
	page  []byte
	langs map[string]map[string]string

	mux  *http.ServeMux
	csrf *http.CrossOriginProtection
	idem *idemCache

	// done is closed by Close; streams end on it.
	done      chan struct{}
	closeOnce sync.Once
	// streams counts running event streams; Close waits for them.
	streams sync.WaitGroup

	// mu guards subs and closed.
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
	seq    uint64 // numbers subscribers in the order they came, to find the oldest
}

// New checks cfg and builds the server. It starts no goroutines.
func New(cfg Config) (*Server, error) {
	if cfg.Orders == nil {
		return nil, errors.New("driver: Config.Orders is required")
	}
	if strings.ContainsAny(cfg.Token, " \t\r\n;,\"") {
		return nil, errors.New("driver: Config.Token must not contain spaces, quotes, commas or semicolons")
	}
	cfg = cfg.withDefaults()
	cats, err := loadCatalogues(catalogueFiles)
	if err != nil {
		return nil, err
	}
	withWords, err := buildPage(page, cats)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:   cfg,
		page:  withWords,
		langs: cats,
		mux:   http.NewServeMux(),
		csrf:  http.NewCrossOriginProtection(),
		idem:  newIdemCache(cfg.IdempotencyKeys, cfg.IdempotencyTTL),
		done:  make(chan struct{}),
		subs:  map[*subscriber]struct{}{},
	}
	s.mux.HandleFunc("/{$}", s.handlePage)
	s.mux.HandleFunc("/index.html", s.handlePage)
	s.mux.HandleFunc("/events", s.handleEvents)
	s.mux.HandleFunc("/api/orders", s.handleOrders)
	s.mux.HandleFunc("/api/orders/{id}", s.handleOrder)
	s.mux.HandleFunc("/api/orders/{id}/{action}", s.handleAction)
	s.mux.HandleFunc("/api/status", s.handleStatus)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such page: "+r.URL.Path)
	})
	return s, nil
}

// ServeHTTP authenticates the request, refuses cross-site writes, and routes it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	if err := s.csrf.Check(r); err != nil {
		writeError(w, http.StatusForbidden, "cross_origin", "cross-origin request refused: "+err.Error())
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.mux.ServeHTTP(w, r)
}

// Close ends every event stream and waits until their handlers have returned; later streams are refused
// with 503. Call it before http.Server.Shutdown (or register it with RegisterOnShutdown), which otherwise
// waits for the streams forever. The JSON hook keeps working.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.done)
	})
	s.streams.Wait()
	return nil
}

func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Everything is inline; nothing may come from elsewhere (the cab may be offline, and it limits what an
	// injected string could do).
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "+
		"connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Vary", "Accept-Language")
	if r.Method == http.MethodHead {
		return
	}
	// The page speaks the language Accept-Language prefers among the catalogues; it falls back to
	// navigator.languages, then English, and the driver can override it in the page.
	body := s.page
	if lang := pickLanguage(r.Header.Get("Accept-Language"), s.langs); lang != "" {
		body = bytes.Replace(body, []byte(`<html lang="en">`), []byte(`<html lang="`+lang+`" data-accept="`+lang+`">`), 1)
	}
	w.Write(body)
}

// allow reports whether r's method is one of methods, and answers 405 with Allow when it is not.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed",
		r.Method+" is not allowed here; use "+strings.Join(methods, " or "))
	return false
}
