package office

import (
	"bytes"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/waybill-iot/waybill/sdk/dispatch"
)

// web holds the console and the tracking page: plain HTML, CSS and JavaScript, no build step.
//
//go:embed web
var web embed.FS

// consoleCookie keeps the console's token (HttpOnly: the page's scripts never see it).
const consoleCookie = "waybill_console"

// consoleHeader must accompany every request that changes something when it is authorised by the cookie:
// a cross-site form cannot set it, and a cross-site script would need a CORS preflight the office never
// grants.
const consoleHeader = "X-Waybill-Console"

// checkTileURL validates a tile URL template and returns its origin for the Content-Security-Policy.
func checkTileURL(t string) (string, error) {
	if t == "" {
		return "", nil
	}
	for _, p := range []string{"{z}", "{x}", "{y}"} {
		if !strings.Contains(t, p) {
			return "", fmt.Errorf("office: Config.TileURL %q lacks %s (want like https://tile.example.org/{z}/{x}/{y}.png)", t, p)
		}
	}
	u, err := url.Parse(strings.NewReplacer("{z}", "0", "{x}", "0", "{y}", "0").Replace(t))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("office: Config.TileURL %q: want an http(s) URL template", t)
	}
	return u.Scheme + "://" + u.Host, nil
}

// page reads an embedded HTML page and fills in the map's tile settings.
func (s *Service) page(name string) []byte {
	b, err := fs.ReadFile(web, "web/"+name)
	if err != nil {
		panic(err) // embedded at build time
	}
	b = bytes.ReplaceAll(b, []byte("{{TILE_URL}}"), []byte(html.EscapeString(s.cfg.TileURL)))
	return bytes.ReplaceAll(b, []byte("{{TILE_ATTRIBUTION}}"), []byte(html.EscapeString(s.cfg.TileAttribution)))
}

// securityHeaders: scripts and styles only from the office, images also from the tile server, no framing.
func (s *Service) securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	img := "'self' data:"
	if s.tileOrigin != "" {
		img += " " + s.tileOrigin
	}
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src "+
		img+"; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

func (s *Service) consolePage(w http.ResponseWriter, r *http.Request) {
	s.securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(s.consoleHTML)
}

// asset serves the console's and the tracking page's scripts and styles.
func (s *Service) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	b, err := fs.ReadFile(web, "web/"+name)
	if err != nil || strings.HasSuffix(name, ".html") {
		http.NotFound(w, r)
		return
	}
	s.securityHeaders(w)
	switch path.Ext(name) {
	case ".js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case ".css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	}
	w.Write(b)
}

// login is the console's form POST: the right token sets the HttpOnly cookie.
func (s *Service) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	tok := r.PostFormValue("token")
	if subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.Token)) != 1 {
		http.Redirect(w, r, "/?login=failed", http.StatusSeeOther)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: consoleCookie, Value: s.cfg.Token, Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: 30 * 24 * 3600})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Service) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: consoleCookie, Value: "", Path: "/", HttpOnly: true, MaxAge: -1,
		SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// session answers 200 when the request is authorised (the console asks before showing its login form).
func (s *Service) session(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "public_url": s.cfg.PublicURL})
}

// truckEvents is GET /api/trucks/{truck}/events?from=&to=: the truck's events, newest last.
func (s *Service) truckEvents(w http.ResponseWriter, r *http.Request) {
	from, to, err := s.timeRange(r)
	if err != nil {
		storeErr(w, err)
		return
	}
	evs, err := s.cfg.Store.Events(r.Context(), r.PathValue("truck"), from, to)
	if err != nil {
		storeErr(w, err)
		return
	}
	if evs == nil {
		evs = []dispatch.Event{}
	}
	writeJSON(w, http.StatusOK, evs)
}

// trackingURL is the customer's link for a token.
func (s *Service) trackingURL(token string) string {
	return strings.TrimSuffix(s.cfg.PublicURL, "/") + "/t/" + token
}

// errNotAuthorized explains a 401.
var errNotAuthorized = errors.New("missing or wrong bearer token (or console cookie)")

// consoleAuth: the bearer token, or the console's cookie (with consoleHeader on anything but GET/HEAD).
func (s *Service) consoleAuth(r *http.Request) (ok bool, why error) {
	if r.Header.Get("Authorization") != "" {
		return s.authorized(r), errNotAuthorized
	}
	c, err := r.Cookie(consoleCookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.cfg.Token)) != 1 {
		return false, errNotAuthorized
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Header.Get(consoleHeader) == "" {
		return false, fmt.Errorf("a request authorised by the console's cookie needs the %s header", consoleHeader)
	}
	return true, nil
}
