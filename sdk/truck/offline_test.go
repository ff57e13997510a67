package truck

import (
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/archive"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/store"
)

// TestOfflineTruckGetsEveryOrder: dispatch creates 2,000 orders for a truck that has never connected (the
// broker holds no session and no queue for it: only dispatch's outbox can get them there). When the real
// truck client comes online, every order arrives, is stored once and confirmed by a signed received event;
// dispatch commits those events to its Record and receipts them, so the truck's store empties.
func TestOfflineTruckGetsEveryOrder(t *testing.T) {
	n := 2000
	if runtime.GOARCH == "arm" {
		n = 300 // under qemu each ECDSA verification takes milliseconds: the ARM run checks the same path, smaller
		t.Logf("ARM build under emulation: %d orders instead of 2,000", n)
	}
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	truckCl, officeCl := b.Truck("truck-0001"), b.ClientFiles("office")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// Dispatch: the outbox, the record, and the client that sends orders, applies the trucks' received
	// events and receipts them. Without a Record dispatch would send no receipts, and the truck would keep
	// its 2,000 received events and send them again after its receipt timeout.
	obStore, err := store.Open(filepath.Join(t.TempDir(), "outbox.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { obStore.Close() })
	cert, key := officeCl.CertKey(t)
	ob, err := dispatch.NewOutbox(dispatch.OutboxConfig{Store: obStore, Certificate: cert, Key: key, OnlineGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := archive.Open(filepath.Join(t.TempDir(), archive.File), archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() }) // after wg.Wait: the client is stopped
	ca, _ := pki.LoadCertificates(officeCl.CAFile)
	truckCert, _ := pki.LoadCertificate(truckCl.CertFile)
	dc, err := dispatch.New(dispatch.Config{Transport: transport.Config{Brokers: []string{"mqtts://" + b.Addr},
		CertFile: officeCl.CertFile, KeyFile: officeCl.KeyFile, CAFile: officeCl.CAFile},
		CA: ca, Certificates: []*x509.Certificate{truckCert}, Outbox: ob,
		Record: rec, ReceiptDelay: 200 * time.Millisecond}) // the test waits for the last receipt, not 30 s
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); dc.Run(ctx) }()

	start := time.Now()
	for i := range n {
		o := newOrder("truck-0001", fmt.Sprintf("o-%04d", i), 1)
		o.Revision = 0 // the outbox numbers revisions
		if _, err := ob.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d orders created in %s while the truck was offline", n, time.Since(start).Round(time.Millisecond))

	// The truck comes online for the first time.
	st, err := store.Open(filepath.Join(t.TempDir(), "queue.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cl, err := NewClient(ClientConfig{Transport: transport.Config{Brokers: []string{"mqtts://" + b.Addr},
		CertFile: truckCl.CertFile, KeyFile: truckCl.KeyFile, CAFile: truckCl.CAFile}, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	online := time.Now()
	wg.Add(1)
	go func() { defer wg.Done(); cl.Run(ctx) }()

	deadline := time.Now().Add(90 * time.Second)
	for {
		list, err := ob.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		confirmed := 0
		for _, e := range list {
			if !e.Unconfirmed() {
				confirmed++
			}
		}
		if confirmed == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d orders confirmed after 90 s; book %+v", confirmed, n, cl.Book().Stats())
		}
		time.Sleep(200 * time.Millisecond)
	}
	entries, _ := cl.Book().Orders()
	bs := cl.Book().Stats()
	if len(entries) != n || bs.Applied != uint64(n) || bs.Rejected != 0 {
		t.Fatalf("order book: %d orders, stats %+v", len(entries), bs)
	}
	t.Logf("all %d orders stored once and confirmed %s after the truck came online; book %+v",
		n, time.Since(online).Round(time.Millisecond), bs)

	// Every received event is in dispatch's record and was receipted: the truck's store empties.
	deadline = time.Now().Add(30 * time.Second)
	for {
		c, err := rec.Counts("truck-0001")
		if err != nil {
			t.Fatal(err)
		}
		ss, us := st.Stats(), cl.Uploader().Stats()
		if c.Events == n && ss.Critical.Records == 0 && ss.Normal.Records == 0 && us.Unreceipted == 0 {
			t.Logf("%d received events in dispatch's record; the truck's store is empty (%d records receipted in %d "+
				"receipts, %d sent again)", c.Events, us.Receipted, us.Receipts, us.Resent)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the last confirmation: %d of %d events in dispatch's record; the truck holds %d "+
				"records, %d waiting for a receipt", c.Events, n, ss.Critical.Records+ss.Normal.Records, us.Unreceipted)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
