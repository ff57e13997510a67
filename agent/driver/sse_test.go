package driver

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/truck"
)

// sseEvent is one server-sent event.
type sseEvent struct{ name, data string }

// readEvents parses a server-sent event stream onto a channel, closed at the end of the stream.
func readEvents(body *bufio.Reader) <-chan sseEvent {
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		var ev sseEvent
		for {
			line, err := body.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "":
				if ev.name != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return ch
}

func next(t *testing.T, ch <-chan sseEvent, name string) sseEvent {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended waiting for %q", name)
			}
			if ev.name == name {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %q event within 5 s", name)
		}
	}
}

// TestEventStream: a snapshot on connect, each order change as it is stored, the position when the fix
// moves; Close ends the stream and refuses new ones.
func TestEventStream(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.PositionEvery = 20 * time.Millisecond })
	f.send(newOrder("o-1", 1))
	old := newOrder("o-old", 1)
	f.send(old)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.http.URL+"/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %v", res.StatusCode, res.Header)
	}
	events := readEvents(bufio.NewReader(res.Body))

	var snap ordersBody
	if err := json.Unmarshal([]byte(next(t, events, "orders").data), &snap); err != nil {
		t.Fatal(err)
	}
	if len(snap.Orders) != 2 || snap.Position != nil {
		t.Fatalf("snapshot = %+v", snap)
	}

	f.send(newOrder("o-2", 1))
	var v OrderView
	json.Unmarshal([]byte(next(t, events, "order").data), &v)
	if v.ID != "o-2" || v.State != truck.StateActive || v.Recipient != "A. Recipient" {
		t.Fatalf("new order event = %+v", v)
	}
	f.send(cancelled(old))
	json.Unmarshal([]byte(next(t, events, "order").data), &v)
	if v.ID != "o-old" || v.State != truck.StateCancelled {
		t.Fatalf("cancellation event = %+v", v)
	}
	if r := f.do("POST", "/api/orders/o-1/delivered", `{"via":"screen"}`); r.status != 200 {
		t.Fatalf("deliver: %s", r.body)
	}
	json.Unmarshal([]byte(next(t, events, "order").data), &v)
	if v.ID != "o-1" || v.State != truck.StateDelivered || v.Action == nil || v.Action.Via != sdk.ViaScreen {
		t.Fatalf("delivery event = %+v", v)
	}

	f.setFix(sdk.Fix{Time: time.Now().UTC().Truncate(time.Millisecond), Lat: 52.51, Lon: 13.40, Mode: 3})
	var fix sdk.Fix
	json.Unmarshal([]byte(next(t, events, "position").data), &fix)
	if fix.Lat != 52.51 {
		t.Fatalf("position event = %+v", fix)
	}

	var st struct{ Pages int }
	f.do("GET", "/api/status", "").json(t, &st)
	if st.Pages != 1 {
		t.Fatalf("status counts %d pages, want 1", st.Pages)
	}

	// Close ends the stream (the channel closes at EOF) and waits for the handler.
	f.srv.Close()
	for range events {
	}
	wantError(t, "events after Close", f.do("GET", "/events", ""), 503, "shutting_down")
	if r := f.do("GET", "/api/orders", ""); r.status != 200 {
		t.Fatalf("the hook after Close: %d", r.status)
	}
}

// TestSlowStreamResyncs: a stream that cannot keep up is told to send a snapshot instead of blocking Notify.
func TestSlowStreamResyncs(t *testing.T) {
	f := newFixture(t, nil)
	sub, ok := f.srv.subscribe()
	if !ok {
		t.Fatal("subscribe refused")
	}
	defer f.srv.unsubscribe(sub)
	for i := 0; i < subscriberBuffer+5; i++ {
		f.srv.Notify(truck.Entry{Order: sdk.Order{ID: "o-1"}})
	}
	if len(sub.entries) != subscriberBuffer || len(sub.resync) != 1 {
		t.Fatalf("%d queued, resync %d", len(sub.entries), len(sub.resync))
	}
}

// TestStreamCap: a stream beyond MaxStreams closes the oldest, which is told why and asked to wait before
// reconnecting; the newer ones keep working.
func TestStreamCap(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxStreams = 2 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var streams []<-chan sseEvent
	var raw []*bufio.Reader
	for i := range 3 {
		req, _ := http.NewRequestWithContext(ctx, "GET", f.http.URL+"/events", nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("stream %d: %d", i, res.StatusCode)
		}
		br := bufio.NewReader(res.Body)
		if i == 0 {
			raw = append(raw, br)
			streams = append(streams, nil)
			continue
		}
		ev := readEvents(br)
		next(t, ev, "orders")
		streams = append(streams, ev)
	}
	body, _ := io.ReadAll(raw[0]) // ends: closed by the third
	if !strings.Contains(string(body), "retry: 30000") || !strings.Contains(string(body), "event: closed") ||
		!strings.Contains(string(body), `"code":"too_many_streams"`) {
		t.Fatalf("oldest stream ended with:\n%s", body)
	}
	if n := f.srv.Streams(); n != 2 {
		t.Fatalf("%d streams open, want 2", n)
	}
	f.send(newOrder("o-1", 1))
	next(t, streams[1], "order")
	next(t, streams[2], "order")
}
