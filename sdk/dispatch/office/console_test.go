package office_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/waybill-iot/waybill/sdk/sdktest/browsertest"

	"github.com/waybill-iot/waybill/sdk"
	service "github.com/waybill-iot/waybill/sdk/dispatch/office"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/sdktest/trucktest"
	"github.com/waybill-iot/waybill/sdk/truck"
)

// get fetches a URL without any credentials.
func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// streams opens n console event streams with the bearer token and returns their status codes; close ends them.
func streams(t *testing.T, base string, n int) (codes []int, close func()) {
	t.Helper()
	var bodies []io.Closer
	for range n {
		req, _ := http.NewRequest("GET", base+"/api/events", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, resp.StatusCode)
		bodies = append(bodies, resp.Body)
	}
	return codes, func() {
		for _, b := range bodies {
			b.Close()
		}
	}
}

func keys(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

// TestConsoleInChromium drives the console in headless Chromium against the office process on each
// engine (embedded and PostgreSQL), with Mosquitto (mutual TLS) and a real truck client: sign in (the cookie is HttpOnly),
// create orders in the console that reach the truck, the driver's delivery back in the console pushed over
// the event stream, the truck's live position on the map (read back from the canvas's pixels), the truck
// page (status, events, a track for a time range), the proofs, a revision and a cancellation from the
// console; and the customer tracking page, which shows its order's state and, while the truck is on its
// way, the truck's position and distance, and nothing else.
func TestConsoleInChromium(t *testing.T) {
	// One screen per engine: a laptop's, and a tablet's held upright.
	screens := map[string][2]int{"embedded": {1366, 768}, "postgres": {768, 1024}}
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) { consoleInChromium(t, e, screens[e.name]) })
	}
}

