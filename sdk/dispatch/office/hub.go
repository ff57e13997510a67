package office

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
)

// DefaultMaxStreams bounds the console's open event streams when Config.MaxStreams is zero.
const DefaultMaxStreams = 32

// streamBuffer is how many changes may wait for one slow stream before it gets a fresh snapshot instead.
const streamBuffer = 256

// streamWriteTimeout bounds each write to an event stream.
const streamWriteTimeout = 10 * time.Second

// streamKeepAlive is the comment sent on an idle stream, so proxies and browsers keep it open.
const streamKeepAlive = 20 * time.Second

// change is one pre-encoded server-sent event.
type change struct {
	event string
	data  []byte
}

type stream struct {
	ch     chan change
	resync chan struct{}
}

// hub fans the office's changes out to the console's event streams. It never blocks the ingest: a stream
// that cannot keep up gets a snapshot instead of the changes it missed.
type hub struct {
	max int

	// mu guards streams and closed.
	mu      sync.Mutex
	streams map[*stream]struct{}
	closed  bool
}

func newHub(max int) *hub { return &hub{max: max, streams: map[*stream]struct{}{}} }

var errTooManyStreams = errors.New("too many console event streams are open")

func (h *hub) subscribe() (*stream, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errors.New("the office is stopping")
	}
	if len(h.streams) >= h.max {
		return nil, fmt.Errorf("%w (%d): close a console tab", errTooManyStreams, h.max)
	}
	st := &stream{ch: make(chan change, streamBuffer), resync: make(chan struct{}, 1)}
	h.streams[st] = struct{}{}
	return st, nil
}

func (h *hub) unsubscribe(st *stream) {
	h.mu.Lock()
	delete(h.streams, st)
	h.mu.Unlock()
}

// count is the number of open streams.
func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.streams)
}

func (h *hub) publish(event string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for st := range h.streams {
		select {
		case st.ch <- change{event, data}:
		default:
			select {
			case st.resync <- struct{}{}:
			default:
			}
		}
	}
}

// fleetItem is one truck on the map.
type fleetItem struct {
	Truck  string     `json:"truck"`
	Online bool       `json:"online"`
	Lat    *float64   `json:"lat,omitempty"`
	Lon    *float64   `json:"lon,omitempty"`
	Time   *time.Time `json:"time,omitempty"` // the fix's GPS time
	Speed  *float64   `json:"speed,omitempty"`
	Course *float64   `json:"course,omitempty"`
}

func fixItem(truck string, f sdk.Fix) fleetItem {
	lat, lon, t := f.Lat, f.Lon, f.Time
	it := fleetItem{Truck: truck, Lat: &lat, Lon: &lon, Time: &t}
	if f.Has&sdk.FixSpeed != 0 {
		v := f.Speed
		it.Speed = &v
	}
	if f.Has&sdk.FixCourse != 0 {
		v := f.Course
		it.Course = &v
	}
	return it
}

// notify runs in the ingest's Handle, after Commit: it tells the console what changed.
func (s *Service) notify(ctx context.Context, u dispatch.Update) {
	if s.hub.count() == 0 {
		return
	}
	switch {
	case len(u.Fixes) > 0:
		newest := u.Fixes[0]
		for _, f := range u.Fixes[1:] {
			if f.Fix.Time.After(newest.Fix.Time) {
				newest = f
			}
		}
		s.hub.publish("fix", fixItem(newest.Truck, newest.Fix))
	case u.Event != nil:
		s.notifyOrder(ctx, u.Event.Truck, u.Event.Event.OrderID)
	case u.Status != nil:
		s.hub.publish("status", map[string]any{"truck": u.Status.Truck, "online": u.Status.Status.State == sdk.StateOnline,
			"time": u.Status.Status.Time})
	}
}

// notifyChange tells the console what another process committed (storage.Watcher).
func (s *Service) notifyChange(ctx context.Context, c storage.Change) {
	if s.hub.count() == 0 {
		return
	}
	switch c.Kind {
	case storage.ChangeFix:
		if c.Fix != nil {
			s.hub.publish("fix", fixItem(c.Truck, *c.Fix))
		}
	case storage.ChangeOrder:
		s.notifyOrder(ctx, c.Truck, c.Order)
	case storage.ChangeStatus:
		s.hub.publish("status", map[string]any{"truck": c.Truck, "online": c.Online, "time": c.Time})
	}
}

func (s *Service) notifyOrder(ctx context.Context, truck, id string) {
	if s.hub.count() == 0 || id == "" {
		return
	}
	e, err := s.cfg.Store.Order(ctx, truck, id)
	if err != nil {
		return
	}
	s.hub.publish("order", view(e))
}

// fleet is every truck's online state and last position.
func (s *Service) fleet(ctx context.Context) ([]fleetItem, error) {
	ts, err := s.cfg.Store.Trucks(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]fleetItem, 0, len(ts))
	for _, t := range ts {
		it := fleetItem{Truck: t.Name}
		if t.LastFix != nil {
			it = fixItem(t.Name, t.LastFix.Fix)
		}
		it.Online = t.Status != nil && t.Status.Status.State == sdk.StateOnline
		out = append(out, it)
	}
	return out, nil
}

func (s *Service) fleetHandler(w http.ResponseWriter, r *http.Request) {
	out, err := s.fleet(r.Context())
	if err != nil {
		storeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// events is GET /api/events, the console's server-sent event stream:
//
//	event: orders   data: [orderView...]    on connect and after a resync (every order)
//	event: fleet    data: [fleetItem...]    on connect and after a resync (every truck)
//	event: order    data: orderView         an order changed (created, revised, cancelled, a truck's event)
//	event: fix      data: fleetItem         a truck's newest fix of a telemetry message
//	event: status   data: {truck, online, time}
//
// At most Config.MaxStreams are open at once; another is refused with 503.
func (s *Service) events(w http.ResponseWriter, r *http.Request) {
	st, err := s.hub.subscribe()
	if err != nil {
		w.Header().Set("Retry-After", "30")
		writeErr(w, http.StatusServiceUnavailable, err)
		return
	}
	defer s.hub.unsubscribe(st)
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	send := func(event string, data []byte) error {
		var buf bytes.Buffer
		fmt.Fprintf(&buf, "event: %s\ndata: %s\n\n", event, data)
		return write(buf.Bytes())
	}
	snapshot := func() error {
		orders, err := s.cfg.Store.Orders(r.Context())
		if err != nil {
			return err
		}
		views := make([]orderView, 0, len(orders))
		for _, e := range orders {
			views = append(views, view(e))
		}
		fleet, err := s.fleet(r.Context())
		if err != nil {
			return err
		}
		for _, p := range []struct {
			event string
			v     any
		}{{"orders", views}, {"fleet", fleet}} {
			data, _ := json.Marshal(p.v)
			if err := send(p.event, data); err != nil {
				return err
			}
		}
		return nil
	}
	if err := write([]byte("retry: 2000\n\n")); err != nil {
		return
	}
	if err := snapshot(); err != nil {
		s.log.Debug("console: event stream", "err", err)
		return
	}
	keep := time.NewTicker(streamKeepAlive)
	defer keep.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-s.stopping:
			return
		case c := <-st.ch:
			err = send(c.event, c.data)
		case <-st.resync:
			for len(st.ch) > 0 {
				<-st.ch
			}
			err = snapshot()
		case <-keep.C:
			err = write([]byte(": keep-alive\n\n"))
		}
		if err != nil {
			s.log.Debug("console: event stream ended", "err", err)
			return
		}
	}
}
