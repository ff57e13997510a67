package driver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest/browsertest"
)

// browser is one headless Chromium tab for a test at the 7-inch panel's 800x480, with the page's uncaught
// exceptions reported when the test ends.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	bt := browsertest.New(t, 800, 480, chromedp.Flag("lang", "en-US"))
	t.Cleanup(func() { // registered after the browser's own cleanup, so it runs first
		if errs := bt.JSErrors(); len(errs) > 0 {
			t.Errorf("the page threw: %v", errs)
		}
	})
	return &browser{t: t, ctx: bt.Ctx}
}

// do runs actions with a time limit, failing the test on an error.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression into T.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// acceptLanguage makes the tab send this Accept-Language header (empty: the browser's own).
func acceptLanguage(v string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		h := network.Headers{}
		if v != "" {
			h["Accept-Language"] = v
		}
		_, err := cdp.Call(ctx, t, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: h})
		return chromedp.Void{}, err
	}
}

// screenshot saves what the screen shows in outDir, for people to look at.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(outDir(b.t), name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// rect is a getBoundingClientRect with the viewport's size.
type rect struct {
	Top, Left, Bottom, Right, Width, Height float64
	VW, VH                                  float64
}

func (b *browser) rect(sel string) rect {
	b.t.Helper()
	return eval[rect](b, fmt.Sprintf(`(() => { const r = document.querySelector(%q).getBoundingClientRect();
		return {Top: r.top, Left: r.left, Bottom: r.bottom, Right: r.right, Width: r.width, Height: r.height,
			VW: window.innerWidth, VH: window.innerHeight}; })()`, sel))
}

// inViewport fails unless the element is entirely visible and at least minSize CSS pixels high and wide
// (a touch target for a gloved finger).
func (b *browser) inViewport(what, sel string, minSize float64) {
	b.t.Helper()
	r := b.rect(sel)
	if r.Top < 0 || r.Left < 0 || r.Bottom > r.VH || r.Right > r.VW {
		b.t.Errorf("%s: %s is at %+v, outside the %gx%g viewport", what, sel, r, r.VW, r.VH)
	}
	if r.Height < minSize || r.Width < minSize {
		b.t.Errorf("%s: %s is %gx%g, want at least %g px each way", what, sel, r.Width, r.Height, minSize)
	}
}

