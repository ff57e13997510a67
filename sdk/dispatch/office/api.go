package office

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
)

// maxBody bounds a request body.
const maxBody = 64 << 10

// Handler is the HTTP API (see doc.go).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	// The console (its page and files are public; everything it shows comes from /api) and the customers'
	// tracking pages (the token in the path is the only key).
	mux.HandleFunc("GET /{$}", s.consolePage)
	mux.HandleFunc("GET /console/{name}", s.limited(s.asset))
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Token == "" { // client certificates only: no token to sign in with (an empty one must not match)
			http.Redirect(w, r, "/?login=failed", http.StatusSeeOther)
			return
		}
		s.login(w, r)
	})
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("GET /t/{token}", s.limited(s.trackingPage))
	mux.HandleFunc("GET /t/{token}/status", s.limited(s.trackingStatus))
	auth := func(pattern string, h http.HandlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if ok, code, why := s.apiAuth(r); !ok {
				if code == http.StatusUnauthorized && s.cfg.Token != "" {
					w.Header().Set("WWW-Authenticate", `Bearer realm="waybill dispatch"`)
				}
				writeErr(w, code, why)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			h(w, r)
		})
	}
	auth("GET /metrics", s.metrics)
	auth("GET /api/orders", s.listOrders)
	auth("POST /api/orders", s.createOrder)
	auth("GET /api/orders/{truck}/{id}", s.getOrder)
	auth("PUT /api/orders/{truck}/{id}", s.reviseOrder)
	auth("DELETE /api/orders/{truck}/{id}", s.cancelOrder)
	auth("GET /api/trucks", s.trucks)
	auth("GET /api/trucks/{truck}/track", s.track)
	auth("GET /api/proofs", s.proofs)
	auth("GET /api/session", s.session)
	auth("GET /api/fleet", s.fleetHandler)
	auth("GET /api/events", s.events)
	auth("GET /api/trucks/{truck}/events", s.truckEvents)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// storeErr maps a storage error to a status code.
func storeErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, dispatch.ErrNotFound):
		writeErr(w, http.StatusNotFound, err)
	case errors.Is(err, dispatch.ErrExists), errors.Is(err, dispatch.ErrCancelled), errors.Is(err, dispatch.ErrClosed):
		writeErr(w, http.StatusConflict, err)
	case errors.Is(err, storage.ErrBadRange), errors.As(err, new(badInput)):
		writeErr(w, http.StatusBadRequest, err)
	default:
		writeErr(w, http.StatusInternalServerError, err)
	}
}

type badInput struct{ msg string }

func (b badInput) Error() string { return b.msg }

