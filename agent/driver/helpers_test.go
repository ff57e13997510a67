package driver

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/truck"
	"github.com/waybill-iot/waybill/store"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const truckName = "truck-0001"

// fixture is a real order book on a real store, fed with orders signed by a real dispatch certificate of a
// fleet PKI made for the test, behind a driver Server.
type fixture struct {
	t      *testing.T
	st     *store.Store
	book   *truck.Book
	office *sdktest.Office
	srv    *Server
	http   *httptest.Server

	// mu guards fix.
	mu  sync.Mutex
	fix *sdk.Fix
}

// newFixture builds the fixture; tweak adjusts the server's Config (Orders, Position, Logger are set).
func newFixture(t *testing.T, tweak func(*Config)) *fixture {
	t.Helper()
	return newFixtureOn(t, nil, tweak)
}

// newFixtureOn is newFixture with prefill run on the store before the order book is opened on it.
func newFixtureOn(t *testing.T, prefill func(*store.Store), tweak func(*Config)) *fixture {
	t.Helper()
	f := &fixture{t: t, office: sdktest.NewOffice(t)}
	v := f.office.Verifier(t)
	var err error
	if f.st, err = store.Open(filepath.Join(t.TempDir(), "queue.db"), store.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.st.Close() })
	if prefill != nil {
		prefill(f.st)
	}
	var srv *Server
	var srvMu sync.Mutex
	if f.book, err = truck.NewBook(truck.BookConfig{Store: f.st, Verifier: v, Truck: truckName,
		OnChange: func(e truck.Entry) {
			srvMu.Lock()
			defer srvMu.Unlock()
			if srv != nil {
				srv.Notify(e)
			}
		}}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Orders: f.book, Position: f.position, Logger: slog.New(slog.NewTextHandler(testLog{t}, nil))}
	if tweak != nil {
		tweak(&cfg)
	}
	if f.srv, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	srvMu.Lock()
	srv = f.srv
	srvMu.Unlock()
	f.http = httptest.NewServer(f.srv)
	t.Cleanup(func() {
		f.srv.Close()
		f.http.Close()
	})
	return f
}

func (f *fixture) position() (sdk.Fix, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fix == nil {
		return sdk.Fix{}, false
	}
	return *f.fix, true
}

func (f *fixture) setFix(fix sdk.Fix) {
	f.mu.Lock()
	f.fix = &fix
	f.mu.Unlock()
}

// send signs an order as dispatch and hands it to the order book as the truck's client would.
func (f *fixture) send(o sdk.Order) {
	f.t.Helper()
	if err := f.book.Handle(context.Background(), f.office.Order(f.t, o)); err != nil {
		f.t.Fatal(err)
	}
}

// events returns the driver actions in the store's queue (received and arrived events left out).
func (f *fixture) events() map[uint64]*sdk.Event {
	f.t.Helper()
	recs, err := f.st.Peek(context.Background(), 1000)
	if err != nil {
		f.t.Fatal(err)
	}
	seqs := make([]uint64, 0, len(recs))
	out := map[uint64]*sdk.Event{}
	for _, r := range recs {
		seqs = append(seqs, r.Seq)
		if r.Kind != truck.KindEvent {
			continue
		}
		e, err := truck.DecodeEvent(r.Data, r.Epoch, r.Seq)
		if err != nil {
			f.t.Fatal(err)
		}
		if e.Kind != sdk.EventReceived && e.Kind != sdk.EventArrived {
			out[r.Seq] = e
		}
	}
	f.st.Release(seqs...) // hand them out again on the next Peek
	return out
}

func newOrder(id string, rev uint32) sdk.Order {
	now := time.Now().UTC().Truncate(time.Millisecond)
	return sdk.Order{ID: id, Revision: rev, Truck: truckName, Created: now, Expires: now.Add(24 * time.Hour),
		Recipient: "A. Recipient", Address: "1 Main St", Lat: 52.5200, Lon: 13.4050, RadiusM: 100,
		Notes: "ring twice", Status: sdk.OrderActive}
}

func cancelled(o sdk.Order) sdk.Order {
	o.Revision++
	o.Status = sdk.OrderCancelled
	return o
}

// response is an answer read in full.
type response struct {
	status int
	header http.Header
	body   []byte
	closed bool // the server said Connection: close
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer %d is not JSON: %v: %s", r.status, err, r.body)
	}
}

// do sends a request to the fixture's server. hdr holds header pairs.
func (f *fixture) do(method, path, body string, hdr ...string) response {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.http.URL+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return f.roundTrip(req)
}

func (f *fixture) roundTrip(req *http.Request) response {
	f.t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b, closed: res.Close}
}

// wantError checks an error answer's status and code.
func wantError(t *testing.T, what string, r response, status int, code string) {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("%s: answer %d is not a JSON error: %s", what, r.status, r.body)
	}
	if r.status != status || e.Code != code || e.Error == "" {
		t.Fatalf("%s: got %d %+v, want %d %s", what, r.status, e, status, code)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: Content-Type %q", what, ct)
	}
}

// testLog writes log lines into the test's output.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
