package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/truck"
)

// OrderView is one order as the hook and the page see it.
type OrderView struct {
	ID        string              `json:"id"`
	Revision  uint32              `json:"revision"`
	State     truck.State         `json:"state"` // active, delivered, failed, cancelled
	Recipient string              `json:"recipient"`
	Address   string              `json:"address"`
	Notes     string              `json:"notes"`
	Lat       float64             `json:"lat"`
	Lon       float64             `json:"lon"`
	RadiusM   int                 `json:"radius_m"`
	Expires   time.Time           `json:"expires"`
	Received  time.Time           `json:"received"` // when the current revision was stored
	Arrived   bool                `json:"arrived"`  // the truck entered the arrival radius
	Conflict  bool                `json:"conflict"` // dispatch cancelled it after the driver closed it
	Problems  int                 `json:"problems"` // problem reports so far
	Distance  *float64            `json:"distance_m"`
	Bearing   *float64            `json:"bearing_deg"`
	Action    *truck.ActionResult `json:"action"` // the driver's final action (delivered, failed), or null
	// GeoURI opens the destination in the tablet's navigation app: geo:lat,lon?q=lat,lon(label).
	GeoURI string `json:"geo_uri"`
}

// ordersBody is GET /api/orders and the page's snapshot.
type ordersBody struct {
	Position *sdk.Fix    `json:"position"` // null without a fix
	Orders   []OrderView `json:"orders"`
	// Next continues the list of closed orders (?cursor=Next); absent on the last page and in the snapshot.
	Next string `json:"next,omitempty"`
}

// actionBody is what an action request may carry. The reason is kept raw until checked: encoding/json
// silently replaces invalid UTF-8 and unpaired \u surrogate escapes with U+FFFD, and a reason goes into a
// signed proof of delivery, so it is refused instead.
type actionBody struct {
	Reason json.RawMessage `json:"reason"`
	Via    string          `json:"via"`
}

// errBadText is a JSON string that is not valid UTF-8 once decoded.
var errBadText = errors.New("not valid UTF-8 (invalid bytes, or a \\u escape of an unpaired surrogate)")

// jsonText decodes one JSON string (or null, as "") that must be valid UTF-8: errBadText when its bytes are
// not UTF-8 or an escape names an unpaired surrogate, the decoding error when it is not a string.
func jsonText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 {
		return "", nil
	}
	if !utf8.Valid(raw) {
		return "", errBadText
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", err
	}
	if raw[0] != '"' {
		return s, nil // null
	}
	hex := func(b []byte) rune {
		var r rune
		for _, c := range b {
			switch {
			case c >= '0' && c <= '9':
				c -= '0'
			case c >= 'a' && c <= 'f':
				c -= 'a' - 10
			default:
				c -= 'A' - 10
			}
			r = r<<4 | rune(c)
		}
		return r
	}
	// The string is valid JSON (Unmarshal said so): every backslash starts a complete escape.
	for i := 1; i < len(raw)-1; {
		if raw[i] != '\\' {
			i++
			continue
		}
		if raw[i+1] != 'u' {
			i += 2
			continue
		}
		r := hex(raw[i+2 : i+6])
		i += 6
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return "", errBadText // a low surrogate alone
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 > len(raw)-1 || raw[i] != '\\' || raw[i+1] != 'u' {
				return "", errBadText
			}
			if lo := hex(raw[i+2 : i+6]); lo < 0xDC00 || lo > 0xDFFF {
				return "", errBadText
			}
			i += 6
		}
	}
	return s, nil
}

// ActionResponse is the answer to an action: the proof of delivery queued for it.
type ActionResponse struct {
	OrderID string             `json:"order_id"`
	State   truck.State        `json:"state"` // the order's state after the action
	Event   truck.ActionResult `json:"event"`
}

// errorBody is every error answer.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode the answer","code":"internal"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Code: code})
}

