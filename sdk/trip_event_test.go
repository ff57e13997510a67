package sdk

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func tripEvent(kind EventKind, seq uint64) *Event {
	e := &Event{Kind: kind, Epoch: Epoch{1, 2, 3, 4, 5, 6, 7, 8}, RecordSeq: seq, Time: t0, Odometer: 123_456_700,
		Fix: &Fix{Time: t0, Lat: 52.37, Lon: 4.89, Speed: 0.2, Mode: 3, Sats: 9, HDOP: 1.1, Has: FixSpeed | FixSats | FixHDOP}}
	switch kind {
	case EventTripEnd:
		e.Distance, e.Duration, e.Idle = 11_380, 23*time.Minute+5*time.Second, 2*time.Minute+15*time.Second
	case EventStop:
		e.Duration = 45 * time.Second
	}
	return e
}

// TestTripEvents: trip_start, trip_end and stop are signed, verified and decoded with their odometer,
// distance and durations, and name no order; the JSON uses the kinds' names.
func TestTripEvents(t *testing.T) {
	f := newFleet(t, false)
	topic := top(t, KindEvents, "truck-0001")
	for i, kind := range []EventKind{EventTripStart, EventStop, EventTripEnd} {
		want := tripEvent(kind, uint64(10+i))
		payload, err := f.truck.SignEvent(want)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		msg, err := f.v.Verify(context.Background(), topic, payload)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		got := msg.Event
		if got == nil || got.Kind != kind || !got.Kind.IsTrip() || got.Odometer != want.Odometer || got.Distance != want.Distance ||
			got.Duration != want.Duration || got.Idle != want.Idle || got.OrderID != "" || got.Fix == nil || !got.Time.Equal(t0) {
			t.Fatalf("%s: decoded %+v, want %+v", kind, got, want)
		}
		j, _ := json.Marshal(got)
		if !strings.Contains(string(j), `"kind":"`+kind.String()+`"`) || !strings.Contains(string(j), `"odometer_m":123456700`) {
			t.Fatalf("%s: JSON %s", kind, j)
		}
		var back Event
		if err := json.Unmarshal(j, &back); err != nil || back.Kind != kind || back.Duration != want.Duration {
			t.Fatalf("%s: JSON does not read back: %v %+v", kind, err, back)
		}
	}
	if EventDelivered.IsTrip() || EventProblem.IsTrip() {
		t.Fatal("order events reported as movement events")
	}
}

// TestTripEventsRefused: a movement event naming an order, an order event carrying trip values, and
// impossible durations are refused with the reason.
func TestTripEventsRefused(t *testing.T) {
	cases := map[string]func(e *Event){
		"names an order":    func(e *Event) { e.OrderID, e.Revision = "ord-1", 1 },
		"driver fields":     func(e *Event) { e.Via = ViaButton },
		"duration":          func(e *Event) { e.Duration = -time.Second },
		"idle":              func(e *Event) { e.Idle = e.Duration + time.Second },
		"only trip_end has": func(e *Event) { e.Kind = EventStop },
	}
	for want, mutate := range cases {
		e := tripEvent(EventTripEnd, 1)
		mutate(e)
		if _, err := e.MarshalBody(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
	order := testEvent(EventDelivered, 1)
	order.Distance = 5
	if _, err := order.MarshalBody(); err == nil || !strings.Contains(err.Error(), "trip values") {
		t.Errorf("a delivered event with a distance: %v", err)
	}
	// An order event still needs its 32-byte order hash on the wire.
	ok := testEvent(EventDelivered, 1)
	body, err := ok.MarshalBody()
	if err != nil {
		t.Fatal(err)
	}
	var w eventWire
	if err := decMode.Unmarshal(body, &w); err != nil {
		t.Fatal(err)
	}
	w.OrderHash = nil
	stripped, _ := encMode.Marshal(w)
	if _, err := UnmarshalEvent(stripped); err == nil {
		t.Error("an order event without its order hash was accepted")
	}
}