func (s *Service) healthz(w http.ResponseWriter, r *http.Request) {
	var problems []string
	if !s.client.Conn().Connected() {
		problems = append(problems, "broker link down")
	}
	if _, err := s.cfg.Store.Order(r.Context(), "healthz", "healthz"); err != nil && !errors.Is(err, dispatch.ErrNotFound) {
		problems = append(problems, "storage: "+err.Error())
	}
	if len(problems) > 0 {
		http.Error(w, strings.Join(problems, "; "), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// orderRequest is the body of create and revise. Expires is RFC 3339; on create zero means 48 hours. On
// create lat and lon are required and a radius left out is dispatch.DefaultRadiusM; on revise every field
// left out keeps the order's current value (an empty string clears a text field).
type orderRequest struct {
	Truck     string    `json:"truck"`
	ID        string    `json:"id"`
	Recipient *string   `json:"recipient"`
	Address   *string   `json:"address"`
	Lat       *float64  `json:"lat"`
	Lon       *float64  `json:"lon"`
	RadiusM   *int      `json:"radius_m"`
	Notes     *string   `json:"notes"`
	Expires   time.Time `json:"expires"`
}

func decodeOrder(r *http.Request) (orderRequest, error) {
	var o orderRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return o, badInput{"bad order JSON: " + err.Error()}
	}
	return o, nil
}

// over returns base with the fields the request names replaced.
func (o orderRequest) over(base sdk.Order) sdk.Order {
	base.ID, base.Truck = o.ID, o.Truck
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&base.Recipient, o.Recipient)
	set(&base.Address, o.Address)
	set(&base.Notes, o.Notes)
	if o.Lat != nil {
		base.Lat = *o.Lat
	}
	if o.Lon != nil {
		base.Lon = *o.Lon
	}
	if o.RadiusM != nil {
		base.RadiusM = *o.RadiusM
	}
	if !o.Expires.IsZero() {
		base.Expires = o.Expires
	}
	return base
}

// orderView is an order as the API shows it.
type orderView struct {
	dispatch.Entry
	StateText string           `json:"state_text"`
	History   []dispatch.Event `json:"history,omitempty"`
	// Tracking is the customer's tracking link (create and get only).
	Tracking *tracking `json:"tracking,omitempty"`
}

type tracking struct {
	Token string `json:"token"`
	URL   string `json:"url"` // Config.PublicURL + "/t/" + token
}

// withTracking adds the order's tracking link, creating it if the order has none yet.
func (s *Service) withTracking(r *http.Request, v orderView) (orderView, error) {
	tok, err := s.cfg.Store.TrackingToken(r.Context(), v.Order.Truck, v.Order.ID)
	if err != nil {
		return v, err
	}
	v.Tracking = &tracking{Token: tok, URL: s.trackingURL(tok)}
	return v, nil
}

func view(e dispatch.Entry) orderView { return orderView{Entry: e, StateText: e.StateText()} }

func (s *Service) listOrders(w http.ResponseWriter, r *http.Request) {
	list, err := s.cfg.Store.Orders(r.Context())
	if err != nil {
		storeErr(w, err)
		return
	}
	out := make([]orderView, 0, len(list))
	for _, e := range list {
		out = append(out, view(e))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Service) createOrder(w http.ResponseWriter, r *http.Request) {
	o, err := decodeOrder(r)
	if err != nil {
		storeErr(w, err)
		return
	}
	if o.Lat == nil || o.Lon == nil {
		storeErr(w, badInput{"lat and lon (the destination, degrees WGS84) are required"})
		return
	}
	ord := o.over(sdk.Order{RadiusM: dispatch.DefaultRadiusM})
	if ord.Expires.IsZero() {
		ord.Expires = s.cfg.Clock().Add(48 * time.Hour)
	}
	e, err := s.cfg.Store.Create(r.Context(), ord)
	if err != nil {
		s.orderErr(w, err)
		return
	}
	s.notifyOrder(r.Context(), e.Order.Truck, e.Order.ID)
	v, err := s.withTracking(r, view(e))
	if err != nil {
		storeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

// orderErr: the storage's validation errors (sdk: ...) are bad input.
func (s *Service) orderErr(w http.ResponseWriter, err error) {
	if strings.HasPrefix(err.Error(), "sdk: ") || strings.HasPrefix(err.Error(), "pki: ") {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	storeErr(w, err)
}

func (s *Service) getOrder(w http.ResponseWriter, r *http.Request) {
	truck, id := r.PathValue("truck"), r.PathValue("id")
	e, err := s.cfg.Store.Order(r.Context(), truck, id)
	if err != nil {
		storeErr(w, err)
		return
	}
	evs, err := s.cfg.Store.Events(r.Context(), truck, e.Order.Created.Add(-time.Hour), s.cfg.Clock().Add(24*time.Hour))
	if err != nil {
		storeErr(w, err)
		return
	}
	v, err := s.withTracking(r, view(e))
	if err != nil {
		storeErr(w, err)
		return
	}
	for _, ev := range evs {
		if ev.Event.OrderID == id {
			v.History = append(v.History, ev)
		}
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Service) reviseOrder(w http.ResponseWriter, r *http.Request) {
	o, err := decodeOrder(r)
	if err != nil {
		storeErr(w, err)
		return
	}
	truck, id := r.PathValue("truck"), r.PathValue("id")
	if (o.Truck != "" && o.Truck != truck) || (o.ID != "" && o.ID != id) {
		writeErr(w, http.StatusBadRequest, errors.New("the body's truck and id must match the path (an order cannot move to another truck: cancel it and create another)"))
		return
	}
	o.Truck, o.ID = truck, id
	cur, err := s.cfg.Store.Order(r.Context(), truck, id)
	if err != nil {
		storeErr(w, err)
		return
	}
	// The revision is the current order with what the request names: the new revision's time and status
	// are the store's (Revise).
	e, err := s.cfg.Store.Revise(r.Context(), o.over(cur.Order))
	if err != nil {
		s.orderErr(w, err)
		return
	}
	s.notifyOrder(r.Context(), truck, id)
	writeJSON(w, http.StatusOK, view(e))
}

func (s *Service) cancelOrder(w http.ResponseWriter, r *http.Request) {
	e, err := s.cfg.Store.Cancel(r.Context(), r.PathValue("truck"), r.PathValue("id"), r.URL.Query().Get("reason"))
	if err != nil {
		s.orderErr(w, err)
		return
	}
	s.notifyOrder(r.Context(), e.Order.Truck, e.Order.ID)
	writeJSON(w, http.StatusOK, view(e))
}

// truckView is a truck as the API shows it.
type truckView struct {
	Name         string        `json:"name"`
	Online       bool          `json:"online"`
	StatusTime   *time.Time    `json:"status_time,omitempty"`
	LastFix      *dispatch.Fix `json:"last_fix,omitempty"`
	FixAgeS      *float64      `json:"fix_age_s,omitempty"` // seconds since the last fix's GPS time
	QueueDepth   *int          `json:"queue_depth,omitempty"`
	CertDaysLeft *int          `json:"cert_days_left,omitempty"`
	OpenOrders   int           `json:"open_orders"`
	// The truck's store, from its latest status: its epoch, how it began (created: a new or replaced SD
	// card, or the first start; recreated: the old one was unreadable; salvaged: damaged, what could be
	// read was kept) and since when. A unit whose store is not "created" at its first start lost data.
	StoreEpoch  string     `json:"store_epoch,omitempty"`
	StoreOrigin string     `json:"store_origin,omitempty"`
	StoreSince  *time.Time `json:"store_since,omitempty"`
}

func (s *Service) trucks(w http.ResponseWriter, r *http.Request) {
	ts, err := s.cfg.Store.Trucks(r.Context())
	if err != nil {
		storeErr(w, err)
		return
	}
	orders, err := s.cfg.Store.Orders(r.Context())
	if err != nil {
		storeErr(w, err)
		return
	}
	open := map[string]int{}
	for _, e := range orders {
		switch e.State {
		case dispatch.StateDelivered, dispatch.StateFailed, dispatch.StateCancelled, dispatch.StateExpired:
		default:
			open[e.Order.Truck]++
		}
	}
	now := s.cfg.Clock()
	out := make([]truckView, 0, len(ts))
	for _, t := range ts {
		v := truckView{Name: t.Name, LastFix: t.LastFix, OpenOrders: open[t.Name]}
		if st := t.Status; st != nil {
			v.Online = st.Status.State == sdk.StateOnline
			tm := st.Status.Time
			v.StatusTime = &tm
			if h := st.Status.Health; h != nil {
				q, d := h.QueueDepth, h.CertDaysLeft
				v.QueueDepth, v.CertDaysLeft = &q, &d
				if h.StoreEpoch != (sdk.Epoch{}) {
					v.StoreEpoch, v.StoreOrigin = fmt.Sprintf("%x", h.StoreEpoch[:]), h.StoreOrigin
					if !h.StoreSince.IsZero() {
						since := h.StoreSince
						v.StoreSince = &since
					}
				}
			}
		}
		if t.LastFix != nil {
			age := now.Sub(t.LastFix.Fix.Time).Seconds()
			v.FixAgeS = &age
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
}

// timeRange reads from and to (RFC 3339); default the last 24 hours.
func (s *Service) timeRange(r *http.Request) (time.Time, time.Time, error) {
	now := s.cfg.Clock()
	from, to := now.Add(-24*time.Hour), now.Add(time.Second)
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &from}, {"to", &to}} {
		if v := r.URL.Query().Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return from, to, badInput{fmt.Sprintf("%s: want an RFC 3339 time like 2026-03-02T08:00:00Z, got %q", p.name, v)}
			}
			*p.t = t
		}
	}
	if err := storage.CheckRange(from, to); err != nil {
		return from, to, err
	}
	return from, to, nil
}

func (s *Service) track(w http.ResponseWriter, r *http.Request) {
	from, to, err := s.timeRange(r)
	if err != nil {
		storeErr(w, err)
		return
	}
	truck := r.PathValue("truck")
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "geojson"
	}
	if format != "geojson" && format != "gpx" && format != "csv" {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("format %q: want geojson, gpx or csv", format))
		return
	}
	fixes, err := s.cfg.Store.Track(r.Context(), truck, from, to)
	if err != nil {
		storeErr(w, err)
		return
	}
	name := fmt.Sprintf("%s-%s", truck, from.UTC().Format("20060102T150405Z"))
	switch format {
	case "geojson":
		w.Header().Set("Content-Type", "application/geo+json")
		writeGeoJSON(w, truck, fixes)
	case "gpx":
		w.Header().Set("Content-Type", "application/gpx+xml")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.gpx"`)
		writeGPX(w, truck, fixes)
	case "csv":
		w.Header().Set("Content-Type", "text/csv")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
		writeCSV(w, fixes)
	}
}

// proofView is a delivery event with what was verified.
type proofView struct {
	Truck    string         `json:"truck"`
	Order    string         `json:"order"`
	Revision uint32         `json:"revision"`
	Kind     sdk.EventKind  `json:"kind"`
	Time     time.Time      `json:"time"`
	Reason   string         `json:"reason,omitempty"`
	Via      sdk.Via        `json:"via"`
	Fix      *sdk.Fix       `json:"fix,omitempty"`
	Verified proofVerified  `json:"verified"`
	Event    dispatch.Event `json:"event"`
}

type proofVerified struct {
	// Signature: the event was verified against the truck's certificate from the fleet CA before it was
	// stored (the office stores nothing else), with the truck named in the topic as signer.
	Signature bool `json:"signature"`
	// OrderHash: the event's order hash is that of the revision the office holds (false: another revision,
	// or the order is unknown).
	OrderHash bool `json:"order_hash"`
	// DistanceM: metres from the event's fix to the order's destination; absent without a fix.
	DistanceM *float64 `json:"distance_m,omitempty"`
	// WithinRadius: the fix was inside the order's arrival radius.
	WithinRadius *bool `json:"within_radius,omitempty"`
	// OffSite is what the truck itself said.
	OffSite bool `json:"off_site"`
}

func (s *Service) proofs(w http.ResponseWriter, r *http.Request) {
	from, to, err := s.timeRange(r)
	if err != nil {
		storeErr(w, err)
		return
	}
	var trucks []string
	if t := r.URL.Query().Get("truck"); t != "" {
		trucks = []string{t}
	} else {
		ts, err := s.cfg.Store.Trucks(r.Context())
		if err != nil {
			storeErr(w, err)
			return
		}
		for _, t := range ts {
			trucks = append(trucks, t.Name)
		}
	}
	out := []proofView{}
	for _, truck := range trucks {
		evs, err := s.cfg.Store.Events(r.Context(), truck, from, to)
		if err != nil {
			storeErr(w, err)
			return
		}
		for _, ev := range evs {
			k := ev.Event.Kind
			if k != sdk.EventDelivered && k != sdk.EventFailed {
				continue
			}
			p := proofView{Truck: truck, Order: ev.Event.OrderID, Revision: ev.Event.Revision, Kind: k, Time: ev.Event.Time,
				Reason: ev.Event.Reason, Via: ev.Event.Via, Fix: ev.Event.Fix, Event: ev,
				Verified: proofVerified{Signature: true, OffSite: ev.Event.OffSite}}
			if e, err := s.cfg.Store.Order(r.Context(), truck, ev.Event.OrderID); err == nil {
				p.Verified.OrderHash = e.Order.Revision == ev.Event.Revision && e.Hash == ev.Event.OrderHash
				if !p.Verified.OrderHash && ev.Event.Revision < e.Order.Revision {
					// An older revision: its hash cannot be recomputed from the current one; say so.
					p.Verified.OrderHash = false
				}
				if f := ev.Event.Fix; f != nil {
					d := distanceM(f.Lat, f.Lon, e.Order.Lat, e.Order.Lon)
					in := d <= float64(e.Order.RadiusM)
					p.Verified.DistanceM, p.Verified.WithinRadius = &d, &in
				}
			}
			out = append(out, p)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	writeJSON(w, http.StatusOK, out)
}

// distanceM is the great-circle distance in metres (haversine, mean Earth radius).
func distanceM(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371008.8
	rad := math.Pi / 180
	dLat, dLon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * r * math.Asin(math.Min(1, math.Sqrt(a)))
}
