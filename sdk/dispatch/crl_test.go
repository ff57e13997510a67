package dispatch

import (
	"context"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// TestConsumerRefusesRevokedTruckAfterCRL runs a dispatch Client against real Mosquitto: it applies the
// fleet CRL the administrator publishes, and once the CRL revoking truck-1 arrives, refuses the telemetry
// truck-1 goes on sending, without a restart. The broker is deliberately not told to end truck-1's session
// (b.Revoke would): dispatch must not depend on the broker for this. An older CRL published afterwards
// changes nothing.
func TestConsumerRefusesRevokedTruckAfterCRL(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	truckCl, office := b.Truck("truck-1"), b.ClientFiles("office")
	truckCert, err := pki.LoadCertificate(truckCl.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var crls []sdk.CRLInfo
	col := newCollector()
	c := startClient(t, b, office, Config{Certificates: []*x509.Certificate{truckCert},
		Handle: func(ctx context.Context, u Update) error {
			if u.CRL != nil {
				mu.Lock()
				crls = append(crls, *u.CRL)
				mu.Unlock()
			}
			return col.handle(ctx, u)
		}})
	applied := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(crls)
	}

	first, err := b.PKI.CRL()
	if err != nil {
		t.Fatal(err)
	}
	b.PublishCRL()
	sdktest.WaitFor(t, 20*time.Second, "CRL #1 handed over", func() bool { return applied() == 1 })

	r := newResponder(t, b, truckCl)
	conn := r.start(false)
	telTopic, _ := sdk.Topics{}.Telemetry("truck-1")
	epoch := sdk.Epoch{9}
	pub := func(seqs ...uint64) {
		t.Helper()
		if err := conn.Publish(context.Background(), telTopic, telemetryPayload(t, r.signer, epoch, seqs...),
			transport.PublishOptions{QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	pub(seqRange(1, 5)...)
	sdktest.WaitFor(t, 20*time.Second, "5 fixes", func() bool { return c.Consumer().Stats().Fixes == 5 })

	// Revoke truck-1 in the PKI and publish the CRL; truck-1's connection stays up.
	if _, err := b.PKI.Revoke("truck-1"); err != nil {
		t.Fatal(err)
	}
	published := time.Now()
	b.PublishCRL()
	sdktest.WaitFor(t, 20*time.Second, "CRL #2 handed over", func() bool { return applied() == 2 })
	t.Logf("dispatch applied the CRL revoking truck-1 %v after the administrator began publishing it",
		time.Since(published).Round(time.Millisecond))
	mu.Lock()
	if crls[1].Number == nil || crls[1].Number.Cmp(first.Number) <= 0 || crls[1].Revoked != 1 {
		t.Errorf("CRL handed over: %v", crls[1])
	}
	mu.Unlock()

	pub(seqRange(6, 10)...)
	sdktest.WaitFor(t, 20*time.Second, "the revoked truck's telemetry refused", func() bool {
		return c.Consumer().Stats().Rejected[sdk.ReasonRevoked] == 1
	})

	// The older CRL #1 again (retained now): ignored; truck-1 stays refused.
	admin := b.Admin()
	pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PublishCRL(pctx, first.Raw); err != nil {
		t.Fatal(err)
	}
	sdktest.WaitFor(t, 20*time.Second, "the older CRL ignored", func() bool { return c.Consumer().Stats().CRLsNotNewer == 1 })
	pub(seqRange(11, 12)...)
	sdktest.WaitFor(t, 20*time.Second, "truck-1 still refused after the older CRL", func() bool {
		return c.Consumer().Stats().Rejected[sdk.ReasonRevoked] == 2
	})
	st := c.Consumer().Stats()
	if st.Fixes != 5 || st.CRLsApplied != 2 || st.CRLsRefused != 0 || applied() != 2 {
		t.Fatalf("consumer stats %+v; %d CRLs handed over", st, applied())
	}
}
