package dispatch

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/store"
)

// BenchmarkOutboxApplyOne measures what Client pays per event now that each is applied to the outbox before
// its acknowledgement: one store transaction (fsync), with Path also an open and close of the store.
func BenchmarkOutboxApplyOne(b *testing.B) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(1),
		Subject: pkix.Name{CommonName: "office", OrganizationalUnit: []string{"dispatch"}}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "office", OrganizationalUnit: []string{"dispatch"}}}, key.Public(), key)
	cert, _ := x509.ParseCertificate(der)
	for _, mode := range []string{"path", "store"} {
		b.Run(mode, func(b *testing.B) {
			cfg := OutboxConfig{Certificate: cert, Key: key, Path: filepath.Join(b.TempDir(), "outbox.db")}
			if mode == "store" {
				st, err := store.Open(cfg.Path, store.Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				cfg.Store, cfg.Path = st, ""
			}
			ob, err := NewOutbox(cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			e, err := ob.Create(ctx, testOrder("truck-1", "o-1"))
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				ev := &sdk.Event{Kind: sdk.EventArrived, Epoch: sdk.Epoch{1}, RecordSeq: uint64(i + 1), Time: time.Now(),
					OrderID: "o-1", Revision: 1, OrderHash: e.Hash}
				if err := ob.Apply(ctx, TruckEvent{Truck: "truck-1", Event: ev}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
