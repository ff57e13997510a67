package storage_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
)

// testTracking: a token per order, created once (also when asked concurrently), kept through revisions
// and cancellation, found only by itself.
func testTracking(t *testing.T, st storage.Store, c *clock) {
	ctx := context.Background()
	if _, err := st.TrackingToken(ctx, "truck-1", "o-1"); !errors.Is(err, dispatch.ErrNotFound) {
		t.Fatalf("token of a missing order: %v, want ErrNotFound", err)
	}
	for _, id := range []string{"o-1", "o-2"} {
		if _, err := st.Create(ctx, testOrder(id, "truck-1", c.Now())); err != nil {
			t.Fatal(err)
		}
	}
	// Asked for at once: one token.
	toks := make([]string, 8)
	errs := make([]error, len(toks))
	var wg sync.WaitGroup
	for i := range toks {
		wg.Go(func() { toks[i], errs[i] = st.TrackingToken(ctx, "truck-1", "o-1") })
	}
	wg.Wait()
	for i := range toks {
		if errs[i] != nil || toks[i] != toks[0] {
			t.Fatalf("concurrent TrackingToken: %q %v, first %q", toks[i], errs[i], toks[0])
		}
	}
	tok1 := toks[0]
	if raw, err := base64.RawURLEncoding.DecodeString(tok1); err != nil || len(raw) != 16 {
		t.Fatalf("token %q: %v, %d bytes, want 16", tok1, err, len(raw))
	}
	tok2, err := st.TrackingToken(ctx, "truck-1", "o-2")
	if err != nil || tok2 == tok1 {
		t.Fatalf("o-2's token %q (%v), o-1's %q", tok2, err, tok1)
	}
	// Kept through a revision and a cancellation.
	rev := testOrder("o-1", "truck-1", c.Now())
	rev.Address = "2 Quay St"
	if _, err := st.Revise(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Cancel(ctx, "truck-1", "o-2", "customer away"); err != nil {
		t.Fatal(err)
	}
	if again, err := st.TrackingToken(ctx, "truck-1", "o-1"); err != nil || again != tok1 {
		t.Fatalf("o-1's token after a revision: %q %v, want %q", again, err, tok1)
	}

	flip := []byte(tok1)
	if flip[5] == 'A' {
		flip[5] = 'B'
	} else {
		flip[5] = 'A'
	}
	other, _ := storage.NewTrackingToken()
	cases := []struct {
		name    string
		token   string
		id      string // "" : not found
		address string
	}{
		{"o-1's token", tok1, "o-1", "2 Quay St"},
		{"o-2's token (cancelled)", tok2, "o-2", "1 Quay St"},
		{"one character changed", string(flip), "", ""},
		{"an unused token", other, "", ""},
		{"empty", "", "", ""},
		{"too short", tok1[:21], "", ""},
		{"too long", tok1 + "A", "", ""},
		{"not base64url", strings.Repeat("!", len(tok1)), "", ""},
		{"the order id", "o-1", "", ""},
	}
	for _, tc := range cases {
		e, err := st.Tracked(ctx, tc.token)
		if tc.id == "" {
			if !errors.Is(err, dispatch.ErrNotFound) {
				t.Errorf("%s: %v %+v, want ErrNotFound", tc.name, err, e.Order)
			}
			continue
		}
		if err != nil || e.Order.ID != tc.id || e.Order.Address != tc.address {
			t.Errorf("%s: %v, order %s at %q; want %s at %q", tc.name, err, e.Order.ID, e.Order.Address, tc.id, tc.address)
		}
	}
}