func consoleInChromium(t *testing.T, e engine, screen [2]int) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	officeCl, trCl := b.ClientFiles("office"), b.Truck("truck-1")
	st := e.open(t, officeCl)
	o := startOfficeConfig(t, b, officeCl, st, "", func(c *service.Config) { c.MaxStreams = 2 }, trCl)
	tr, tst := trucktest.Run(t, b, trCl, trucktest.Options{Health: true})
	waitFor(t, "the truck online at the office", func() bool {
		var ts []struct{ Online bool }
		json.Unmarshal(o.do(t, "GET", "/api/trucks", nil, 200), &ts)
		return len(ts) == 1 && ts[0].Online
	})

	// The bound on event streams: two open, the third refused; then released.
	codes, closeStreams := streams(t, o.base, 3)
	closeStreams()
	if codes[0] != 200 || codes[1] != 200 || codes[2] != http.StatusServiceUnavailable {
		t.Fatalf("three streams with MaxStreams 2: %v, want [200 200 503]", codes)
	}
	waitFor(t, "the streams released", func() bool {
		return strings.Contains(string(o.do(t, "GET", "/metrics", nil, 200)), "waybill_dispatch_console_streams 0\n")
	})
	if code, _ := get(t, o.base+"/api/orders"); code != http.StatusUnauthorized {
		t.Fatalf("the API without a token: %d", code)
	}

	bt := browsertest.New(t, screen[0], screen[1])
	bctx := bt.Ctx
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(bctx, 20*time.Second)
		defer scancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			page, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("%s: %v\nscript errors: %v\nthe page:\n%s", what, err, bt.JSErrors(), page)
		}
	}
	eval := func(expr string) string { t.Helper(); return bt.Eval(t, expr) }
	// fits checks that the view fits the screen's width: nothing to scroll sideways, no visible element
	// past the right edge.
	fits := func(view string) {
		t.Helper()
		if over := eval(`(() => {
			const out = [...document.querySelectorAll('body *')].filter(e => {
				const r = e.getBoundingClientRect();
				return r.width > 0 && r.height > 0 && r.right > window.innerWidth + 1;
			}).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : ''));
			if (document.documentElement.scrollWidth > window.innerWidth) out.unshift('the document');
			return out.slice(0, 8).join(', ');
		})()`); over != "" {
			t.Errorf("at %dx%d %s do not fit the screen's width: %s", screen[0], screen[1], view, over)
		}
	}
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	// hash moves within the console (a fragment navigation fires no load event to wait for).
	hash := func(h string) chromedp.Action[chromedp.Void] {
		return chromedp.Evaluate[chromedp.Void](fmt.Sprintf("location.hash = %q", h))
	}
	row := func(id, state string) string {
		s := fmt.Sprintf(`#orders tr[data-key="truck-1/%s"]`, id)
		if state != "" {
			s += fmt.Sprintf(`[data-state=%q]`, state)
		}
		return s
	}

	// Sign in: a wrong token is refused, the right one is kept in a cookie the page cannot read.
	step("the login form", chromedp.Navigate(o.base+"/"), chromedp.WaitVisible(css(`#login-token`)))
	step("a wrong token", chromedp.SendKeys(css(`#login-token`), "not-the-token-0000"), chromedp.Click(css(`#login-submit`)),
		chromedp.WaitVisible(css(`#login-failed`)))
	step("the right token", chromedp.SetValue(css(`#login-token`), token), chromedp.Click(css(`#login-submit`)),
		chromedp.WaitVisible(css(`#conn.live`)))
	if c := eval(`document.cookie`); c != "" {
		t.Fatalf("the page's scripts see cookies: %q", c)
	}
	if u := eval(`location.href`); strings.Contains(u, "login") {
		t.Fatalf("the address still says login: %s", u)
	}
	fits("the orders")

	// Two orders created in the console reach the truck.
	create := func(id, recipient, address, lat, lon string) {
		t.Helper()
		step("create "+id, chromedp.Click(css(`#new-order-btn`)), chromedp.WaitVisible(css(`#order-form`)),
			chromedp.SetValue(css(`#order-form [name=truck]`), "truck-1"), chromedp.SetValue(css(`#order-form [name=id]`), id),
			chromedp.SetValue(css(`#order-form [name=recipient]`), recipient), chromedp.SetValue(css(`#order-form [name=address]`), address),
			chromedp.SetValue(css(`#order-form [name=lat]`), lat), chromedp.SetValue(css(`#order-form [name=lon]`), lon),
			chromedp.Click(css(`#order-submit`)), chromedp.WaitNotVisible(css(`#order-form`)), chromedp.WaitVisible(css(row(id, ""))))
	}
	create("o-1", "A. Jones", "1 Quay St", "51.5", "-0.1")
	create("o-2", "B. Smith", "7 Harbour Rd", "51.51", "-0.1")
	for _, id := range []string{"o-1", "o-2"} {
		waitFor(t, "the truck has "+id, func() bool {
			_, ok, _ := tr.Book().Get(id)
			return ok
		})
	}
	step("the truck's confirmations show", chromedp.WaitVisible(css(row("o-1", "received"))),
		chromedp.WaitVisible(css(row("o-2", "received"))))

	// The driver delivers o-1: the console shows it, pushed over the event stream.
	before := time.Now()
	if _, err := tr.Book().Act(context.Background(), truck.Action{OrderID: "o-1", Kind: sdk.EventDelivered, Via: sdk.ViaButton,
		Fix: &sdk.Fix{Time: time.Now().UTC(), Lat: 51.50012, Lon: -0.1, Mode: 3}}); err != nil {
		t.Fatal(err)
	}
	step("o-1 delivered in the console", chromedp.WaitVisible(css(row("o-1", "delivered"))))
	var at int64
	fmt.Sscan(eval(`document.querySelector('`+row("o-1", "")+`').dataset.changedAt`), &at)
	if via := eval(`document.querySelector('` + row("o-1", "") + `').dataset.via`); via != "event" {
		t.Fatalf("the delivery reached the console by %q, want the event stream", via)
	}
	t.Logf("o-1's delivery in the console %v after the driver's action", time.UnixMilli(at).Sub(before).Round(time.Millisecond))

	// The truck's position, live on the map.
	appendFix := func(lat float64) {
		t.Helper()
		enc, err := truck.EncodeFix(sdk.Fix{Time: time.Now().UTC().Truncate(time.Millisecond), Lat: lat, Lon: -0.1, Mode: 3,
			Speed: 8, Has: sdk.FixSpeed})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tst.Append(context.Background(), enc); err != nil {
			t.Fatal(err)
		}
	}
	// markerAt reads the canvas pixel under the truck's marker: the online truck's green.
	markerAt := func(mapID string, lat float64) string {
		t.Helper()
		return eval(fmt.Sprintf(`(() => { const m = wb.maps[%q]; m.draw(); const p = m.screenOf(%v, -0.1), d = devicePixelRatio;
			if (p.x < 0 || p.y < 0 || p.x > m.canvas.clientWidth || p.y > m.canvas.clientHeight) return 'off the canvas';
			const px = m.canvas.getContext('2d').getImageData(Math.round(p.x * d), Math.round(p.y * d), 1, 1).data;
			return px[0] + ',' + px[1] + ',' + px[2]; })()`, mapID, lat))
	}
	const green = "10,125,50"
	appendFix(51.505)
	step("the map", hash("#map"), chromedp.WaitVisible(css(`#fleet-map`)),
		chromedp.Poll[chromedp.Void](`window.wb && wb.maps['fleet-map'] && wb.maps['fleet-map'].trucks.some(m => m.lat === 51.505)`),
		chromedp.WaitVisible(css(`#fleet-list li[data-truck="truck-1"]`)))
	if px := markerAt("fleet-map", 51.505); px != green {
		t.Fatalf("the map at the truck's position: %s, want the online marker %s; %s", px, green,
			eval(`JSON.stringify({t: wb.maps['fleet-map'].trucks, z: wb.maps['fleet-map'].z, lat: wb.maps['fleet-map'].lat, lon: wb.maps['fleet-map'].lon, w: wb.maps['fleet-map'].canvas.width, h: wb.maps['fleet-map'].canvas.height, p: wb.maps['fleet-map'].screenOf(51.505, -0.1)})`))
	}
	appendFix(51.5065)
	step("the truck moves on the map", chromedp.Poll[chromedp.Void](`wb.maps['fleet-map'].trucks.some(m => m.lat === 51.5065)`))
	if px := markerAt("fleet-map", 51.5065); px != green {
		t.Fatalf("the map at the truck's new position: %s, want %s", px, green)
	}
	if px := markerAt("fleet-map", 51.505); px == green {
		t.Fatal("the truck's marker is still at its old position")
	}

	// The truck page: online, its last fix, the delivery among its events, its track for a time range.
	fits("the map")
	step("the truck page", hash("#truck/truck-1"), chromedp.WaitVisible(css(`#tk-online.online`)),
		chromedp.WaitVisible(css(`#tk-events tr[data-kind="delivered"]`)),
		chromedp.Click(css(`#tk-track-show`)), chromedp.WaitVisible(css(`#tk-track-count[data-count="2"]`)))
	if f := eval(`document.querySelector('#tk-fields').innerText`); !strings.Contains(f, "51.506500") || !strings.Contains(f, "Queue") ||
		!strings.Contains(f, "created (first start or a new SD card)") || eval(`String(document.querySelector('#tk-store').hidden)`) != "true" {
		t.Fatalf("truck fields: %q", f)
	}
	if o2 := eval(`document.querySelector('#tk-orders').innerText`); !strings.Contains(o2, "o-2") || strings.Contains(o2, "o-1") {
		t.Fatalf("the truck's open orders: %q", o2)
	}

	// The proof of delivery.
	fits("the truck page")
	step("proofs", hash("#proofs"), chromedp.WaitVisible(css(`#proofs tr[data-order="o-1"]`)))
	if p := eval(`document.querySelector('#proofs tr[data-order="o-1"]').innerText`); strings.Count(p, "✓ verified") != 2 ||
		!strings.Contains(p, "inside radius") {
		t.Fatalf("proof row: %q", p)
	}

	// Revise o-2 from its page: the truck gets revision 2.
	step("revise o-2", hash("#order/truck-1/o-2"), chromedp.WaitVisible(css(`#od-tracking[href]`)),
		chromedp.Click(css(`#od-revise`)), chromedp.WaitVisible(css(`#order-form`)),
		chromedp.SetValue(css(`#order-form [name=address]`), "9 Harbour Rd"), chromedp.Click(css(`#order-submit`)))
	waitFor(t, "revision 2 on the truck", func() bool {
		e, ok, _ := tr.Book().Get("o-2")
		return ok && e.Order.Revision == 2 && e.Order.Address == "9 Harbour Rd" && e.Order.Recipient == "B. Smith"
	})
	step("revision 2 confirmed", chromedp.Poll[chromedp.Void](`wb.orders.get('truck-1/o-2').state === 'received' && wb.orders.get('truck-1/o-2').order.revision === 2`))

	// The tracking links: o-2 is on its way (position and distance), o-1 delivered (no position).
	var v2, v1 struct {
		Tracking struct{ Token, URL string }
	}
	json.Unmarshal(o.do(t, "GET", "/api/orders/truck-1/o-2", nil, 200), &v2)
	json.Unmarshal(o.do(t, "GET", "/api/orders/truck-1/o-1", nil, 200), &v1)
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`).MatchString(v2.Tracking.Token) || v2.Tracking.URL != "/t/"+v2.Tracking.Token {
		t.Fatalf("tracking link %+v", v2.Tracking)
	}
	if href := eval(`document.querySelector('#od-tracking').href`); href != o.base+"/t/"+v2.Tracking.Token {
		t.Fatalf("the console's tracking link %s", href)
	}
	step("the tracking page", chromedp.Navigate(o.base+"/t/"+v2.Tracking.Token),
		chromedp.WaitVisible(css(`#t-state[data-state="on_the_way"]`)), chromedp.WaitVisible(css(`#t-distance`)))
	page := eval(`document.body.innerText`)
	fetched := eval(`JSON.stringify(window.trackState)`)
	code, plain := get(t, o.base+"/t/"+v2.Tracking.Token+"/status")
	if code != 200 {
		t.Fatalf("tracking status without credentials: %d", code)
	}
	for _, body := range []string{fetched, string(plain)} {
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("tracking JSON %s: %v", body, err)
		}
		if k := keys(m); k != "address,destination,order,state,state_text,truck,updated" {
			t.Fatalf("tracking JSON has %s: %s", k, body)
		}
		tk, _ := m["truck"].(map[string]any)
		if k := keys(tk); k != "distance_m,lat,lon,time" || tk["lat"] != 51.5065 {
			t.Fatalf("tracking JSON's truck: %s", body)
		}
		// 51.51 - 51.5065 degrees of latitude: about 389 m.
		if d := tk["distance_m"].(float64); d < 380 || d > 400 {
			t.Fatalf("distance %v m, want about 389", d)
		}
		if m["order"] != "o-2" || m["address"] != "9 Harbour Rd" || m["state"] != "on_the_way" {
			t.Fatalf("tracking JSON: %s", body)
		}
	}
	for _, leak := range []string{"truck-1", "o-1", "1 Quay St", "A. Jones", "B. Smith"} {
		if strings.Contains(page, leak) || strings.Contains(fetched, leak) {
			t.Fatalf("the tracking page shows %q:\n%s\n%s", leak, page, fetched)
		}
	}
	if !strings.Contains(page, "389 m away") || !strings.Contains(page, "On its way") {
		t.Fatalf("tracking page text: %q", page)
	}
	_, delivered := get(t, o.base+"/t/"+v1.Tracking.Token+"/status")
	var d1 map[string]any
	json.Unmarshal(delivered, &d1)
	if d1["state"] != "delivered" || d1["truck"] != nil || d1["order"] != "o-1" {
		t.Fatalf("the delivered order's tracking: %s", delivered)
	}
	wrong := []byte(v2.Tracking.Token)
	wrong[0] ^= 1
	for _, p := range []string{"/t/" + string(wrong), "/t/" + string(wrong) + "/status", "/t/x/status", "/t/" + v2.Tracking.Token + "x"} {
		if code, _ := get(t, o.base+p); code != http.StatusNotFound {
			t.Fatalf("GET %s: %d, want 404", p, code)
		}
	}

	// Cancel o-2 from the console: the truck confirms, the console and the tracking page say so.
	step("cancel o-2", chromedp.Navigate(o.base+"/#order/truck-1/o-2"), chromedp.WaitVisible(css(`#od-cancel`)),
		chromedp.Click(css(`#od-cancel`)), chromedp.WaitVisible(css(`#od-cancel-confirm`)), chromedp.Click(css(`#od-cancel-confirm`)),
		hash("#orders"), chromedp.WaitVisible(css(row("o-2", "cancelled"))))
	_, cancelled := get(t, o.base+"/t/"+v2.Tracking.Token+"/status")
	var c2 map[string]any
	json.Unmarshal(cancelled, &c2)
	if c2["state"] != "cancelled" || c2["truck"] != nil {
		t.Fatalf("the cancelled order's tracking: %s", cancelled)
	}

	if len(bt.JSErrors()) > 0 {
		t.Fatalf("the page threw: %v", bt.JSErrors())
	}
}
