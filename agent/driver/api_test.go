package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/truck"
)

// TestListOrders: the hook lists the order book with distance and bearing from the latest fix, active
// orders nearest first, and filters by state.
func TestListOrders(t *testing.T) {
	f := newFixture(t, nil)
	near, far, gone := newOrder("o-near", 1), newOrder("o-far", 1), newOrder("o-gone", 1)
	near.Lat, far.Lat = 52.5210, 52.5300 // about 111 m and 1,112 m north of the fix
	f.send(far)
	f.send(near)
	f.send(gone)
	f.send(cancelled(gone))

	var body ordersBody
	r := f.do("GET", "/api/orders", "")
	r.json(t, &body)
	if r.status != 200 || body.Position != nil || len(body.Orders) != 3 || body.Orders[0].Distance != nil {
		t.Fatalf("without a fix: %d %s", r.status, r.body)
	}
	if body.Orders[0].ID != "o-far" || body.Orders[2].ID != "o-gone" {
		t.Fatalf("without a fix active orders go oldest first, closed last: %s", r.body)
	}

	f.setFix(sdk.Fix{Time: time.Now().UTC().Truncate(time.Millisecond), Lat: 52.5200, Lon: 13.4050, Mode: 3})
	r = f.do("GET", "/api/orders?state=active", "")
	body = ordersBody{}
	r.json(t, &body)
	if r.status != 200 || body.Position == nil || len(body.Orders) != 2 {
		t.Fatalf("active with a fix: %d %s", r.status, r.body)
	}
	n := body.Orders[0]
	if n.ID != "o-near" || n.Distance == nil || math.Abs(*n.Distance-111) > 1 || *n.Bearing != 0 ||
		n.Recipient != "A. Recipient" || n.Address != "1 Main St" || n.Notes != "ring twice" || n.State != truck.StateActive {
		t.Fatalf("nearest order = %s", r.body)
	}
	if d := *body.Orders[1].Distance; math.Abs(d-1112) > 2 {
		t.Fatalf("far order at %v m", d)
	}

	r = f.do("GET", "/api/orders?state=cancelled", "")
	body = ordersBody{}
	r.json(t, &body)
	if len(body.Orders) != 1 || body.Orders[0].ID != "o-gone" || body.Orders[0].State != truck.StateCancelled {
		t.Fatalf("cancelled: %s", r.body)
	}
	var one OrderView
	r = f.do("GET", "/api/orders/o-far", "")
	r.json(t, &one)
	if r.status != 200 || one.ID != "o-far" || one.Revision != 1 {
		t.Fatalf("one order: %d %s", r.status, r.body)
	}
	wantError(t, "one unknown order", f.do("GET", "/api/orders/o-none", ""), 404, "unknown_order")
	wantError(t, "bad state filter", f.do("GET", "/api/orders?state=lost", ""), 400, "bad_state")
}

