package truck

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// runClient starts a truck client with cfg until the returned stop is called (or the test ends).
func runClient(t *testing.T, cfg ClientConfig) (*Client, func()) {
	t.Helper()
	cl, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := cl.Run(ctx); err != nil {
			t.Errorf("client Run: %v", err)
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := cl.Conn().Wait(wctx); err != nil {
		t.Fatalf("truck client never connected: %v", err)
	}
	return cl, stop
}

func revokedRefusals(cl *Client) uint64 { return cl.Book().VerifierStats().ByReason[sdk.ReasonRevoked] }

// TestTruckClientAppliesFleetCRL runs a truck client against real Mosquitto: it starts without any CRL,
// applies the one the administrator publishes, and after `b.Revoke("office")` refuses an order signed with
// office's key from the moment the new CRL arrives, without a restart. (Revoking office also ends office's
// session at the broker, so the order signed with its key is published by another dispatch identity,
// "night-office", as a thief holding the key and another identity's access could.) An older CRL published
// after the newer one, and a CRL of a foreign CA, change nothing. The newest CRL survives a restart of the
// client in its cache file even when the broker's retained copy is the older one.
func TestTruckClientAppliesFleetCRL(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office", "night-office"}})
	truckCl := b.Truck("truck-0001")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	off := newOffice(t, ctx, &wg, b, b.ClientFiles("office"))
	night := newOffice(t, ctx, &wg, b, b.ClientFiles("night-office"))

	st := openStore(t)
	cache := filepath.Join(t.TempDir(), "crl.der")
	cfg := ClientConfig{
		Transport: transport.Config{Brokers: []string{"mqtts://" + b.Addr}, CertFile: truckCl.CertFile,
			KeyFile: truckCl.KeyFile, CAFile: truckCl.CAFile, BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond},
		Store:        st,
		CRLCacheFile: cache,
		Logger:       slog.New(slog.NewTextHandler(testLog{t}, nil)),
	}
	cl, stop := runClient(t, cfg)
	if info := cl.CRLInfo(); info.Loaded {
		t.Fatalf("a truck without CRL file or cache reports %v", info)
	}

	// The administrator publishes the fleet's first CRL (#1, empty): applied and cached.
	first, err := b.PKI.CRL()
	if err != nil {
		t.Fatal(err)
	}
	b.PublishCRL()
	sdktest.WaitFor(t, 20*time.Second, "CRL #1 applied", func() bool { return cl.CRLInfo().Loaded })
	if n := cl.CRLInfo().Number; n == nil || n.Cmp(first.Number) != 0 {
		t.Fatalf("CRL in use %v, want #%v", cl.CRLInfo(), first.Number)
	}
	sdktest.WaitFor(t, 5*time.Second, "the applied CRL cached", func() bool {
		b, err := os.ReadFile(cache)
		return err == nil && string(b) == string(first.Raw)
	})
	off.send(newOrder("truck-0001", "o-1", 1))
	off.waitEvent("received o-1 (office not revoked yet)", receivedFor("o-1", 1))

	// Revoke office while the truck runs, and watch for the truck applying the new CRL.
	var appliedAt atomic.Int64
	pollDone := make(chan struct{})
	before := cl.CRLStats().Applied
	go func() {
		defer close(pollDone)
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Microsecond) {
			if cl.CRLStats().Applied > before {
				appliedAt.Store(time.Now().UnixNano())
				return
			}
		}
	}()
	revokeStart := time.Now()
	b.Revoke("office")
	revoked := time.Now()
	// An order signed with office's (now revoked) key, through night-office's connection.
	refusedBefore := revokedRefusals(cl)
	stolen, err := off.signer.SignOrder(ptr(newOrder("truck-0001", "o-2", 1)))
	if err != nil {
		t.Fatal(err)
	}
	night.publish("truck-0001", "o-2", stolen)
	for deadline := time.Now().Add(20 * time.Second); revokedRefusals(cl) == refusedBefore; time.Sleep(200 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatal("the order signed by the revoked key was not refused within 20 s")
		}
	}
	refused := time.Now()
	<-pollDone
	if appliedAt.Load() == 0 {
		t.Fatal("the truck never applied the new CRL")
	}
	applied := time.Unix(0, appliedAt.Load())
	crl2 := cl.CRLInfo()
	if crl2.Number == nil || crl2.Number.Cmp(first.Number) <= 0 || crl2.Revoked != 1 {
		t.Fatalf("CRL in use after the revocation: %v", crl2)
	}
	t.Logf("revocation of office: b.Revoke took %v (PKI, broker sync, CRL published, broker reload); the running truck "+
		"applied CRL %v %v after b.Revoke began (%v after it returned; negative: before); an order signed with office's key, "+
		"published after b.Revoke returned, was refused %v after it returned",
		revoked.Sub(revokeStart).Round(time.Millisecond), crl2, applied.Sub(revokeStart).Round(time.Millisecond),
		applied.Sub(revoked).Round(time.Millisecond), refused.Sub(revoked).Round(time.Millisecond))

	// night-office's own orders still go through (and prove o-2 was handled: one connection, in order).
	night.send(newOrder("truck-0001", "o-3", 1))
	night.waitEvent("received o-3", receivedFor("o-3", 1))
	if n := night.count(func(e *sdk.Event) bool { return e.OrderID == "o-2" }); n != 0 {
		t.Fatalf("the truck answered the order signed by the revoked key (%d events)", n)
	}
	entries, err := cl.Book().Orders()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Order.ID == "o-2" {
			t.Fatal("the order signed by the revoked key is in the book")
		}
	}

	// A foreign CA's CRL, then the older CRL #1 (left retained at the broker): neither changes anything.
	other, err := pki.Init(pki.Config{Dir: filepath.Join(t.TempDir(), "other")}, pki.CAOptions{Fleet: "evil"})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.CRL()
	if err != nil {
		t.Fatal(err)
	}
	admin := b.Admin()
	s0 := cl.CRLStats()
	for _, der := range [][]byte{foreign.Raw, first.Raw} {
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		if err := admin.PublishCRL(pctx, der); err != nil {
			t.Fatal(err)
		}
		pcancel()
	}
	sdktest.WaitFor(t, 20*time.Second, "the foreign and the older CRL handled", func() bool {
		s := cl.CRLStats()
		return s.Refused > s0.Refused && s.NotNewer > s0.NotNewer
	})
	if info := cl.CRLInfo(); info.Number.Cmp(crl2.Number) != 0 || info.Revoked != 1 {
		t.Fatalf("an older or foreign CRL rolled the truck back: %v", info)
	}
	refusedBefore = revokedRefusals(cl)
	stolen, _ = off.signer.SignOrder(ptr(newOrder("truck-0001", "o-4", 1)))
	night.publish("truck-0001", "o-4", stolen)
	sdktest.WaitFor(t, 20*time.Second, "o-4 refused after the older CRL", func() bool { return revokedRefusals(cl) > refusedBefore })

	// Restart: the cached CRL applies before the broker sends anything, and the broker's retained (older)
	// copy does not replace it.
	stop()
	cl, _ = runClient(t, cfg)
	if info := cl.CRLInfo(); info.Number == nil || info.Number.Cmp(crl2.Number) != 0 {
		t.Fatalf("after a restart the truck uses %v, want the cached %v", info, crl2)
	}
	sdktest.WaitFor(t, 20*time.Second, "the retained older CRL ignored", func() bool { return cl.CRLStats().NotNewer > 0 })
	stolen, _ = off.signer.SignOrder(ptr(newOrder("truck-0001", "o-5", 1)))
	night.publish("truck-0001", "o-5", stolen)
	night.send(newOrder("truck-0001", "o-6", 1))
	night.waitEvent("received o-6 after the restart", receivedFor("o-6", 1))
	// o-4 may come again too: the client stopped right after refusing it, perhaps before its PUBACK left.
	if revokedRefusals(cl) == 0 || night.count(func(e *sdk.Event) bool { return e.OrderID == "o-5" }) != 0 {
		t.Fatalf("after the restart: %d orders refused as revoked; o-5 answered %d times", revokedRefusals(cl),
			night.count(func(e *sdk.Event) bool { return e.OrderID == "o-5" }))
	}
	if entries, err := cl.Book().Orders(); err != nil || len(entries) != 3 { // o-1, o-3, o-6
		t.Fatalf("after the restart the book holds %d orders (%v), want o-1, o-3 and o-6", len(entries), err)
	}
	if info := cl.CRLInfo(); info.Number.Cmp(crl2.Number) != 0 {
		t.Fatalf("after the restart the truck went back to %v", info)
	}
	t.Logf("CRL stats after the restart: %+v", cl.CRLStats())
}