// view turns an entry into its OrderView, with distance and bearing from fix when there is one.
func view(e truck.Entry, fix sdk.Fix, hasFix bool) OrderView {
	o := e.Order
	v := OrderView{ID: o.ID, Revision: o.Revision, State: e.State, Recipient: o.Recipient, Address: o.Address,
		Notes: o.Notes, Lat: o.Lat, Lon: o.Lon, RadiusM: o.RadiusM, Expires: o.Expires, Received: e.Received,
		Arrived: e.Arrived, Conflict: e.Conflict, Problems: e.Problems, Action: e.Action}
	v.GeoURI = geoURI(o.Lat, o.Lon, navLabel(o.Recipient, o.Address, o.ID))
	if hasFix {
		d := math.Round(truck.Distance(fix.Lat, fix.Lon, o.Lat, o.Lon))
		b := math.Round(truck.Bearing(fix.Lat, fix.Lon, o.Lat, o.Lon))
		v.Distance, v.Bearing = &d, &b
	}
	return v
}

// geoURI is a geo: URI (RFC 5870) for a point, with the "q" parameter Android's and iOS's navigation apps
// read to drop a pin named label: geo:52.52,13.405?q=52.52,13.405(Ada%20Lovelace). Coordinates are rounded
// to 6 decimals (0.1 m) and written without an exponent; the label is percent-encoded except for RFC 3986's
// unreserved characters, so spaces, parentheses, '&', '#' and non-ASCII text cannot end the label or the URI.
func geoURI(lat, lon float64, label string) string {
	c := coord(lat) + "," + coord(lon)
	return "geo:" + c + "?q=" + c + "(" + escapeAll(label) + ")"
}