// TestPanelDialogFits (issue 11, 10.1): on the official Raspberry Pi 7-inch panel (800x480), on it turned
// to portrait (480x800) and with the on-screen keyboard up (800x300), the Failed and Problem dialogs keep their action buttons inside the
// viewport, as large touch targets, however many reasons they list; the reasons scroll instead. A reason
// picked after scrolling is recorded.
func TestPanelDialogFits(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.PositionEvery = 50 * time.Millisecond })
	f.setFix(sdk.Fix{Time: time.Now().UTC(), Lat: 52.5190, Lon: 13.4050, Mode: 3})
	o := newOrder("o-dlg", 1)
	o.Recipient, o.Address = "Ada Lovelace", "12 Analytical Row"
	f.send(o)
	b := newBrowser(t)
	sizes := []struct {
		name string
		w, h int64
	}{{"800x480", 800, 480}, {"480x800 portrait", 480, 800},
		// The panel with the on-screen keyboard up (the page asks the browser to shrink the layout for it).
		{"800x300 keyboard", 800, 300}}
	for _, sz := range sizes {
		for _, lang := range []string{"en", "de"} {
			b.do("open the page at "+sz.name,
				chromedp.EmulateViewport(sz.w, sz.h),
				acceptLanguage(lang),
				chromedp.Navigate(f.http.URL+"/"),
				chromedp.WaitVisible(chromedp.CSS(`.card[data-id="o-dlg"]`)))
			for _, kind := range []string{"failed", "problem"} {
				what := fmt.Sprintf("%s dialog at %s (%s)", kind, sz.name, lang)
				b.do("tap "+kind,
					chromedp.Click(chromedp.CSS(`.card[data-id="o-dlg"] button[data-act="`+kind+`"]`)),
					chromedp.WaitVisible(chromedp.CSS(`#dlg-ok`)))
				b.inViewport(what, "#dlg-ok", 48)
				b.inViewport(what, "#dlg-cancel", 48)
				b.screenshot(fmt.Sprintf("driver-dialog-%s-%dx%d-%s.png", kind, sz.w, sz.h, lang))
				b.inViewport(what, "#dlg-title", 10)
				if d := b.rect("#dlg"); d.Bottom > d.VH || d.Top < 0 {
					t.Errorf("%s: the dialog is at %+v, beyond the viewport", what, d)
				}
				for i, n := 0, eval[int](b, `document.querySelectorAll('#dlg-choices button').length`); i < n; i++ {
					if r := b.rect(fmt.Sprintf(`#dlg-choices button:nth-child(%d)`, i+1)); r.Height < 48 {
						t.Errorf("%s: reason %d is %g px high, want 48 or more", what, i+1, r.Height)
					}
				}
				if sz.h == 300 && eval[bool](b, `(() => { const d = document.querySelector('#dlg-body'); return d.scrollHeight <= d.clientHeight; })()`) {
					t.Errorf("%s: the reasons do not scroll on a screen too short for them", what)
				}
				// The last reason is reachable: scrolled into view it is visible and the buttons still are.
				b.do("scroll to the last reason", chromedp.Evaluate[chromedp.Void](
					`document.querySelector('#dlg-choices button:last-child').scrollIntoView({block: "nearest"})`))
				b.inViewport(what+", scrolled", "#dlg-choices button:last-child", 48)
				b.inViewport(what+", scrolled", "#dlg-ok", 48)
				b.inViewport(what+", scrolled", "#dlg-reason", 48)
				b.do("close the dialog", chromedp.Click(chromedp.CSS(`#dlg-cancel`)), chromedp.WaitNotVisible(chromedp.CSS(`#dlg`)))
			}
		}
	}

	// At 800x480, a reason picked at the bottom of the list is what the proof says.
	b.do("fail o-dlg with the last reason",
		chromedp.EmulateViewport(800, 480), acceptLanguage("en"),
		chromedp.Navigate(f.http.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`.card[data-id="o-dlg"]`)),
		chromedp.Click(chromedp.CSS(`.card[data-id="o-dlg"] button[data-act="failed"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#dlg-ok`)),
		chromedp.Click(chromedp.CSS(`#dlg-choices button:last-child`)),
		chromedp.Click(chromedp.CSS(`#dlg-ok`)),
		chromedp.WaitVisible(chromedp.CSS(`.card[data-id="o-dlg"][data-state="failed"]`)))
	var got *sdk.Event
	for _, e := range f.events() {
		if e.Kind == sdk.EventFailed && e.OrderID == "o-dlg" {
			got = e
		}
	}
	if got == nil || got.Reason != "Damaged" || got.Via != sdk.ViaScreen {
		t.Fatalf("the failed proof is %+v, want reason Damaged via screen", got)
	}
}