// TestActions: each action's answer comes after its proof is in the store, carries the event, and is the
// same when repeated; every error has its status and code.
func TestActions(t *testing.T) {
	f := newFixture(t, nil)
	f.send(newOrder("o-1", 1))
	f.send(newOrder("o-2", 1))
	o3 := newOrder("o-3", 1)
	f.send(o3)
	f.send(cancelled(o3))
	fix := sdk.Fix{Time: time.Now().UTC().Truncate(time.Millisecond), Lat: 52.5300, Lon: 13.4050, Mode: 3}
	f.setFix(fix)

	r := f.do("POST", "/api/orders/o-1/delivered", "")
	var got ActionResponse
	r.json(t, &got)
	if r.status != 200 || got.OrderID != "o-1" || got.State != truck.StateDelivered || got.Event.Kind != sdk.EventDelivered ||
		got.Event.Via != sdk.ViaHTTP || got.Event.Seq == 0 || !got.Event.OffSite || got.Event.Fix == nil {
		t.Fatalf("delivered: %d %s", r.status, r.body)
	}
	// The proof is in the store when the answer comes.
	ev := f.events()[got.Event.Seq]
	if ev == nil || ev.Kind != sdk.EventDelivered || ev.OrderID != "o-1" || ev.Via != sdk.ViaHTTP || !ev.OffSite ||
		ev.Fix == nil || ev.Fix.Lat != fix.Lat {
		t.Fatalf("store event for seq %d = %+v", got.Event.Seq, ev)
	}
	// Repeating it, even from the page, returns the same event byte for byte; nothing new is queued.
	again := f.do("POST", "/api/orders/o-1/delivered", `{"via":"screen"}`)
	if again.status != 200 || !bytes.Equal(again.body, r.body) {
		t.Fatalf("repeat: %d %s, first %s", again.status, again.body, r.body)
	}
	if n := len(f.events()); n != 1 {
		t.Fatalf("%d driver events in the store after a repeat, want 1", n)
	}

	// Failed, from the page, with a reason.
	r = f.do("POST", "/api/orders/o-2/failed", `{"reason":"  nobody home ","via":"screen"}`, "Content-Type", "application/json")
	got = ActionResponse{}
	r.json(t, &got)
	if r.status != 200 || got.State != truck.StateFailed || got.Event.Reason != "nobody home" || got.Event.Via != sdk.ViaScreen {
		t.Fatalf("failed: %d %s", r.status, r.body)
	}

	long := `{"reason":"` + strings.Repeat("x", 501) + `"}`
	huge := `{"reason":"` + strings.Repeat("x", 17<<10) + `"}`
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"unknown order", "POST", "/api/orders/o-none/delivered", "", 404, "unknown_order"},
		{"unknown action", "POST", "/api/orders/o-1/lost", "", 404, "unknown_action"},
		{"unknown path", "GET", "/api/nothing", "", 404, "not_found"},
		{"cancelled order", "POST", "/api/orders/o-3/delivered", "", 409, "order_cancelled"},
		{"fail a delivered order", "POST", "/api/orders/o-1/failed", `{"reason":"x"}`, 409, "order_closed"},
		{"deliver a failed order", "POST", "/api/orders/o-2/delivered", "", 409, "order_closed"},
		{"GET an action", "GET", "/api/orders/o-1/delivered", "", 405, "method_not_allowed"},
		{"DELETE the list", "DELETE", "/api/orders", "", 405, "method_not_allowed"},
		{"POST status", "POST", "/api/status", "", 405, "method_not_allowed"},
		{"POST events", "POST", "/events", "", 405, "method_not_allowed"},
		{"body over the limit", "POST", "/api/orders/o-1/problem", huge, 413, "body_too_large"},
		{"malformed JSON", "POST", "/api/orders/o-1/problem", `{"reason": "flat tyre"`, 400, "bad_json"},
		{"not an object", "POST", "/api/orders/o-1/problem", `["flat tyre"]`, 400, "bad_json"},
		{"unknown field", "POST", "/api/orders/o-1/problem", `{"reson":"flat tyre"}`, 400, "bad_json"},
		{"two objects", "POST", "/api/orders/o-1/problem", `{"reason":"a"} {"reason":"b"}`, 400, "bad_json"},
		{"missing reason for failed", "POST", "/api/orders/o-1/failed", `{"via":"http"}`, 422, "reason_required"},
		{"blank reason for problem", "POST", "/api/orders/o-1/problem", `{"reason":"   "}`, 422, "reason_required"},
		{"reason too long", "POST", "/api/orders/o-1/problem", long, 422, "reason_too_long"},
		{"bad via", "POST", "/api/orders/o-1/problem", `{"reason":"x","via":"button"}`, 422, "bad_via"},
	} {
		r := f.do(c.method, c.path, c.body)
		wantError(t, c.name, r, c.status, c.code)
		if c.status == 405 && r.header.Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", c.name)
		}
	}
	if a := f.do("GET", "/api/orders/o-1/delivered", "").header.Get("Allow"); a != "POST" {
		t.Errorf("Allow on an action = %q", a)
	}
	if a := f.do("PUT", "/api/orders", "").header.Get("Allow"); a != "GET, HEAD" {
		t.Errorf("Allow on the list = %q", a)
	}
	// A body over the limit sent without a Content-Length (chunked) is refused as well.
	req, _ := http.NewRequest("POST", f.http.URL+"/api/orders/o-1/problem", io.MultiReader(strings.NewReader(huge)))
	req.ContentLength = -1
	wantError(t, "chunked body over the limit", f.roundTrip(req), 413, "body_too_large")
	if n := len(f.events()); n != 2 {
		t.Fatalf("%d driver events after the refused requests, want 2", n)
	}
}

