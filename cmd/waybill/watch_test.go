package main

import (
	"context"
	"math/big"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
)

// TestWatchPrintsStatusChanges (issues 11.5, 11.9): watch prints a truck's status only when something an
// operator cares about changed (online/offline, store epoch, the queue crossing 100/1,000/10,000, the CRL
// number, clock skew appearing or going), warns loudly about clock skew, shows the odometer in km and full
// UTC dates; --all-status prints every status.
func TestWatchPrintsStatusChanges(t *testing.T) {
	day := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	health := func(queue int, skew time.Duration, crl int64) *sdk.Health {
		return &sdk.Health{QueueDepth: queue, Sats: 8, StoreEpoch: sdk.Epoch{1}, StoreOrigin: "created", ClockSkew: skew,
			Odometer: 123456, CRL: &sdk.CRLInfo{Loaded: true, Number: big.NewInt(crl)}}
	}
	statuses := []struct {
		st    sdk.State
		h     *sdk.Health
		print bool
	}{
		{sdk.StateOnline, health(3, 0, 1), true},              // first
		{sdk.StateOnline, health(7, 0, 1), false},             // queue moved, no threshold crossed
		{sdk.StateOnline, health(150, 0, 1), true},            // crossed 100
		{sdk.StateOnline, health(180, 0, 1), false},           //
		{sdk.StateOnline, health(180, 3*time.Hour, 1), true},  // skew appears
		{sdk.StateOnline, health(180, 3*time.Hour, 1), false}, //
		{sdk.StateOnline, health(180, 0, 2), true},            // skew gone, new CRL
		{sdk.StateOffline, nil, true},                         // the will: offline
		{sdk.StateOnline, health(180, 0, 2), true},            // back online
	}
	for _, all := range []bool{false, true} {
		var out strings.Builder
		p := &printer{w: &out, all: all}
		want := 0
		for i, s := range statuses {
			before := out.Len()
			_ = p.update(context.Background(), dispatch.Update{Status: &dispatch.Status{Truck: "truck-1",
				Status: sdk.Status{State: s.st, Time: day, Health: s.h}, Retained: true}})
			printed := out.Len() > before
			if printed != (s.print || all) {
				t.Errorf("all=%v: status %d printed %v, want %v:\n%s", all, i, printed, s.print || all, out.String()[before:])
			}
			if s.print || all {
				want++
			}
		}
		text := out.String()
		if n := strings.Count(text, "truck-1          status"); n != want {
			t.Errorf("all=%v: %d status lines, want %d:\n%s", all, n, want, text)
		}
		for _, w := range []string{"(since 2031-03-04T05:06:07Z)", "odometer 123.5 km", "CRL 2",
			"WARNING clock: GPS and system clock disagree by 3h0m0s"} {
			if !strings.Contains(text, w) {
				t.Errorf("all=%v: output lacks %q:\n%s", all, w, text)
			}
		}
		if !regexp.MustCompile(`(?m)^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z  truck-1`).MatchString(text) {
			t.Errorf("lines do not start with the UTC date and time:\n%s", text)
		}
	}

	// Fixes and events show their full UTC date.
	var out strings.Builder
	p := &printer{w: &out}
	_ = p.update(context.Background(), dispatch.Update{Fixes: []dispatch.Fix{{Truck: "truck-1", Seq: 4,
		Fix: sdk.Fix{Time: day, Lat: 51.5, Lon: -0.1, Mode: 3}}}})
	_ = p.update(context.Background(), dispatch.Update{Event: &dispatch.Event{Truck: "truck-1",
		Event: sdk.Event{Kind: sdk.EventDelivered, Time: day, OrderID: "o-1", Revision: 1}}})
	if strings.Count(out.String(), "2031-03-04T05:06:07Z") != 2 {
		t.Errorf("fix and event without their date:\n%s", out.String())
	}
}