func coord(v float64) string {
	v = math.Round(v*1e6) / 1e6
	if v == 0 {
		v = 0 // not "-0"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// escapeAll percent-encodes every byte but ALPHA, DIGIT, '-', '.', '_' and '~' (url.PathEscape and
// QueryEscape leave '(' ')' or '&' alone, or write spaces as '+', which some apps show literally).
func escapeAll(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// navLabel names the pin the navigation app drops: recipient and address, or the order's ID without them.
func navLabel(recipient, address, id string) string {
	var parts []string
	for _, p := range []string{recipient, address} {
		if p = strings.Join(strings.Fields(p), " "); p != "" {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return id
	}
	return strings.Join(parts, ", ")
}

// sortActive puts active orders nearest first when there is a fix and oldest received first otherwise
// (the order the button picks from); ties go to the smaller id.
func sortActive(vs []OrderView) {
	sort.SliceStable(vs, func(i, j int) bool {
		a, b := vs[i], vs[j]
		if a.Distance != nil && b.Distance != nil && *a.Distance != *b.Distance {
			return *a.Distance < *b.Distance
		}
		if !a.Received.Equal(b.Received) {
			return a.Received.Before(b.Received)
		}
		return a.ID < b.ID
	})
}

// recentLimit is the most closed orders a page's snapshot holds: the newest of those closed within
// Config.Recent.
const recentLimit = 200

// answer builds a list from active orders and a page of closed ones, measured from the latest fix: the
// active orders first (sortActive), then the closed ones as the page has them, newest closed first, with
// the page's cursor. The two come from two reads, so an order that closed between them is in both: it is
// shown once, closed.
func (s *Server) answer(active []truck.Entry, closed truck.ClosedPage) ordersBody {
	fix, ok := s.cfg.Position()
	body := ordersBody{Orders: make([]OrderView, 0, len(active)+len(closed.Entries)), Next: closed.Next}
	if ok {
		body.Position = &fix
	}
	isClosed := make(map[string]bool, len(closed.Entries))
	for _, e := range closed.Entries {
		isClosed[e.Order.ID] = true
	}
	for _, e := range active {
		if e.State == truck.StateActive && !isClosed[e.Order.ID] {
			body.Orders = append(body.Orders, view(e, fix, ok))
		}
	}
	sortActive(body.Orders)
	for _, e := range closed.Entries {
		body.Orders = append(body.Orders, view(e, fix, ok))
	}
	return body
}

// snapshot is the page's list: the active orders and the newest recentLimit orders closed within
// cfg.Recent (by the close time the order book recorded), so a page that reconnects still sees a
// cancellation it missed. It reads the active-order index and one page of closed orders, never the whole
// book. When the closed orders cannot be read the snapshot holds the active ones (the error is logged): the
// driver's work goes on.
func (s *Server) snapshot() (ordersBody, error) {
	active, err := s.cfg.Orders.Active()
	if err != nil {
		return ordersBody{}, err
	}
	closed, err := s.cfg.Orders.Closed(truck.ClosedQuery{Since: s.cfg.Clock().Add(-s.cfg.Recent), Limit: recentLimit})
	if err != nil {
		s.cfg.Logger.Error("driver: recently closed orders for the page; it lists the active ones only", "err", err)
		closed = truck.ClosedPage{}
	}
	body := s.answer(active, closed)
	body.Next = "" // not paged: older closed orders are not the page's business
	return body, nil
}

// isState reports whether st is a state an order can be in.
func isState(st truck.State) bool {
	switch st {
	case truck.StateActive, truck.StateDelivered, truck.StateFailed, truck.StateCancelled:
		return true
	}
	return false
}

// handleOrders is GET /api/orders[?state=][&limit=][&cursor=]: the active orders (state=active, not paged),
// a page of closed orders in one state (state=delivered|failed|cancelled), or without a state the active
// orders and a page of closed orders of every state (the following pages, with ?cursor=, hold closed
// orders only).
func (s *Server) handleOrders(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	q := r.URL.Query()
	st := truck.State(q.Get("state"))
	if st != "" && !isState(st) {
		writeError(w, http.StatusBadRequest, "bad_state", fmt.Sprintf("state %q is not one of active, delivered, failed, cancelled", st))
		return
	}
	page := truck.ClosedQuery{State: st, Limit: truck.DefaultPageSize, Cursor: q.Get("cursor")}
	if q.Has("limit") {
		if st == truck.StateActive {
			writeError(w, http.StatusBadRequest, "bad_limit", "active orders are listed whole: limit applies to closed orders "+
				"(state delivered, failed, cancelled, or no state)")
			return
		}
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > truck.MaxPageSize {
			writeError(w, http.StatusBadRequest, "bad_limit",
				fmt.Sprintf("limit %q is not a whole number from 1 to %d", q.Get("limit"), truck.MaxPageSize))
			return
		}
		page.Limit = n
	}
	if q.Has("cursor") {
		switch {
		case st == truck.StateActive:
			writeError(w, http.StatusBadRequest, "bad_cursor", "active orders are listed whole: cursor applies to closed orders "+
				"(state delivered, failed, cancelled, or no state)")
			return
		case page.Cursor == "":
			writeError(w, http.StatusBadRequest, "bad_cursor", "cursor is empty: pass the \"next\" of the previous answer, "+
				"or leave cursor out for the first page")
			return
		}
	}
	var active []truck.Entry
	var closed truck.ClosedPage
	var err error
	if st == truck.StateActive || st == "" && page.Cursor == "" {
		if active, err = s.cfg.Orders.Active(); err != nil {
			s.internal(w, "list active orders", err)
			return
		}
	}
	if st != truck.StateActive {
		closed, err = s.cfg.Orders.Closed(page)
		switch {
		case errors.Is(err, truck.ErrBadCursor):
			writeError(w, http.StatusBadRequest, "bad_cursor",
				fmt.Sprintf("cursor %q is not one this truck gave: pass the \"next\" of the previous answer", page.Cursor))
			return
		case err != nil:
			s.internal(w, "list closed orders", err)
			return
		}
	}
	writeJSON(w, http.StatusOK, s.answer(active, closed))
}

func (s *Server) handleOrder(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	id := r.PathValue("id")
	e, found, err := s.cfg.Orders.Get(id)
	if err != nil {
		s.internal(w, "read the order", err)
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, "unknown_order", fmt.Sprintf("no order %q on this truck", id))
		return
	}
	fix, ok := s.cfg.Position()
	writeJSON(w, http.StatusOK, view(e, fix, ok))
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	counts, err := s.cfg.Orders.Counts()
	if err != nil {
		s.internal(w, "count orders", err)
		return
	}
	orders := map[truck.State]int{truck.StateActive: 0, truck.StateDelivered: 0, truck.StateFailed: 0, truck.StateCancelled: 0}
	for k, n := range counts {
		orders[k] = n
	}
	var st struct {
		Agent    any                 `json:"agent"`
		Position *sdk.Fix            `json:"position"`
		Orders   map[truck.State]int `json:"orders"`
		Pages    int                 `json:"pages"` // driver pages connected to the event stream
	}
	if s.cfg.Status != nil {
		st.Agent = s.cfg.Status()
	}
	if fix, ok := s.cfg.Position(); ok {
		st.Position = &fix
	}
	st.Orders = orders
	s.mu.Lock()
	st.Pages = len(s.subs)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, st)
}

var actionKinds = map[string]sdk.EventKind{
	"delivered": sdk.EventDelivered,
	"failed":    sdk.EventFailed,
	"problem":   sdk.EventProblem,
}

func (s *Server) handleAction(w http.ResponseWriter, r *http.Request) {
	kind, ok := actionKinds[r.PathValue("action")]
	if !ok {
		writeError(w, http.StatusNotFound, "unknown_action",
			fmt.Sprintf("no action %q: use delivered, failed or problem", r.PathValue("action")))
		return
	}
	if !allow(w, r, http.MethodPost) {
		return
	}
	a, status, code, msg := s.parseAction(r, kind)
	if status != 0 {
		writeError(w, status, code, msg)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		status, body := s.act(r.Context(), a)
		writeRaw(w, status, body)
		return
	}
	if len(key) > 255 || strings.IndexFunc(key, func(c rune) bool { return c < 0x21 || c > 0x7e }) >= 0 {
		writeError(w, http.StatusBadRequest, "bad_idempotency_key", "Idempotency-Key must be 1 to 255 visible ASCII characters")
		return
	}
	fp := fmt.Sprintf("%s\x00%s\x00%s\x00%d", a.OrderID, kind, a.Reason, a.Via)
	status, body, err := s.idem.do(r.Context(), key, fp, s.cfg.Clock, func() (int, []byte) { return s.act(r.Context(), a) })
	switch {
	case errors.Is(err, errKeyReused):
		writeError(w, http.StatusUnprocessableEntity, "idempotency_key_reused",
			"this Idempotency-Key was used for a different request (order, action, reason or via)")
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "canceled", "request ended while waiting for the same Idempotency-Key: "+err.Error())
	default:
		writeRaw(w, status, body)
	}
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// parseAction reads and checks an action request. A non-zero status is the error to answer.
func (s *Server) parseAction(r *http.Request, kind sdk.EventKind) (a truck.Action, status int, code, msg string) {
	if r.ContentLength > s.cfg.MaxBody {
		return a, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body is over %d bytes", s.cfg.MaxBody)
	}
	raw, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, s.cfg.MaxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return a, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body is over %d bytes", s.cfg.MaxBody)
	case err != nil:
		return a, http.StatusBadRequest, "bad_body", "reading the body: " + err.Error()
	}
	var b actionBody
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			return a, http.StatusBadRequest, "bad_json", "the body is not a JSON object {\"reason\": \"...\", \"via\": \"http\"|\"screen\"}: " + err.Error()
		}
		if dec.More() {
			return a, http.StatusBadRequest, "bad_json", "the body has data after the JSON object"
		}
	}
	reason, err := jsonText(b.Reason)
	switch {
	case errors.Is(err, errBadText):
		return a, http.StatusUnprocessableEntity, "bad_reason", "the reason is " + err.Error()
	case err != nil:
		return a, http.StatusBadRequest, "bad_json", "the reason is not a JSON string: " + err.Error()
	}
	a = truck.Action{OrderID: r.PathValue("id"), Kind: kind, Reason: strings.TrimSpace(reason), Via: sdk.ViaHTTP}
	switch b.Via {
	case "", "http":
	case "screen":
		a.Via = sdk.ViaScreen
	default:
		return a, http.StatusUnprocessableEntity, "bad_via", fmt.Sprintf("via %q is not http or screen", b.Via)
	}
	switch {
	case kind != sdk.EventDelivered && a.Reason == "":
		return a, http.StatusUnprocessableEntity, "reason_required", fmt.Sprintf("a %s action needs a reason", kind)
	case len(a.Reason) > s.cfg.MaxReason:
		return a, http.StatusUnprocessableEntity, "reason_too_long", fmt.Sprintf("the reason is over %d bytes", s.cfg.MaxReason)
	case !utf8.ValidString(a.Reason):
		return a, http.StatusUnprocessableEntity, "bad_reason", "the reason is not valid UTF-8"
	}
	if fix, ok := s.cfg.Position(); ok {
		a.Fix = &fix
	}
	return a, 0, "", ""
}