// TestProblemIdempotencyKey: problems are recorded each time, unless the request repeats an
// Idempotency-Key; concurrent requests with one key record one event; a key reused for another request
// is refused; a server error is not remembered.
func TestProblemIdempotencyKey(t *testing.T) {
	var fail sync.Mutex
	failing := false
	var f *fixture
	f = newFixture(t, func(c *Config) {
		book := c.Orders
		c.Orders = faultyOrders{Orders: book, fail: func() error {
			fail.Lock()
			defer fail.Unlock()
			if failing {
				return errors.New("disk on fire")
			}
			return nil
		}}
	})
	f.send(newOrder("o-1", 1))

	a := f.do("POST", "/api/orders/o-1/problem", `{"reason":"gate locked"}`)
	b := f.do("POST", "/api/orders/o-1/problem", `{"reason":"gate locked"}`)
	if a.status != 200 || b.status != 200 || bytes.Equal(a.body, b.body) {
		t.Fatalf("two problems without a key: %s / %s", a.body, b.body)
	}

	// Eight concurrent requests with one key: one event, eight identical answers.
	var wg sync.WaitGroup
	answers := make([]response, 8)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", f.http.URL+"/api/orders/o-1/problem", strings.NewReader(`{"reason":"dog"}`))
			req.Header.Set("Idempotency-Key", "k-dog")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			answers[i] = response{status: res.StatusCode, body: body}
		}()
	}
	wg.Wait()
	for _, r := range answers {
		if r.status != 200 || !bytes.Equal(r.body, answers[0].body) {
			t.Fatalf("answers with one key differ: %d %s vs %s", r.status, r.body, answers[0].body)
		}
	}
	if n := len(f.events()); n != 3 {
		t.Fatalf("%d problem events, want 3 (two without a key, one with)", n)
	}
	entries, _ := f.book.Orders()
	if entries[0].Problems != 3 {
		t.Fatalf("order book counts %d problems", entries[0].Problems)
	}
	wantError(t, "key reused for another reason",
		f.do("POST", "/api/orders/o-1/problem", `{"reason":"cat"}`, "Idempotency-Key", "k-dog"), 422, "idempotency_key_reused")
	wantError(t, "key with a space",
		f.do("POST", "/api/orders/o-1/problem", `{"reason":"cat"}`, "Idempotency-Key", "a b"), 400, "bad_idempotency_key")

	// A store failure is answered 500 and not remembered: the retry with the same key records the problem.
	fail.Lock()
	failing = true
	fail.Unlock()
	wantError(t, "store failure", f.do("POST", "/api/orders/o-1/problem", `{"reason":"flat"}`, "Idempotency-Key", "k-flat"), 500, "internal")
	fail.Lock()
	failing = false
	fail.Unlock()
	r := f.do("POST", "/api/orders/o-1/problem", `{"reason":"flat"}`, "Idempotency-Key", "k-flat")
	if r.status != 200 {
		t.Fatalf("retry after a store failure: %d %s", r.status, r.body)
	}
	// A key answered with a client error keeps that answer.
	wantError(t, "unknown order with a key", f.do("POST", "/api/orders/o-x/problem", `{"reason":"x"}`, "Idempotency-Key", "k-x"), 404, "unknown_order")
	f.send(newOrder("o-x", 1))
	wantError(t, "same key after the order arrived", f.do("POST", "/api/orders/o-x/problem", `{"reason":"x"}`, "Idempotency-Key", "k-x"), 404, "unknown_order")
}

// faultyOrders injects store failures into Act.
type faultyOrders struct {
	Orders
	fail func() error
}

func (o faultyOrders) Act(ctx context.Context, a truck.Action) (truck.ActionResult, error) {
	if err := o.fail(); err != nil {
		return truck.ActionResult{}, err
	}
	return o.Orders.Act(ctx, a)
}

// TestIdempotencyCacheBounds: keys expire after the TTL and the oldest go first beyond the limit.
func TestIdempotencyCacheBounds(t *testing.T) {
	c := newIdemCache(2, time.Hour)
	now := time.Unix(1e9, 0)
	clock := func() time.Time { return now }
	runs := 0
	fn := func() (int, []byte) { runs++; return 200, []byte{byte(runs)} }
	do := func(key string) byte {
		_, b, err := c.do(context.Background(), key, "fp", clock, fn)
		if err != nil {
			t.Fatal(err)
		}
		return b[0]
	}
	if do("a") != 1 || do("a") != 1 || do("b") != 2 {
		t.Fatal("keys not remembered")
	}
	if do("c") != 3 || do("a") != 4 { // "a" was the oldest of three
		t.Fatal("oldest key not forgotten beyond the limit")
	}
	now = now.Add(2 * time.Hour)
	if do("c") != 5 {
		t.Fatal("key not forgotten after the TTL")
	}
	if len(c.m) > 2 || len(c.order) > 3 {
		t.Fatalf("cache holds %d keys, %d in order", len(c.m), len(c.order))
	}
}

