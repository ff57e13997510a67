// Package browsertest starts Debian's Chromium, headless, for the tests of the pages Waybill serves (the
// driver's page, the office console): a fresh profile, nothing reaching the network, and the page's
// uncaught script errors collected.
package browsertest

import (
	"context"
	"os/exec"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Chromium returns Chromium's path, failing the test with the install command when it is missing.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("chromium not found: apt-get install -y chromium")
	return ""
}

// Browser is one headless Chromium; Ctx runs chromedp actions in its tab. It is stopped when the test ends.
type Browser struct {
	Ctx context.Context

	mu     sync.Mutex
	jsErrs []string // guarded by mu
}

// New starts Chromium with a window of width x height and any extra options (a language flag, say).
func New(t testing.TB, width, height int, extra ...chromedp.ExecAllocatorOption) *Browser {
	t.Helper()
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(Chromium(t)), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(width, height),
	}, extra...)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	b := &Browser{Ctx: bctx}
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
	})
	return b
}

// JSErrors returns the page's uncaught script errors so far.
func (b *Browser) JSErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.jsErrs...)
}

// Eval evaluates a JavaScript expression whose value is a string in the page, failing the test when it
// cannot.
func (b *Browser) Eval(t testing.TB, expr string) string {
	t.Helper()
	v, err := chromedp.Run(b.Ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}
