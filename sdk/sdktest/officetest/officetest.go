package officetest

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/archive"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// Options change the office from its test defaults.
type Options struct {
	// Name is the dispatch identity, already issued in the broker's PKI (sdktest.Options.Dispatch).
	// Zero: "office".
	Name string
	// ArchivePath is the archive file; its directory is made. Zero: archive.File in t.TempDir().
	ArchivePath string
	// OutboxPath is the outbox's store. Zero: outbox.db beside the archive.
	OutboxPath string
	// ShareGroup is dispatch.Config.ShareGroup. Zero: no shared subscription.
	ShareGroup string
	// Wrap, when set, gets the archive and returns the Record dispatch commits to (e.g. one that can hold
	// commits). Zero: the archive itself.
	Wrap func(dispatch.Record) dispatch.Record
	// Handle is dispatch.Config.Handle. Zero: none.
	Handle func(context.Context, dispatch.Update) error
	// Trucks names the truck certificates given to the verifier (telemetry carries none after a
	// connection's first message). Zero: every truck the broker's PKI has issued and not revoked.
	Trucks []string

	// The outbox's timings (dispatch.OutboxConfig). Zero: BackoffMin 1 s, BackoffMax 4 s, OnlineGrace
	// 500 ms, Poll 100 ms, RetryDelay 500 ms.
	OutboxBackoffMin, OutboxBackoffMax, OnlineGrace, Poll, RetryDelay time.Duration
	// The transport's reconnect backoff. Zero: 50 ms to 500 ms.
	BackoffMin, BackoffMax time.Duration
	// ReceiptDelay is dispatch.Config.ReceiptDelay. Zero: 200 ms.
	ReceiptDelay time.Duration
}

// Office is a running dispatch process.
type Office struct {
	Client  *dispatch.Client
	Outbox  *dispatch.Outbox
	Archive *archive.Archive

	t      testing.TB
	cancel context.CancelFunc
	done   chan error // Run's result
	once   sync.Once
}

// stopTimeout bounds Stop's wait for Run: a hung dispatch fails the test instead of hanging it.
const stopTimeout = 30 * time.Second

// Start opens the archive and the outbox, runs the dispatch client and returns once it is connected
// (at most 20 s). Stop ends it; if the test does not, the test's end does.
func Start(t testing.TB, b *sdktest.Broker, o Options) *Office {
	t.Helper()
	if o.Name == "" {
		o.Name = "office"
	}
	if o.ArchivePath == "" {
		o.ArchivePath = filepath.Join(t.TempDir(), archive.File)
	}
	if o.OutboxPath == "" {
		o.OutboxPath = filepath.Join(filepath.Dir(o.ArchivePath), "outbox.db")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.OutboxBackoffMin, time.Second)
	def(&o.OutboxBackoffMax, 4*time.Second)
	def(&o.OnlineGrace, 500*time.Millisecond)
	def(&o.Poll, 100*time.Millisecond)
	def(&o.RetryDelay, 500*time.Millisecond)
	def(&o.BackoffMin, 50*time.Millisecond)
	def(&o.BackoffMax, 500*time.Millisecond)
	def(&o.ReceiptDelay, 200*time.Millisecond)

	cl := b.ClientFiles(o.Name)
	cert, key := cl.CertKey(t)
	ca, err := pki.LoadCertificates(cl.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	trucks := o.Trucks
	if len(trucks) == 0 {
		if trucks, err = b.PKI.Names(pki.RoleTruck); err != nil {
			t.Fatal(err)
		}
	}
	var certs []*x509.Certificate
	for _, n := range trucks {
		c, err := pki.LoadCertificate(b.PKI.CertPath(n))
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}

	arch, err := archive.Open(o.ArchivePath, archive.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ob, err := dispatch.NewOutbox(dispatch.OutboxConfig{Path: o.OutboxPath, Certificate: cert, Key: key,
		BackoffMin: o.OutboxBackoffMin, BackoffMax: o.OutboxBackoffMax, OnlineGrace: o.OnlineGrace, Poll: o.Poll,
		RetryDelay: o.RetryDelay})
	if err != nil {
		arch.Close()
		t.Fatal(err)
	}
	var rec dispatch.Record = arch
	if o.Wrap != nil {
		rec = o.Wrap(arch)
	}
	c, err := dispatch.New(dispatch.Config{
		Transport: transport.Config{Brokers: []string{"mqtts://" + b.Addr}, CertFile: cl.CertFile, KeyFile: cl.KeyFile,
			CAFile: cl.CAFile, BackoffMin: o.BackoffMin, BackoffMax: o.BackoffMax},
		CA: ca, Certificates: certs, ShareGroup: o.ShareGroup, Outbox: ob, Record: rec, Handle: o.Handle,
		ReceiptDelay: o.ReceiptDelay})
	if err != nil {
		arch.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	of := &Office{Client: c, Outbox: ob, Archive: arch, t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { of.done <- c.Run(ctx) }() // owned: Stop waits on done
	t.Cleanup(of.Stop)
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := c.Conn().Wait(wctx); err != nil {
		t.Fatalf("dispatch never connected: %v", err)
	}
	return of
}

// Stop ends the dispatch process (a clean DISCONNECT; its session stays), waits for Run and closes the
// archive, so that the file can be opened again. Later calls do nothing.
func (of *Office) Stop() {
	of.once.Do(func() {
		of.cancel()
		select {
		case err := <-of.done:
			if err != nil {
				of.t.Errorf("dispatch Run: %v", err)
			}
		case <-time.After(stopTimeout):
			of.t.Errorf("dispatch did not stop within %v", stopTimeout)
		}
		of.Archive.Close()
	})
}