// crlFixture is a fleet PKI with a truck and a dispatch identity, and its CRL files #1 (empty) and #2
// (office revoked), for client start-up tests without a broker.
type crlFixture struct {
	pki          *pki.PKI
	truck        sdktest.Client
	crl1, crl2   []byte // DER
	office       *sdk.Signer
	file1, file2 string // PEM files of #1 and #2
}

func newCRLFixture(t *testing.T) *crlFixture {
	t.Helper()
	dir := t.TempDir()
	p, err := pki.Init(pki.Config{Dir: filepath.Join(dir, "pki")}, pki.CAOptions{Fleet: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []struct {
		role pki.Role
		name string
	}{{pki.RoleTruck, "truck-0001"}, {pki.RoleDispatch, "office"}} {
		if _, err := p.Issue(id.role, id.name, pki.IssueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	f := &crlFixture{pki: p, truck: sdktest.Client{Name: "truck-0001", CAFile: p.CAPath(), CertFile: p.CertPath("truck-0001"),
		KeyFile: p.KeyPath("truck-0001")}}
	f.office = sdktest.Client{CertFile: p.CertPath("office"), KeyFile: p.KeyPath("office")}.Signer(t)
	copyCRL := func(name string) ([]byte, string) {
		crl, err := p.CRL()
		if err != nil {
			t.Fatal(err)
		}
		pem, err := os.ReadFile(p.CRLPath())
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem, 0o644); err != nil {
			t.Fatal(err)
		}
		return crl.Raw, path
	}
	f.crl1, f.file1 = copyCRL("crl1.pem")
	if _, err := p.Revoke("office"); err != nil {
		t.Fatal(err)
	}
	f.crl2, f.file2 = copyCRL("crl2.pem")
	return f
}

func (f *crlFixture) config(t *testing.T, crlFile, cache string) ClientConfig {
	return ClientConfig{
		Transport: transport.Config{Brokers: []string{"mqtts://127.0.0.1:1"}, CertFile: f.truck.CertFile,
			KeyFile: f.truck.KeyFile, CAFile: f.truck.CAFile, CRLFile: crlFile},
		Store: openStore(t), CRLCacheFile: cache, Logger: slog.New(slog.NewTextHandler(testLog{t}, nil)),
	}
}

// TestTruckClientStartsWithNewestCRL: at start the verifier uses the newer of the configured CRL file and
// the cached one; a damaged or foreign cache is skipped (logged), never fatal.
func TestTruckClientStartsWithNewestCRL(t *testing.T) {
	f := newCRLFixture(t)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	other, err := pki.Init(pki.Config{Dir: filepath.Join(dir, "other")}, pki.CAOptions{Fleet: "evil"})
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := other.CRL()
	for _, c := range []struct {
		name          string
		crlFile       string
		cache         string
		want          int64 // CRL number in use; 0: none
		wantErrSubstr string
	}{
		{"nothing", "", "", 0, ""},
		{"cache file missing", "", filepath.Join(dir, "none.der"), 0, ""},
		{"file only", f.file1, "", 1, ""},
		{"cache only", "", write("c2.der", f.crl2), 2, ""},
		{"cache newer than file", f.file1, write("c2b.der", f.crl2), 2, ""},
		{"file newer than cache", f.file2, write("c1.der", f.crl1), 2, ""},
		{"damaged cache", f.file1, write("junk.der", []byte("not a crl")), 1, ""},
		{"foreign cache", "", write("foreign.der", foreign.Raw), 0, ""},
		{"configured file missing", filepath.Join(dir, "missing.pem"), "", 0, "reading the CRL"},
		{"configured file foreign", write("foreign.pem", foreign.Raw), "", 0, "not signed by the fleet CA"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl, err := NewClient(f.config(t, c.crlFile, c.cache))
			if c.wantErrSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErrSubstr) {
					t.Fatalf("NewClient: %v, want an error saying %q", err, c.wantErrSubstr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			info := cl.CRLInfo()
			switch {
			case c.want == 0 && info.Loaded:
				t.Fatalf("CRL in use %v, want none", info)
			case c.want != 0 && (info.Number == nil || info.Number.Int64() != c.want):
				t.Fatalf("CRL in use %v, want #%d", info, c.want)
			}
		})
	}
}

// TestTruckClientHandlesCRLMessages feeds the CRL topic's messages to the client as the connection would:
// garbage and foreign lists are counted and refused, never fatal; a newer list applies at once (an order
// signed by the key it revokes is refused) and is cached; an older one is ignored.
func TestTruckClientHandlesCRLMessages(t *testing.T) {
	f := newCRLFixture(t)
	cache := filepath.Join(t.TempDir(), "crl.der")
	cl, err := NewClient(f.config(t, f.file1, cache))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	topic := sdk.Topics{}.CRL()
	deliver := func(payload []byte) {
		t.Helper()
		if err := cl.onPublish(ctx, transport.Message{Topic: topic, Payload: payload, QoS: 1, Retained: true}); err != nil {
			t.Fatalf("onPublish on the CRL topic: %v", err)
		}
	}
	order := func(id string) error {
		t.Helper()
		p, err := f.office.SignOrder(ptr(newOrder("truck-0001", id, 1)))
		if err != nil {
			t.Fatal(err)
		}
		ot, _ := sdk.Topics{}.Order("truck-0001", id)
		_, err = cl.Book().cfg.Verifier.Verify(ctx, ot, p)
		return err
	}
	if err := order("o-1"); err != nil {
		t.Fatalf("office before the revocation: %v", err)
	}
	for _, junk := range [][]byte{nil, []byte("garbage"), f.crl2[:len(f.crl2)/2]} {
		deliver(junk)
	}
	if s := cl.CRLStats(); s.Refused != 3 || s.Applied != 0 {
		t.Fatalf("after garbage: %+v", s)
	}
	if _, err := os.Stat(cache); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("garbage was cached: %v", err)
	}
	deliver(f.crl2)
	if err := order("o-2"); !errors.Is(err, sdk.ReasonRevoked) {
		t.Fatalf("office after CRL #2: %v, want revoked", err)
	}
	deliver(f.crl1)
	if s := cl.CRLStats(); s.Applied != 1 || s.NotNewer != 1 || s.Refused != 3 {
		t.Fatalf("CRL stats %+v", s)
	}
	if err := order("o-3"); !errors.Is(err, sdk.ReasonRevoked) {
		t.Fatalf("office after the older CRL: %v, want still revoked", err)
	}
	cached, err := os.ReadFile(cache)
	if err != nil || string(cached) != string(f.crl2) {
		t.Fatalf("cache holds %d bytes (%v), want CRL #2", len(cached), err)
	}
}

// TestRevokedTruckLetInIsDropped: truck-0001 is revoked and deleted from the broker's access rules (its
// session ends), but the broker has not reloaded its CRL yet: the TLS listener still lets the truck in, and
// the access rules refuse its orders subscription. The client must not sit on that connection reported as
// connected: it drops it and tries again with growing backoff, its state saying why.
func TestRevokedTruckLetInIsDropped(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	truckCl := b.Truck("truck-0001")
	cfg := ClientConfig{
		Transport: transport.Config{Brokers: []string{"mqtts://" + b.Addr}, CertFile: truckCl.CertFile,
			KeyFile: truckCl.KeyFile, CAFile: truckCl.CAFile, BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond},
		Store:  openStore(t),
		Logger: slog.New(slog.NewTextHandler(testLog{t}, nil)),
	}
	cl, _ := runClient(t, cfg)
	if _, err := b.PKI.Revoke("truck-0001"); err != nil {
		t.Fatal(err)
	}
	b.Sync() // deleted from the access rules; no SIGHUP: the broker's CRL is the old one
	sdktest.WaitFor(t, 20*time.Second, "a reconnect refused its orders subscription", func() bool {
		st := cl.Conn().Current()
		return st.Err != nil && strings.Contains(st.Err.Error(), "reason code 135")
	})
	if err := cl.Conn().Current().Err; err == nil || !strings.Contains(err.Error(), "waybill broker sync") {
		t.Errorf("the state's error %v does not say what to do", err)
	}
	connects := cl.Conn().Stats().Connects
	for range 30 { // 3 s: still let in by TLS, never connected
		if st := cl.Conn().Current(); st.Connected {
			t.Fatalf("the revoked truck is reported connected: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	again := cl.Conn().Stats().Connects - connects
	if again == 0 || again > 20 { // at BackoffMin (50 ms) without backing off: about 50
		t.Errorf("%d more connections in 3 s; want some, backed off to BackoffMax (500 ms)", again)
	}
	t.Logf("revoked, CRL not reloaded: %d connections in 3 s, each dropped: %v", again, cl.Conn().Current().Err)
}
