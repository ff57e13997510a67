package truck

import (
	"fmt"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/store"
)

// Record kinds in the truck's store (store.Entry.Kind).
const (
	KindFix   uint8 = 1 // a fix: EncodeFix
	KindEvent uint8 = 2 // a delivery event: EncodeEvent
)

// EncodeFix returns a fix as a store entry for the normal lane. The data is the compact telemetry encoding of
// a one-fix batch (about 30 bytes).
func EncodeFix(f sdk.Fix) (store.Entry, error) { return EncodeFixOdometer(f, 0) }

// EncodeFixOdometer is EncodeFix with the truck's odometer reading (metres) at the fix; zero: none. The
// uploader sends a batch's reading from its newest fix.
func EncodeFixOdometer(f sdk.Fix, odometer uint64) (store.Entry, error) {
	if err := f.Validate(); err != nil {
		return store.Entry{}, err
	}
	body, err := (&sdk.Telemetry{Fixes: []sdk.TelemetryFix{{Seq: 1, Fix: f}}, Odometer: odometer}).MarshalBody()
	if err != nil {
		return store.Entry{}, err
	}
	return store.Entry{Lane: store.Normal, Kind: KindFix, Time: f.Time, Data: body}, nil
}

// DecodeFix reads a fix record.
func DecodeFix(data []byte) (sdk.Fix, error) {
	f, _, err := DecodeFixOdometer(data)
	return f, err
}

// DecodeFixOdometer reads a fix record and the odometer reading stored with it (zero: none).
func DecodeFixOdometer(data []byte) (sdk.Fix, uint64, error) {
	t, err := sdk.UnmarshalTelemetry(data)
	if err != nil {
		return sdk.Fix{}, 0, err
	}
	if len(t.Fixes) != 1 {
		return sdk.Fix{}, 0, fmt.Errorf("truck: fix record holds %d fixes, want 1", len(t.Fixes))
	}
	return t.Fixes[0].Fix, t.Odometer, nil
}

// EncodeEvent returns a delivery event as a store entry for the critical lane. Its epoch and record sequence
// number are filled in at upload from the store, so they need not be set.
func EncodeEvent(e sdk.Event) (store.Entry, error) {
	e.Epoch, e.RecordSeq = sdk.Epoch{}, 0
	body, err := e.MarshalBody()
	if err != nil {
		return store.Entry{}, err
	}
	return store.Entry{Lane: store.Critical, Kind: KindEvent, Time: e.Time, Data: body}, nil
}

// DecodeEvent reads an event record and gives it its identity in the store.
func DecodeEvent(data []byte, epoch uint64, seq uint64) (*sdk.Event, error) {
	e, err := sdk.UnmarshalEvent(data)
	if err != nil {
		return nil, err
	}
	e.Epoch, e.RecordSeq = sdk.EpochOf(epoch), seq
	return e, nil
}
