// Package driver is the driver's side of the agent's local HTTP listener: the in-cab page that lists the
// truck's orders and takes the driver's taps, its live event stream, and the JSON hook for integrators.
//
// # Basics
//
//	srv, err := driver.New(driver.Config{Orders: client.Book(), Position: latestFix, Status: health,
//		Token: cfg.Token, Logger: log})
//	// truck.ClientConfig.OnOrder: srv.Notify
//	mux.Handle("/", srv)                 // next to /healthz and /metrics
//	httpServer.RegisterOnShutdown(func() { srv.Close() }) // ends the event streams
//
// The page and the hook read the order book through its indexes (Orders: Active, Closed, Get, Counts), never
// whole: a snapshot, a request or a status costs the active orders and one page of closed ones, not a
// year of history.
//
// Every acknowledgement goes through the order book's Act, which writes the signed proof of delivery to
// the store's critical lane (fsync'd) before it returns; the page and the hook answer only after that, so
// an OK means the proof is on disk. The event carries how it was given (screen for the page, http for the
// hook) and the latest fix.
//
// # The page
//
// GET / is one embedded HTML file with its CSS and script inline: no build step and nothing fetched from
// elsewhere (the cab may be offline). It lists the active orders, nearest first (the order the button acts
// on is marked Next), with recipient, address, notes, distance and direction from the latest fix, a
// Navigate link (the order's geo: URI, which opens the tablet's navigation app), arrival and problem
// badges, and three large buttons: Delivered (asks to confirm), Failed (asks why) and Problem (asks what).
// A cancelled order leaves the list with a notice the driver must dismiss.
//
// It is made for the official Raspberry Pi 7-inch panel (800x480, landscape or portrait) and larger
// tablets: the Delivered/Failed/Problem dialog never grows past the screen; its title and buttons stay in
// view and only the reasons scroll (with a shadow at the edge that has more).
//
// The direction arrow is relative to the truck's heading while the truck moves: when the fix has a course
// and a speed of at least 2.5 m/s (9 km/h, the GPS filter's HeadingMinSpeed; slower, a receiver's course
// is noise), it points at bearing - course, so straight up is straight ahead. Otherwise it is a compass
// bearing with an N on its ring. The header says which ("Arrows: ↑ = ahead" or "Arrows: compass, N up";
// tapping it explains).
//
// # Languages
//
// Every word the page shows comes from a message catalogue, i18n/<code>.json (key -> text, "{name}" filled
// in by the page), embedded in the binary and inlined in the page: English (en) and German (de). The page
// picks the driver's choice from its language menu (kept in the browser's localStorage), else the language
// Accept-Language prefers most among the catalogues, else the first of navigator.languages it has, else
// English. New fails if a catalogue lacks a key of en.json, has one en.json lacks, or fills in other
// values. To add a language, copy en.json to <code>.json and translate every value; the tests check it is
// complete. A reason picked from the list goes into the proof of delivery in the language it was shown in.
//
// GET /events is a server-sent event stream: "orders" (a snapshot: {"position", "orders"}) on connect,
// "order" (one OrderView) after each change given to Notify, and "position" (a fix) at most every
// PositionEvery when the fix changed. The snapshot holds active orders and those closed in the last
// Config.Recent (the newest 200 of them), so a page that reconnects still sees a cancellation it missed. At
// most Config.MaxStreams
// streams are open: a new one closes the oldest, which gets "closed" ({"error", "code": "too_many_streams"})
// and a 30 s reconnection delay first, so the page the driver opened last always works.
//
// # The HTTP hook
//
// JSON in and out. Errors are {"error": "human text", "code": "machine_code"}.
//
//	GET  /api/orders[?state=active|delivered|failed|cancelled][&limit=n][&cursor=c]
//	     200 {"position": fix|null, "orders": [OrderView...], "next": c}
//	     state=active: the active orders, nearest first (oldest received first without a fix); not paged.
//	     state=delivered|failed|cancelled: a page of the closed orders in that state, newest closed first.
//	     No state: the active orders, then the first page of the closed orders of every state; with a
//	     cursor, the following pages of closed orders (the active ones are on the first page only).
//	     A page holds limit closed orders (1-1000; default 50). "next" is there when more follow: pass it
//	     as ?cursor= with the same state for the next (older) page; each closed order comes once.
//	     OrderView: id, revision, state, recipient, address, notes, lat, lon, radius_m, expires, received,
//	     arrived, conflict, problems, distance_m and bearing_deg (null without a fix), action (the
//	     driver's final action, or null), geo_uri (RFC 5870
//	     with the q parameter navigation apps read: "geo:52.52,13.405?q=52.52,13.405(Ada%20Lovelace%2C%20
//	     12%20Main%20St)", the label being recipient and address, percent-encoded).
//	GET  /api/orders/{id}
//	     200 OrderView, or 404 unknown_order.
//	POST /api/orders/{id}/delivered|failed|problem
//	     body (optional for delivered): {"reason": "...", "via": "http"|"screen"}; via defaults to http.
//	     200 {"order_id", "state", "event": {"kind", "reason", "via", "time", "seq", "off_site", "fix"}}
//	     once the proof is on disk. "seq" is the event's record number in the store; "off_site" says the
//	     fix was outside the order's arrival radius.
//	GET  /api/status
//	     200 {"agent": <the agent's status>, "position": fix|null, "orders": {"active": n, "delivered": n,
//	     "failed": n, "cancelled": n}, "pages": <connected driver pages>}
//
// Idempotency: delivering or failing an order again returns the first event unchanged (same seq, time
// and via), whoever gave it. A problem may be reported many times, so a repeated problem request is a new
// report unless it carries an Idempotency-Key header (1-255 visible ASCII characters): a request with a
// key already used for the same order, action, reason and via gets the first answer again (a request
// arriving while the first is still running waits for it); the same key with a different request is 422
// idempotency_key_reused. Keys work for every action, are remembered for IdempotencyTTL (24 h,
// IdempotencyKeys at most) in memory, and are forgotten when the agent restarts. 5xx answers are not
// remembered, so a retry with the same key tries again. The page sends a key with every tap.
//
// Errors:
//
//	400 bad_json            the body is not one JSON object with only "reason" and "via"
//	400 bad_idempotency_key
//	400 bad_state           ?state= is not a state
//	400 bad_limit           ?limit= is not a whole number from 1 to 1000, or is given with state=active
//	400 bad_cursor          ?cursor= is empty, not a "next" of this truck, or given with state=active
//	401 unauthorized        a token is configured and the request has none or a wrong one (WWW-Authenticate:
//	                        Bearer; Connection: close)
//	403 host_not_allowed    no token is configured and Host is not a loopback name or address (Connection: close)
//	403 cross_origin        a browser request from another site (net/http.CrossOriginProtection)
//	404 unknown_order, unknown_action, not_found
//	405 method_not_allowed  with an Allow header
//	409 order_cancelled     dispatch cancelled the order
//	409 order_closed        the order was already closed with the other action (failed vs delivered)
//	413 body_too_large      over MaxBody (16 KiB)
//	422 reason_required     failed and problem need a reason
//	422 reason_too_long     over MaxReason (500 bytes); 422 bad_via; 422 idempotency_key_reused
//	500 internal            the store failed: the action was not recorded
//	503 store_timeout       the store did not record it within ActTimeout; 503 shutting_down (events)
//
// # Token
//
// With Config.Token set, every request needs it: "Authorization: Bearer <token>", or the cookie a browser
// gets by opening any address once with ?token=<token> (HttpOnly, SameSite=Strict; the page redirects to
// itself without the token so it leaves the address bar). Without a token, only requests naming a loopback
// host are answered: the agent requires a token whenever it listens beyond loopback. Guard puts another
// handler behind the same check (the agent's /healthz and /metrics).
//
// # Caveats
//
//   - Close must run before http.Server.Shutdown (RegisterOnShutdown), or Shutdown waits for the open
//     event streams until its context ends.
//   - Idempotency keys live in memory: after a restart a repeated problem request with the same key is
//     recorded again. Delivered and failed stay idempotent through the order book.
//   - Unsafe methods from a browser on another site are refused (403), but the listener is plain HTTP: on
//     the cab's network the token travels in clear text. Keep it on a network only the cab uses.
//   - Closed orders leave the book KeepClosed (30 days) after they closed (truck.Book.Prune): a listing
//     paged over that long misses what was pruned meanwhile. An order closed after the first page was
//     read is not on the later ones (they go back in time); start again without a cursor to see it.
//   - When the order book's closed orders cannot be read (a store error, or a book whose index could not
//     be built), the page's snapshot lists the active orders only and the error is logged; the hook
//     answers 500.
//   - Notify must not be called before New returned: wire OnOrder to a variable set before the truck
//     client runs.
package driver