// act records the action and returns the answer. It answers only once Act has returned, so an OK means
// the proof is on disk. The write is not cut short when the client hangs up.
func (s *Server) act(ctx context.Context, a truck.Action) (int, []byte) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ActTimeout)
	defer cancel()
	res, err := s.cfg.Orders.Act(ctx, a)
	var status int
	var body any
	switch {
	case err == nil:
		st := truck.StateActive
		switch res.Kind {
		case sdk.EventDelivered:
			st = truck.StateDelivered
		case sdk.EventFailed:
			st = truck.StateFailed
		}
		s.cfg.Logger.Info("driver: action recorded", "order", a.OrderID, "kind", res.Kind, "via", res.Via,
			"seq", res.Seq, "off_site", res.OffSite)
		status, body = http.StatusOK, ActionResponse{OrderID: a.OrderID, State: st, Event: res}
	case errors.Is(err, truck.ErrUnknownOrder):
		status, body = http.StatusNotFound, errorBody{fmt.Sprintf("no order %q on this truck", a.OrderID), "unknown_order"}
	case errors.Is(err, truck.ErrOrderCancelled):
		status, body = http.StatusConflict, errorBody{fmt.Sprintf("order %q was cancelled by dispatch", a.OrderID), "order_cancelled"}
	case errors.Is(err, truck.ErrBadReason):
		status, body = http.StatusUnprocessableEntity, errorBody{"the reason is not valid UTF-8", "bad_reason"}
	case errors.Is(err, truck.ErrOrderClosed):
		status, body = http.StatusConflict, errorBody{strings.TrimPrefix(err.Error(), "truck: "), "order_closed"}
	case errors.Is(err, context.DeadlineExceeded):
		s.cfg.Logger.Error("driver: action timed out", "order", a.OrderID, "kind", a.Kind, "err", err)
		status, body = http.StatusServiceUnavailable, errorBody{"the store did not record the action in time; try again", "store_timeout"}
	default:
		s.cfg.Logger.Error("driver: action failed", "order", a.OrderID, "kind", a.Kind, "err", err)
		status, body = http.StatusInternalServerError, errorBody{"the action was not recorded: " + err.Error(), "internal"}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return http.StatusInternalServerError, []byte(`{"error":"cannot encode the answer","code":"internal"}` + "\n")
	}
	return status, append(b, '\n')
}

func (s *Server) internal(w http.ResponseWriter, what string, err error) {
	s.cfg.Logger.Error("driver: "+what, "err", err)
	writeError(w, http.StatusInternalServerError, "internal", what+": "+err.Error())
}
