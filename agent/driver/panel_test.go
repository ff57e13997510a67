package driver

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/waybill-iot/waybill/sdk"
)

// browser is one headless Chromium tab for a test, with the page's uncaught exceptions collected.
type browser struct {
	t   *testing.T
	ctx context.Context

	// mu guards jsErrs.
	mu     sync.Mutex
	jsErrs []string
}

// newBrowser starts Debian's Chromium, headless, with a fresh profile and nothing reaching the network. It
// is stopped when the test ends.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	chrome := chromium(t)
	actx, acancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("lang", "en-US"), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(800, 480))
	bctx, bcancel := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: bctx}
	if err := chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			msg := e.ExceptionDetails.Text
			if x := e.ExceptionDetails.Exception; x != nil {
				msg += " " + x.Description
			}
			b.mu.Lock()
			b.jsErrs = append(b.jsErrs, msg)
			b.mu.Unlock()
		}
	}); err != nil {
		bcancel()
		acancel()
		t.Fatalf("start Chromium: %v", err)
	}
	t.Cleanup(func() {
		chromedp.Cancel(bctx)
		bcancel()
		acancel()
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(b.jsErrs) > 0 {
			t.Errorf("the page threw: %v", b.jsErrs)
		}
	})
	return b
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

// TestPanelDialogFits (issue 11, 10.1): on the official Raspberry Pi 7-inch panel (800x480), and on it
// turned to portrait (480x800), the Failed and Problem dialogs keep their action buttons inside the
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
	}{{"800x480", 800, 480}, {"480x800 portrait", 480, 800}}
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
				b.inViewport(what, "#dlg-title", 10)
				if d := b.rect("#dlg"); d.Bottom > d.VH || d.Top < 0 {
					t.Errorf("%s: the dialog is at %+v, beyond the viewport", what, d)
				}
				for i, n := 0, eval[int](b, `document.querySelectorAll('#dlg-choices button').length`); i < n; i++ {
					if r := b.rect(fmt.Sprintf(`#dlg-choices button:nth-child(%d)`, i+1)); r.Height < 48 {
						t.Errorf("%s: reason %d is %g px high, want 48 or more", what, i+1, r.Height)
					}
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

var _ = math.Pi
var _ = strings.Contains
