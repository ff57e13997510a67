package driver

import (
	"crypto/subtle"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// cookieName holds the token for a plain browser that opened the page once with ?token=.
const cookieName = "waybill_token"

// authorize checks the token (or, without one, that the request names a loopback host). It answers the
// request itself and returns false when it must not go further.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.Token == "" {
		if !loopbackHost(r.Host) {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusForbidden, "host_not_allowed",
				"without a token the driver page answers only to localhost, 127.0.0.1 or [::1], not "+r.Host)
			return false
		}
		return true
	}
	if q := r.URL.Query(); q.Has("token") {
		if !s.tokenOK(q.Get("token")) {
			return s.unauthorized(w, "the token in the address is wrong")
		}
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.cfg.Token, Path: "/", HttpOnly: true,
			SameSite: http.SameSiteStrictMode})
		if r.Method == http.MethodGet && (r.URL.Path == "/" || r.URL.Path == "/index.html") {
			// Take the token out of the address bar and the browser's history.
			q.Del("token")
			u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
			http.Redirect(w, r, u.String(), http.StatusSeeOther)
			return false
		}
		return true
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || !s.tokenOK(strings.TrimSpace(tok)) {
			return s.unauthorized(w, "the Authorization header does not carry the right Bearer token")
		}
		return true
	}
	if c, err := r.Cookie(cookieName); err == nil && s.tokenOK(c.Value) {
		return true
	}
	return s.unauthorized(w, "a token is required: Authorization: Bearer <token>, or open the page once with ?token=<token>")
}

func (s *Server) tokenOK(got string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) == 1
}

// unauthorized answers 401. Like every refusal by authorize, it closes the connection: a client without the
// token must not keep a connection (and a file and a goroutine of the agent) open by trying again on it.
func (s *Server) unauthorized(w http.ResponseWriter, msg string) bool {
	w.Header().Set("Connection", "close")
	w.Header().Set("WWW-Authenticate", `Bearer realm="waybill-agent"`)
	writeError(w, http.StatusUnauthorized, "unauthorized", msg)
	return false
}

// loopbackHost reports whether a Host header names this machine's loopback interface.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Guard puts h behind the same check as the driver's page: the token when one is set, otherwise a loopback
// name in Host (no DNS rebinding). The agent uses it for /healthz and /metrics, which name the truck, its
// broker, its position and its queue.
func (s *Server) Guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorize(w, r) {
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}
