package driver

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestToken: with a token, every request needs it, by header, by cookie, or once in the address (which
// sets the cookie and takes the token out of the address).
func TestToken(t *testing.T) {
	const token = "s3cret-token"
	f := newFixture(t, func(c *Config) { c.Token = token })
	f.send(newOrder("o-1", 1))

	for _, path := range []string{"/", "/api/orders", "/api/status", "/events", "/api/orders/o-1/delivered"} {
		method := "GET"
		if strings.HasSuffix(path, "delivered") {
			method = "POST"
		}
		r := f.do(method, path, "")
		wantError(t, "no token for "+path, r, 401, "unauthorized")
		if !r.closed {
			t.Errorf("%s: a 401 keeps the connection open", path)
		}
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", path, r.header.Get("WWW-Authenticate"))
		}
	}
	wantError(t, "wrong bearer", f.do("GET", "/api/orders", "", "Authorization", "Bearer nope"), 401, "unauthorized")
	wantError(t, "basic auth", f.do("GET", "/api/orders", "", "Authorization", "Basic "+token), 401, "unauthorized")
	wantError(t, "wrong token in the address", f.do("GET", "/?token=nope", ""), 401, "unauthorized")
	wantError(t, "wrong cookie", f.do("GET", "/api/orders", "", "Cookie", cookieName+"=nope"), 401, "unauthorized")

	if r := f.do("GET", "/api/orders", "", "Authorization", "Bearer "+token); r.status != 200 {
		t.Fatalf("bearer: %d %s", r.status, r.body)
	}
	if r := f.do("GET", "/api/orders?token="+token, ""); r.status != 200 {
		t.Fatalf("token in an API address: %d", r.status)
	}

	// The page with ?token= sets an HttpOnly cookie and redirects to itself without the token.
	r := f.do("GET", "/?token="+token, "")
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
		t.Fatalf("page with token: %d Location %q", r.status, r.header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == cookieName {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/" {
		t.Fatalf("cookie = %+v", cookie)
	}
	if r := f.do("GET", "/", "", "Cookie", cookie.String()); r.status != 200 || !strings.Contains(string(r.body), "<title>") {
		t.Fatalf("page with the cookie: %d", r.status)
	}
	if r := f.do("POST", "/api/orders/o-1/delivered", "", "Cookie", cookie.String()); r.status != 200 {
		t.Fatalf("action with the cookie: %d %s", r.status, r.body)
	}
}

// TestNoTokenLoopbackOnly: without a token only loopback host names are answered (DNS rebinding), and
// browsers on other sites cannot post actions (CSRF).
func TestNoTokenLoopbackOnly(t *testing.T) {
	f := newFixture(t, nil)
	f.send(newOrder("o-1", 1))
	for _, host := range []string{"localhost:8080", "127.0.0.1", "[::1]:80", "127.9.9.9:1", "cab.localhost"} {
		req, _ := http.NewRequest("GET", f.http.URL+"/api/orders", nil)
		req.Host = host
		if r := f.roundTrip(req); r.status != 200 {
			t.Errorf("Host %s: %d", host, r.status)
		}
	}
	for _, host := range []string{"evil.example", "192.168.1.20:8080", "localhost.evil.example", "0.0.0.0"} {
		req, _ := http.NewRequest("GET", f.http.URL+"/api/orders", nil)
		req.Host = host
		r := f.roundTrip(req)
		wantError(t, "Host "+host, r, 403, "host_not_allowed")
		if !r.closed {
			t.Errorf("Host %s: the refusal keeps the connection open", host)
		}
	}
	wantError(t, "cross-site POST",
		f.do("POST", "/api/orders/o-1/delivered", "", "Sec-Fetch-Site", "cross-site"), 403, "cross_origin")
	wantError(t, "POST from another origin",
		f.do("POST", "/api/orders/o-1/delivered", "", "Origin", "http://evil.example"), 403, "cross_origin")
	if n := len(f.events()); n != 0 {
		t.Fatalf("%d events recorded by refused requests", n)
	}
	if r := f.do("POST", "/api/orders/o-1/delivered", "", "Sec-Fetch-Site", "same-origin"); r.status != 200 {
		t.Fatalf("same-origin POST: %d %s", r.status, r.body)
	}
}

// TestConfig: New refuses a config without an order book or with a token that cannot be a cookie.
func TestConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without Orders")
	}
	f := newFixture(t, nil)
	if _, err := New(Config{Orders: f.book, Token: "a b"}); err == nil {
		t.Fatal("New with a token holding a space")
	}
}

// TestGuard: Guard puts another handler (the agent's /healthz and /metrics) behind the same check.
func TestGuard(t *testing.T) {
	for _, token := range []string{"", "s3cret-token"} {
		f := newFixture(t, func(c *Config) { c.Token = token })
		inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("inner")) })
		srv := httptest.NewServer(f.srv.Guard(inner))
		get := func(host string, hdr ...string) response {
			req, _ := http.NewRequest("GET", srv.URL+"/healthz", nil)
			if host != "" {
				req.Host = host
			}
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			return f.roundTrip(req)
		}
		if token == "" {
			if r := get(""); r.status != 200 || string(r.body) != "inner" {
				t.Errorf("loopback without token: %d %s", r.status, r.body)
			}
			if r := get("evil.example"); r.status != 403 || !r.closed {
				t.Errorf("foreign Host without token: %d closed %v", r.status, r.closed)
			}
		} else {
			if r := get(""); r.status != 401 || !r.closed {
				t.Errorf("no token: %d closed %v", r.status, r.closed)
			}
			if r := get("", "Authorization", "Bearer "+token); r.status != 200 || string(r.body) != "inner" {
				t.Errorf("bearer: %d %s", r.status, r.body)
			}
			if r := get("", "Cookie", cookieName+"="+token); r.status != 200 {
				t.Errorf("cookie: %d", r.status)
			}
		}
		srv.Close()
	}
}
