package truck

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/store"
)

// Each telemetry batch carries the odometer reading stored with its newest fix; fixes stored without one
// (an older agent, the SDK's EncodeFix) add none.
func TestTelemetryCarriesTheNewestOdometer(t *testing.T) {
	p := sdktest.NewPKI(t, "truck-0001")
	signer := sdktest.Client{CertFile: p.CertPath("truck-0001"), KeyFile: p.KeyPath("truck-0001")}.Signer(t)
	st, err := store.Open(filepath.Join(t.TempDir(), "queue.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var entries []store.Entry
	for i := range 5 {
		odo := uint64(1000 + 10*i)
		if i == 4 {
			odo = 0 // the last one has no reading: the batch keeps the one before
		}
		e, err := EncodeFixOdometer(testFix(i), odo)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	ctx := context.Background()
	if _, err := st.Append(ctx, entries...); err != nil {
		t.Fatal(err)
	}
	u, err := NewUploader(UploaderConfig{Store: st, Link: noLink{}, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := st.Peek(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	check := func(batch int, want []uint64) {
		t.Helper()
		msgs := u.compose(ctx, recs, batch)
		if len(msgs) != len(want) {
			t.Fatalf("%d messages, want %d", len(msgs), len(want))
		}
		for i, m := range msgs {
			env, err := sdk.DecodeEnvelope(m.payload)
			if err != nil {
				t.Fatal(err)
			}
			tel, err := sdk.UnmarshalTelemetry(env.Body)
			if err != nil {
				t.Fatal(err)
			}
			if tel.Odometer != want[i] {
				t.Errorf("batch of %d, message %d: odometer %d, want %d", batch, i, tel.Odometer, want[i])
			}
		}
	}
	check(10, []uint64{1030})
	check(2, []uint64{1010, 1030, 0})
}
