// Package office is the dispatch office process (`waybill dispatch run`): the verified consumer (a
// dispatch.Client whose Record is the office storage, so a PUBLISH is acknowledged to the broker and
// receipted to the truck only after it committed), the order re-sender of that storage, and an HTTP server
// with /healthz, /metrics and a JSON API for orders, trucks, tracks and proofs of delivery.
//
// It lives beside the dispatch library (design.md: the office is an application with a package of its own)
// because a back-end may embed it: its API, console and re-sender in the integrator's own process, on
// either storage engine (sdk/dispatch/storage). An integrator who imports sdk/dispatch alone pulls in
// neither this package (an HTTP server) nor the engines (bbolt files, pgx). cmd/waybill only parses the
// configuration (dispatch.example.toml here; waybill-dispatch.service is the systemd unit) and calls New.
//
// # Basics
//
//	svc, err := office.New(office.Config{Store: st, Dispatch: dispatch.Config{Transport: ..., CA: ...},
//		Listen: "127.0.0.1:8470", Token: token})
//	err = svc.Run(ctx) // until ctx ends: the HTTP server stops first, then the sender, then the client
//
// # API
//
// Every /api path needs "Authorization: Bearer TOKEN" or, with HTTPS (Config.TLSCertFile or TLS) and
// Config.ClientCAFile or ClientCAs, a client certificate of the fleet CA with the dispatch role that is not revoked (Config.ClientCRL, by default the
// dispatch verifier's current fleet CRL); /healthz does not (it says only whether the broker link is up and
// the storage answers). The TLS handshake asks for a certificate without requiring one, so token clients,
// /healthz and the tracking pages work without; a certificate of another CA fails the handshake, a
// truck's or a revoked one gets 403. A POST authorised by a certificate must be application/json (a
// browser sends its certificate with a cross-site form too). Without Config.Token only certificates
// authenticate. Errors are JSON {"error": "..."} with 400 (bad input), 401, 403 (a refused client
// certificate), 404 (no such order), 409 (exists with other content, cancelled, closed by the driver).
//
//	GET    /healthz                          200 ok / 503 with the reason
//	GET    /metrics                          Prometheus text
//	GET    /api/orders                       every order with its state
//	POST   /api/orders                       create {truck,id,recipient,address,lat,lon,radius_m,notes,expires}
//	GET    /api/orders/{truck}/{id}          one order and its history (the truck's events for it)
//	PUT    /api/orders/{truck}/{id}          revise (new address, destination, time window: expires)
//	DELETE /api/orders/{truck}/{id}?reason=  cancel
//	GET    /api/trucks                       online, last fix, fix age, queue depth, certificate days left
//	GET    /api/trucks/{truck}/track?from=&to=&format=geojson|gpx|csv   times RFC 3339; default the last 24 h
//	GET    /api/proofs?truck=&from=&to=      delivered and failed events with what was verified
//	GET    /api/trucks/{truck}/events?from=&to=   the truck's events (JSON)
//	GET    /api/fleet                        every truck's online state and last position (the map)
//	GET    /api/events                       server-sent events for the console (at most Config.MaxStreams)
//
// Creating or reading one order also returns its customer tracking link ("tracking": {token, url}).
//
// # Console
//
// GET / is the web console (web/: plain HTML, CSS and JavaScript embedded in the binary, no build step,
// nothing from a CDN): orders with their live state (create, revise, cancel), the fleet on a map drawn on a
// canvas in Web Mercator (tiles from Config.TileURL when set; a graticule and a scale bar without them),
// a truck page (status, last fix, queue, open orders, recent events, its track for a time range) and the
// proofs of delivery. It asks for the token once, with a form POST to /login that sets an HttpOnly,
// SameSite=Strict cookie; requests it authorises that change something must carry X-Waybill-Console (a
// cross-site form cannot). Live updates come over /api/events from this process's ingest and API.
//
// # HTTPS certificates
//
// Config.TLSCertFile, TLSKeyFile and ClientCAFile are read at start (a missing, mismatched or expired
// pair, or a key file others can read, fails New) and again when one of them changes: its size,
// modification time or mode, looked at during a handshake at most every Config.CertCheck (5 s). So a
// renewal (certbot's, or `waybill pki issue` and a rename) is served to new connections within seconds,
// without a restart; connections already open keep theirs. A change that does not load (the new
// certificate before its key, garbage, an expired certificate, a key others can read) is logged as an
// error once per change and the pair read before is served on; it is tried again at the next change.
// /metrics: waybill_dispatch_tls_certificate_expiry_seconds (the served certificate's end, Unix time:
// alert on it) and waybill_dispatch_tls_reload_errors_total. A CA added to ClientCAFile lets its dispatch
// certificates in the same way (a CA rollover).
//
// # Tracking links
//
// GET /t/{token} is a customer's page and GET /t/{token}/status its JSON, without the bearer token:
// the order's id, public state, address and destination and, while the truck has the order and is online
// (state received, arrived or problem, not cancelled), the truck's last position and straight-line
// distance. Nothing about its other orders, its route or its name. A token is 128 bits from crypto/rand,
// stored with the order, looked up by its SHA-256 and compared in constant time; any other string is 404.
//
// The tracking pages and the /console/ files they load are rate-limited per client, so that a client
// hammering them cannot cost the database: a token bucket of Config.TrackingBurst requests (30) refilled
// at Config.TrackingRate (60/min), 429 with Retry-After beyond, wrong tokens counted too. A tracking page
// costs 5 requests to open and 4 a minute while open. The client is the connection's address (IPv6: its
// /64) or, from a proxy in Config.TrustedProxies, the nearest address in X-Forwarded-For that is not a
// trusted proxy (what the client wrote itself, further left, is never believed). At most
// Config.TrackingClients (10,000) clients are remembered, the least recently seen forgotten first.
// Requests the API would accept (token, cookie, dispatch certificate) and the API are not limited.
// /metrics: waybill_dispatch_public_limited_total, waybill_dispatch_public_clients and
// waybill_dispatch_public_clients_evicted_total; a client's first refusal is logged, again only once its
// bucket has refilled.
//
// # Retention
//
// With Config.KeepFixes ([archive] keep_fixes = "400d"; at least MinKeepFixes, 7 days) the service deletes
// the fixes whose GPS time is older, every Config.PruneEvery (1 h; the first pass a minute after start),
// Config.PruneBatch (5,000) per transaction. On the embedded engine a commit waits for one batch at most
// (6-11 ms measured in a 1-million-fix archive); PostgreSQL locks only the rows it deletes, so ingest does
// not wait (a batch took 10 ms with the table in its buffers, up to 300 ms with a 1-million-row table four
// times the test cluster's 32 MB of them, on a loaded 2-core machine). Only fixes: events and proofs of delivery, statuses, orders and tracking links are
// kept for ever. Several processes on one PostgreSQL database may all prune at once: rows one is deleting
// the others skip. /metrics: waybill_dispatch_fixes_pruned_total, waybill_dispatch_prune_errors_total and
// waybill_dispatch_prune_last_pass_seconds (alert when it falls behind); a pass that deleted anything is
// logged. The database and the bbolt file do not shrink: their freed space takes new fixes, so they stop
// growing once a retention period of fixes is in them.
//
// # Caveats
//
//   - The server listens on loopback by default. Before opening it to the office network, serve HTTPS
//     (Config.TLSCertFile) with client certificates (Config.ClientCAFile), or put a TLS proxy in front of
//     it.
//   - With several processes on one PostgreSQL, a console sees the others' changes only through its
//     30-second poll of the orders (the event stream carries this process's ingest and API).
//   - /t/ is public: to give customers links, expose only /t/ and /console/ through a proxy (and set
//     Config.PublicURL), never the API. Behind that proxy list it in Config.TrustedProxies, or every
//     customer shares the proxy's rate limit (the first X-Forwarded-For from an untrusted address logs a
//     warning); a proxy that does not set X-Forwarded-For must rate-limit itself. The tokens' 128 bits are
//     what protects the orders; the limit protects the database.
//   - The limit lives in each process's memory: N processes on one database allow N times the rate, and
//     a client forgotten for room (a flood of more than TrackingClients addresses) starts with a full
//     bucket again.
package office
