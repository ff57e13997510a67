package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/truck"
	"github.com/waybill-iot/waybill/store"
)

// TestStoreInspectWhileOpen: inspect reads a store another handle holds open and locked (a running agent),
// lanes oldest first, records decoded.
func TestStoreInspectWhileOpen(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "queue.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	for i := range 3 {
		e, _ := truck.EncodeFix(sdk.Fix{Time: time.Now().UTC(), Lat: 52.5 + float64(i)/1000, Lon: 13.4, Mode: 3})
		st.Append(ctx, e)
	}
	ev, _ := truck.EncodeEvent(sdk.Event{Kind: sdk.EventDelivered, Time: time.Now().UTC(), OrderID: "o-7", Revision: 2, Via: sdk.ViaButton})
	st.Append(ctx, ev)

	var out, errb strings.Builder
	if code := run(ctx, streams{nil, &out, &errb}, []string{"store", "inspect", dir}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	text := out.String()
	for _, want := range []string{"critical: 1 records", "normal:   3 records", "delivered order o-7 rev 2 via button", "52.500000,13.400000"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Index(text, "o-7") > strings.Index(text, "52.500000") {
		t.Errorf("critical lane not first:\n%s", text)
	}
	out.Reset()
	if code := run(ctx, streams{nil, &out, &errb}, []string{"store", "inspect", "--json", dir}); code != 0 {
		t.Fatal(errb.String())
	}
	var r inspectReport
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil || len(r.Records) != 4 {
		t.Fatalf("json: %v, %d records", err, len(r.Records))
	}
	// The agent's store is untouched: still 4 records, and writable.
	if s := st.Stats(); s.Critical.Records+s.Normal.Records != 4 {
		t.Fatalf("store changed: %+v", s)
	}
	if _, err := st.Append(ctx, ev); err != nil {
		t.Fatal(err)
	}
}