// TestStatus: the agent's status, the fix and the order counts.
func TestStatus(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Status = func() any { return map[string]any{"version": "test", "queue": 3} } })
	f.send(newOrder("o-1", 1))
	o2 := newOrder("o-2", 1)
	f.send(o2)
	f.send(cancelled(o2))
	var st struct {
		Agent    map[string]any      `json:"agent"`
		Position *sdk.Fix            `json:"position"`
		Orders   map[truck.State]int `json:"orders"`
		Pages    int                 `json:"pages"`
	}
	r := f.do("GET", "/api/status", "")
	r.json(t, &st)
	if r.status != 200 || st.Agent["version"] != "test" || st.Position != nil || st.Orders[truck.StateActive] != 1 ||
		st.Orders[truck.StateCancelled] != 1 || st.Orders[truck.StateDelivered] != 0 {
		t.Fatalf("status: %d %s", r.status, r.body)
	}
}

// TestPageIsSelfContained: the page is served with a strict policy and refers to nothing outside itself.
func TestPageIsSelfContained(t *testing.T) {
	f := newFixture(t, nil)
	r := f.do("GET", "/", "")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") ||
		!strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("page: %d %v", r.status, r.header)
	}
	for _, bad := range []string{"http://", "https://", "//cdn", "src=\"", "href=\"", "@import", "url("} {
		if bytes.Contains(r.body, []byte(bad)) {
			t.Errorf("the page refers to something outside itself: %q", bad)
		}
	}
	if h := f.do("HEAD", "/", ""); h.status != 200 || len(h.body) != 0 {
		t.Fatalf("HEAD: %d %d bytes", h.status, len(h.body))
	}
	wantError(t, "POST the page", f.do("POST", "/", "x"), 405, "method_not_allowed")
}

// TestActionReasonNotUTF8 (issue 10, 6): a reason that is not valid UTF-8, as raw bytes or as a \u escape of
// an unpaired surrogate, is refused with 422 bad_reason instead of being replaced with U+FFFD, and nothing
// is recorded; escapes that do make valid text are accepted.
func TestActionReasonNotUTF8(t *testing.T) {
	f := newFixture(t, nil)
	f.send(newOrder("o-1", 1))
	for _, c := range []struct{ name, body string }{
		{"invalid bytes", "{\"reason\":\"nobody home \xff\xfe\"}"},
		{"truncated sequence", "{\"reason\":\"Stra\xc3\"}"},
		{"lone high surrogate", `{"reason":"dog \ud83d"}`},
		{"lone high surrogate at the end", `{"reason":"\ud83d"}`},
		{"lone low surrogate", `{"reason":"\udce6 dog"}`},
		{"high surrogate then a letter", `{"reason":"\ud83d\u0041"}`},
	} {
		wantError(t, c.name, f.do("POST", "/api/orders/o-1/problem", c.body), 422, "bad_reason")
		wantError(t, c.name+", with a key", f.do("POST", "/api/orders/o-1/problem", c.body, "Idempotency-Key", "k-"+strings.ReplaceAll(c.name, " ", "-")), 422, "bad_reason")
	}
	wantError(t, "failed, invalid bytes", f.do("POST", "/api/orders/o-1/failed", "{\"reason\":\"\xc0\xaf\"}"), 422, "bad_reason")
	wantError(t, "reason not a string", f.do("POST", "/api/orders/o-1/problem", `{"reason":42}`), 400, "bad_json")
	if n := len(f.events()); n != 0 {
		t.Fatalf("%d driver events after refused reasons, want 0", n)
	}
	// Valid text, escaped or not, is kept as sent.
	for _, c := range []struct{ body, want string }{
		{`{"reason":"parcel \ud83d\udce6 at the door"}`, "parcel \U0001F4E6 at the door"},
		{`{"reason":"literal \\ud800 text"}`, `literal \ud800 text`},
		{`{"reason":"Straße \u00e9 \"quoted\""}`, `Straße é "quoted"`},
		{`{"reason":"a real \ufffd in the text"}`, "a real \uFFFD in the text"},
	} {
		r := f.do("POST", "/api/orders/o-1/problem", c.body)
		var got ActionResponse
		r.json(t, &got)
		if r.status != 200 || got.Event.Reason != c.want {
			t.Fatalf("%s: %d %s, want reason %q", c.body, r.status, r.body, c.want)
		}
	}
	r := f.do("POST", "/api/orders/o-1/delivered", `{"reason":null}`)
	if r.status != 200 {
		t.Fatalf("delivered with a null reason: %d %s", r.status, r.body)
	}
	// Book.Act's own refusal maps to the same answer.
	status, body := f.srv.act(context.Background(), truck.Action{OrderID: "o-1", Kind: sdk.EventProblem, Reason: "x\xff", Via: sdk.ViaHTTP})
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil || status != 422 || eb.Code != "bad_reason" || eb.Error == "" {
		t.Fatalf("act with an invalid reason: %d %s", status, body)
	}
}
