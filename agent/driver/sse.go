package driver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/waybill-iot/waybill/sdk/truck"
)

// subscriber is one connected event stream.
type subscriber struct {
	entries chan truck.Entry
	// resync is signalled when an entry could not be queued: the stream sends a fresh snapshot instead.
	resync chan struct{}
	// evicted is closed when a newer stream took this one's place (Config.MaxStreams).
	evicted chan struct{}
	seq     uint64
}

// evictedRetry is the reconnection delay a stream closed for a newer one is given, so two pages beyond the
// cap do not take each other's place every second.
const evictedRetry = 30 * time.Second

// subscriberBuffer is how many order changes may wait for one slow stream before it falls back to a
// snapshot.
const subscriberBuffer = 64

// writeTimeout bounds each write to an event stream, so a page that stopped reading does not hold its
// handler forever.
const writeTimeout = 10 * time.Second

// Notify tells connected pages that an order changed. Call it from truck.ClientConfig.OnOrder. It never
// blocks: a stream that cannot keep up gets a fresh snapshot instead of the changes it missed.
func (s *Server) Notify(e truck.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs {
		select {
		case sub.entries <- e:
		default:
			select {
			case sub.resync <- struct{}{}:
			default:
			}
		}
	}
}

func (s *Server) subscribe() (*subscriber, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	for len(s.subs) >= s.cfg.MaxStreams {
		var oldest *subscriber
		for o := range s.subs {
			if oldest == nil || o.seq < oldest.seq {
				oldest = o
			}
		}
		delete(s.subs, oldest) // counted out now; its handler ends within a write deadline
		close(oldest.evicted)
	}
	s.seq++
	sub := &subscriber{entries: make(chan truck.Entry, subscriberBuffer), resync: make(chan struct{}, 1),
		evicted: make(chan struct{}), seq: s.seq}
	s.subs[sub] = struct{}{}
	s.streams.Add(1)
	return sub, true
}

func (s *Server) unsubscribe(sub *subscriber) {
	s.mu.Lock()
	delete(s.subs, sub)
	s.mu.Unlock()
	s.streams.Done()
}

// Streams is the number of open event streams.
func (s *Server) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// handleEvents is GET /events: a server-sent event stream of
//
//	event: orders    data: {"position": fix|null, "orders": [OrderView...]}  on connect and after a resync
//	event: order     data: OrderView                                         when an order changed
//	event: position  data: fix                                               when the fix changed (at most every PositionEvery)
//
//	event: closed    data: {"error": ..., "code": "too_many_streams"}      before the stream is closed for a newer one
//
// It ends when the client goes away, the server is closed, or Config.MaxStreams newer streams opened. The
// stream is exempt from the listener's read and write timeouts: it sets a write deadline for each event
// (writeTimeout).
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	sub, ok := s.subscribe()
	if !ok {
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "the agent is shutting down")
		return
	}
	defer s.unsubscribe(sub)
	rc := http.NewResponseController(w)
	// The listener's WriteTimeout would end the stream: each write sets its own deadline instead. (Its
	// ReadTimeout does not: net/http clears the read deadline once the handler of a bodiless request runs.)
	// Not every ResponseWriter supports deadlines.
	_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	send := func(event string, v any) error {
		var buf bytes.Buffer
		if event != "" {
			data, err := json.Marshal(v)
			if err != nil {
				return err
			}
			fmt.Fprintf(&buf, "event: %s\ndata: %s\n\n", event, data)
		} else {
			buf.WriteString(": keep-alive\n\n")
		}
		rc.SetWriteDeadline(time.Now().Add(writeTimeout)) // not every ResponseWriter supports it
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
		return rc.Flush()
	}
	snapshot := func() error {
		body, err := s.snapshot()
		if err != nil {
			s.cfg.Logger.Error("driver: list orders for the page", "err", err)
			return send("error", errorBody{Error: "cannot read the order book: " + err.Error(), Code: "internal"})
		}
		return send("orders", body)
	}

	// Ask the browser to reconnect within a second when the stream breaks.
	if _, err := w.Write([]byte("retry: 1000\n\n")); err != nil {
		return
	}
	if err := snapshot(); err != nil {
		return
	}
	lastFix, hadFix := s.cfg.Position()
	posTick := time.NewTicker(s.cfg.PositionEvery)
	defer posTick.Stop()
	keepAlive := time.NewTicker(s.cfg.KeepAlive)
	defer keepAlive.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-sub.evicted:
			fmt.Fprintf(w, "retry: %d\n\n", evictedRetry.Milliseconds())
			_ = send("closed", errorBody{Error: fmt.Sprintf("more than %d pages are open: this one was closed for a newer one",
				s.cfg.MaxStreams), Code: "too_many_streams"})
			return
		case e := <-sub.entries:
			fix, ok := s.cfg.Position()
			err = send("order", view(e, fix, ok))
		case <-sub.resync:
			// The snapshot covers every change queued before it; sending those after it would go back in time.
			for len(sub.entries) > 0 {
				<-sub.entries
			}
			err = snapshot()
		case <-posTick.C:
			fix, ok := s.cfg.Position()
			if ok && (!hadFix || !fix.Time.Equal(lastFix.Time) || fix.Lat != lastFix.Lat || fix.Lon != lastFix.Lon) {
				lastFix, hadFix = fix, true
				err = send("position", fix)
			}
		case <-keepAlive.C:
			err = send("", nil)
		}
		if err != nil {
			s.cfg.Logger.Debug("driver: event stream ended", "err", err)
			return
		}
	}
}
