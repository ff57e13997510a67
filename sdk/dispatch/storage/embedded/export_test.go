package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/embedded"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// TestExport reads what the outbox keeps besides orders (the buckets sdk/dispatch does not export): the
// trucks' store epochs and the last reserved order sequence number; and tokens without creating any.
func TestExport(t *testing.T) {
	office := sdktest.NewOffice(t)
	st, err := embedded.Open(embedded.Options{Dir: t.TempDir(), Outbox: dispatch.OutboxConfig{
		Certificate: office.Certificate, Key: office.Key, Poll: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if x, err := st.Export(); err != nil || len(x.Epochs) != 0 || x.Seq != 0 || x.Identity != office.Certificate.Subject.CommonName {
		t.Fatalf("empty: %v %+v", err, x)
	}
	ep := sdk.Epoch{7, 7}
	if _, err := st.NoteStatus(ctx, dispatch.Status{Truck: "truck-1", Status: sdk.Status{State: sdk.StateOnline,
		Time: time.Now(), Health: &sdk.Health{StoreEpoch: ep}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, sdk.Order{ID: "o-1", Truck: "truck-1", Expires: time.Now().Add(time.Hour),
		Address: "Quay", Lat: 51.5, Lon: -0.1, RadiusM: 80}); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	pub := &sdktest.CountingPublisher{}
	done := make(chan error, 1)
	go func() { done <- st.RunSender(rctx, pub) }()
	sdktest.WaitFor(t, 10*time.Second, "the order sent", func() bool { return pub.N.Load() > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	x, err := st.Export()
	if err != nil || x.Epochs["truck-1"] != ep || x.Seq == 0 {
		t.Fatalf("after a status and a send: %v %+v", err, x)
	}
	if _, ok, err := st.StoredTrackingToken("truck-1", "o-1"); ok || err != nil {
		t.Fatalf("a token before any was made: %v %v", ok, err)
	}
	tok, _ := st.TrackingToken(ctx, "truck-1", "o-1")
	if got, ok, err := st.StoredTrackingToken("truck-1", "o-1"); !ok || err != nil || got != tok {
		t.Fatalf("stored token %q %v %v, want %q", got, ok, err, tok)
	}
}
