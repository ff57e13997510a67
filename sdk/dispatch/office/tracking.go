package office

import (
	"errors"
	"net/http"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
)

// trackingView is everything the public tracking page learns: this order's state and destination and,
// while the truck is on its way to it, where the truck is. Nothing about the truck's other stops, its
// route or its name.
type trackingView struct {
	Order     string         `json:"order"`
	State     string         `json:"state"` // pending, on_the_way, arrived, delivered, failed, cancelled, expired
	StateText string         `json:"state_text"`
	Address   string         `json:"address"`
	Dest      trackingPoint  `json:"destination"`
	Updated   time.Time      `json:"updated"`
	Truck     *trackingTruck `json:"truck,omitempty"`
}

type trackingPoint struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

type trackingTruck struct {
	Lat       float64   `json:"lat"`
	Lon       float64   `json:"lon"`
	Time      time.Time `json:"time"`       // the fix's GPS time
	DistanceM float64   `json:"distance_m"` // straight line to the destination
}

// publicState maps the office's state to what a customer is told. onTheWay: the truck has the order.
func publicState(e dispatch.Entry) (state, text string, onTheWay bool) {
	if e.Order.Status == sdk.OrderCancelled {
		return "cancelled", "Cancelled", false
	}
	switch e.State {
	case dispatch.StateReceived, dispatch.StateProblem, dispatch.StateConflict:
		return "on_the_way", "On its way", true
	case dispatch.StateArrived:
		return "arrived", "The driver has arrived", true
	case dispatch.StateDelivered:
		return "delivered", "Delivered", false
	case dispatch.StateFailed:
		return "failed", "Not delivered: the driver will be in touch", false
	case dispatch.StateCancelled:
		return "cancelled", "Cancelled", false
	case dispatch.StateExpired:
		return "expired", "Expired", false
	default:
		return "pending", "Preparing", false
	}
}

// tracked resolves the path's token; a wrong one answers 404 and returns false.
func (s *Service) tracked(w http.ResponseWriter, r *http.Request) (dispatch.Entry, bool) {
	s.securityHeaders(w)
	w.Header().Set("X-Robots-Tag", "noindex")
	e, err := s.cfg.Store.Tracked(r.Context(), r.PathValue("token"))
	if errors.Is(err, dispatch.ErrNotFound) {
		http.Error(w, "no such tracking link", http.StatusNotFound)
		return e, false
	}
	if err != nil {
		s.log.Error("tracking page", "err", err)
		http.Error(w, "try again later", http.StatusServiceUnavailable)
		return e, false
	}
	return e, true
}

// trackingPage is GET /t/{token}: the customer's page (no bearer token).
func (s *Service) trackingPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.tracked(w, r); !ok {
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(s.trackHTML)
}

// trackingStatus is GET /t/{token}/status: the page's JSON (trackingView).
func (s *Service) trackingStatus(w http.ResponseWriter, r *http.Request) {
	e, ok := s.tracked(w, r)
	if !ok {
		return
	}
	state, text, onTheWay := publicState(e)
	v := trackingView{Order: e.Order.ID, State: state, StateText: text, Address: e.Order.Address,
		Dest: trackingPoint{e.Order.Lat, e.Order.Lon}, Updated: e.Updated}
	if onTheWay && e.Order.Status == sdk.OrderActive {
		t, err := s.cfg.Store.Truck(r.Context(), e.Order.Truck)
		if err != nil {
			s.log.Error("tracking page", "err", err)
			http.Error(w, "try again later", http.StatusServiceUnavailable)
			return
		}
		if t.Status != nil && t.Status.Status.State == sdk.StateOnline && t.LastFix != nil {
			f := t.LastFix.Fix
			v.Truck = &trackingTruck{Lat: f.Lat, Lon: f.Lon, Time: f.Time,
				DistanceM: distanceM(f.Lat, f.Lon, e.Order.Lat, e.Order.Lon)}
		}
	}
	writeJSON(w, http.StatusOK, v)
}