// TestPanelArrowLinkLanguage (issue 11, 10.2-10.4), at 800x480: the arrow is a compass bearing with an N
// on its ring while the truck's course is unknown or it stands still, and turns by (bearing - course)
// while it moves, the header saying which; each order has a geo: link for the navigation app; the page
// speaks German when Accept-Language asks for it, English when it asks for a language the page lacks, and
// the driver's choice in the page beats both and survives a reload.
func TestPanelArrowLinkLanguage(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.PositionEvery = 50 * time.Millisecond })
	base := time.Now().UTC().Truncate(time.Second)
	n := 0
	// fix moves the truck's reported course and speed; each fix is a new one, so the stream sends it.
	fix := func(has sdk.FixFields, course, speed float64) {
		n++
		f.setFix(sdk.Fix{Time: base.Add(time.Duration(n) * time.Second), Lat: 52.5190, Lon: 13.4050, Mode: 3,
			Course: course, Speed: speed, Has: has})
	}
	fix(0, 0, 0)
	// The stop is about 135 m due east of the truck: bearing 90.
	o := newOrder("o-east", 1)
	o.Recipient, o.Address, o.Lat, o.Lon = "Ada (Gate 3) & Co", "12 Analytical Row", 52.5190, 13.4070
	f.send(o)
	card := `.card[data-id="o-east"]`
	b := newBrowser(t)
	b.do("open the page", chromedp.EmulateViewport(800, 480), acceptLanguage("en-US,en;q=0.9"),
		chromedp.Navigate(f.http.URL+"/"), chromedp.WaitVisible(chromedp.CSS(card)))

	type arrow struct {
		Mode, North, Transform, Text, Header, HeaderMode string
	}
	read := func() arrow {
		return eval[arrow](b, `(() => { const c = document.querySelector('`+card+`');
			return {Mode: c.querySelector('.dial').dataset.mode, North: c.querySelector('.dial .north').innerText,
				Transform: c.querySelector('.dial .arrow').style.transform, Text: c.querySelector('.dist').innerText,
				Header: document.querySelector('#mode').innerText, HeaderMode: document.querySelector('#mode').dataset.mode}; })()`)
	}
	check := func(what string, want arrow) {
		t.Helper()
		if got := read(); got != want {
			t.Errorf("%s: arrow %+v, want %+v", what, got, want)
		}
	}
	compassE := arrow{"compass", "N", "rotate(90deg)", "135 m E", "Arrows: compass, N up", "compass"}
	check("no course", compassE)
	b.inViewport("compass dial", card+" .dial", 48)

	// Moving at 36 km/h on course 45: the stop is 45 degrees to the right of ahead.
	fix(sdk.FixCourse|sdk.FixSpeed, 45, 10)
	b.do("the truck moves", chromedp.WaitVisible(chromedp.CSS(card+` .dial[data-mode="heading"]`)))
	check("course 45 at 10 m/s", arrow{"heading", "", "rotate(45deg)", "135 m ahead, right", "Arrows: ↑ = ahead", "heading"})
	// Course 300: the stop is 150 degrees to the right, behind.
	fix(sdk.FixCourse|sdk.FixSpeed, 300, 10)
	b.do("the truck turns", chromedp.WaitVisible(chromedp.CSS(card+` .dial .arrow[data-deg="150"]`)))
	check("course 300 at 10 m/s", arrow{"heading", "", "rotate(150deg)", "135 m behind, right", "Arrows: ↑ = ahead", "heading"})
	// Standing still (1 m/s, under 2.5) the course is noise: a compass again.
	fix(sdk.FixCourse|sdk.FixSpeed, 300, 1)
	b.do("the truck stops", chromedp.WaitVisible(chromedp.CSS(card+` .dial[data-mode="compass"]`)))
	check("course 300 at 1 m/s", compassE)
	// A course without a speed cannot say the truck moves.
	fix(sdk.FixCourse|sdk.FixSpeed, 180, 10)
	b.do("the truck moves south", chromedp.WaitVisible(chromedp.CSS(card+` .dial .arrow[data-deg="270"]`)))
	fix(sdk.FixCourse, 180, 0)
	b.do("the speed goes missing", chromedp.WaitVisible(chromedp.CSS(card+` .dial[data-mode="compass"]`)))
	check("course 180 without speed", compassE)

	// The navigate link opens the navigation app on the stop, labelled, and is a finger's size.
	wantGeo := "geo:52.519,13.407?q=52.519,13.407(Ada%20%28Gate%203%29%20%26%20Co%2C%2012%20Analytical%20Row)"
	if href := eval[string](b, `document.querySelector('`+card+` a.nav').getAttribute('href')`); href != wantGeo {
		t.Errorf("navigate link = %q, want %q", href, wantGeo)
	}
	if text := eval[string](b, `document.querySelector('`+card+` a.nav').innerText`); text != "Navigate" {
		t.Errorf("navigate link says %q", text)
	}
	b.inViewport("navigate link", card+" a.nav", 48)
	b.screenshot("driver-page-800x480.png")

	// German from Accept-Language.
	type page struct {
		Lang, Card, Header, Title, Select string
	}
	readPage := func() page {
		return eval[page](b, `({Lang: document.documentElement.lang, Card: document.querySelector('`+card+`').innerText,
			Header: document.querySelector('header').innerText, Title: document.title, Select: document.querySelector('#lang').value})`)
	}
	wantIn := func(what string, got string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s lacks %q: %q", what, w, got)
			}
		}
	}
	b.do("open the page in German", acceptLanguage("de-DE,de;q=0.9,en;q=0.5"), chromedp.Navigate(f.http.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(card)), chromedp.WaitVisible(chromedp.CSS(`#conn.live`)))
	b.screenshot("driver-page-800x480-de.png")
	de := readPage()
	if de.Lang != "de" || de.Title != "Waybill — Aufträge" || de.Select != "" {
		t.Errorf("German page: %+v", de)
	}
	wantIn("German card", de.Card, "Zugestellt", "Nicht zugestellt", "Problem", "Navigieren", "135 m O", "NÄCHSTER", "Auftrag o-east · Version 1")
	wantIn("German header", de.Header, "Pfeile: Kompass, N oben", "GPS: vor", "Live")
	b.do("Failed, in German", chromedp.Click(chromedp.CSS(card+` button[data-act="failed"]`)), chromedp.WaitVisible(chromedp.CSS(`#dlg-ok`)))
	if dlg := eval[string](b, `document.querySelector('#dlg').innerText`); !strings.Contains(dlg, "Nicht zugestellt: warum?") ||
		!strings.Contains(dlg, "Niemand angetroffen") || !strings.Contains(dlg, "Zurück") {
		t.Errorf("German dialog: %q", dlg)
	}
	b.do("close the dialog", chromedp.Click(chromedp.CSS(`#dlg-cancel`)), chromedp.WaitNotVisible(chromedp.CSS(`#dlg`)))

	// A language the page lacks: English.
	b.do("open the page in French", acceptLanguage("fr-FR,fr;q=0.9"), chromedp.Navigate(f.http.URL+"/"), chromedp.WaitVisible(chromedp.CSS(card)))
	if fr := readPage(); fr.Lang != "en" || !strings.Contains(fr.Card, "Delivered") || !strings.Contains(fr.Card, "135 m E") {
		t.Errorf("French request: %+v, want the English page", fr)
	}

	// The driver picks English in the page while the browser asks for German; it sticks across a reload.
	pick := func(code string) chromedp.Action[chromedp.Void] {
		return chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector('#lang'); s.value = '` + code +
			`'; s.dispatchEvent(new Event('change')); })()`)
	}
	b.do("pick English", acceptLanguage("de-DE,de"), chromedp.Navigate(f.http.URL+"/"), chromedp.WaitVisible(chromedp.CSS(card)),
		pick("en"))
	if en := readPage(); en.Lang != "en" || en.Select != "en" || !strings.Contains(en.Card, "Navigate") || !strings.Contains(en.Header, "Arrows") {
		t.Errorf("after picking English: %+v", en)
	}
	b.do("reload", chromedp.Navigate(f.http.URL+"/"), chromedp.WaitVisible(chromedp.CSS(card)))
	if en := readPage(); en.Lang != "en" || en.Select != "en" || !strings.Contains(en.Card, "Delivered") {
		t.Errorf("after a reload: %+v, want the English the driver picked", en)
	}
	b.do("back to automatic", pick(""))
	if de := readPage(); de.Lang != "de" || !strings.Contains(de.Card, "Zugestellt") {
		t.Errorf("automatic again: %+v, want German", de)
	}
	// Every option names its language in that language.
	if opts := eval[string](b, `[...document.querySelectorAll('#lang option')].map(o => o.value + "=" + o.textContent).join(";")`); opts != "=Automatisch;de=Deutsch;en=English" {
		t.Errorf("language options: %q", opts)
	}
}
