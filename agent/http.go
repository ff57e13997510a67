package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/truck"
)

// handler serves /healthz, /metrics and /sky; Mount adds the driver page and hook. /healthz and /metrics are
// behind the driver page's check (the token when one is set, otherwise a loopback name in Host): they name
// the truck, its broker, its position and its queue.
func (a *Agent) handler() http.Handler {
	guard := func(h http.HandlerFunc) http.Handler { return h }
	if a.driver != nil {
		guard = func(h http.HandlerFunc) http.Handler { return a.driver.Guard(h) }
	}
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", guard(a.serveHealthz))
	mux.Handle("GET /metrics", guard(a.serveMetrics))
	mux.Handle("GET /sky", guard(a.serveSky))
	a.mu.Lock()
	for pattern, h := range a.mounts {
		mux.Handle(pattern, h)
	}
	a.mu.Unlock()
	return mux
}

// Mount adds a handler to the local listener (the driver page and hook at "/"). Call before Run.
func (a *Agent) Mount(pattern string, h http.Handler) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mounts == nil {
		a.mounts = map[string]http.Handler{}
	}
	a.mounts[pattern] = h
}

// Status is the agent's state for /healthz and the driver page's status API.
type Status struct {
	// Healthy: fixes are flowing (one within GPSStale), the link is up and GPS time agrees with the system
	// clock. Problems says what is wrong otherwise, one sentence each (/healthz answers 503).
	Healthy  bool      `json:"healthy"`
	Problems []string  `json:"problems,omitempty"`
	Truck    string    `json:"truck"`
	Version  string    `json:"version"`
	Time     time.Time `json:"time"`
	ClockGPS bool      `json:"clock_from_gps"` // the system clock is implausible or overruled: GPS time in use
	// ClockSkew is GPS time minus the system clock at the last fix, in seconds, when they disagree by more
	// than MaxClockSkew (as sdk.Health.ClockSkew); ClockWarning says what that means and what to do.
	ClockSkew    float64 `json:"clock_skew_s,omitempty"`
	ClockWarning string  `json:"clock_warning,omitempty"`
	GPS          string  `json:"gps"` // "ok (fix 2s ago)" or "no GPS since ..."
	// Fix is the latest fix's quality as the receiver gave it; absent before the first fix.
	Fix       *FixQuality `json:"fix,omitempty"`
	Link      string      `json:"link"` // "connected to ..." or why not
	Connected bool        `json:"connected"`
	// Ignition is the ignition input, debounced: true on, false off; absent without an input (trips follow
	// movement) or before it was first read.
	Ignition *bool `json:"ignition,omitempty"`
	Queue    struct {
		Critical  int64   `json:"critical"`
		Normal    int64   `json:"normal"`
		OldestAge float64 `json:"oldest_age_s"`
		Thinned   uint64  `json:"thinned"`
		Dropped   uint64  `json:"dropped"`
		// InMemory counts the fixes and trip events not yet in the store: waiting for the next commit
		// (store.fix_batch, store.fix_delay) or undecided in the curve filter (gps.filter.max_delay). A
		// power cut loses these, and only these.
		InMemory uint64 `json:"in_memory"`
		// Unreceipted counts records sent and waiting for dispatch's signed receipt (they stay queued).
		Unreceipted int    `json:"unreceipted"`
		Receipted   uint64 `json:"receipted"` // records removed on a receipt since start
		Resent      uint64 `json:"resent"`    // records sent again: no receipt came in time
	} `json:"queue"`
	// Store says how the queue file's epoch began: "created" (first start, or the file was lost),
	// "recreated" (unusable, moved aside), "salvaged" (damaged, readable records carried over).
	Store struct {
		Epoch  sdk.Epoch `json:"epoch"`
		Origin string    `json:"origin"`
		Since  time.Time `json:"since"`
		Detail string    `json:"detail,omitempty"`
	} `json:"store"`
	CertDaysLeft int    `json:"cert_days_left"`
	DiskFree     uint64 `json:"disk_free_bytes"`
	// CRL is the fleet CRL orders are verified with: "loaded": false means none at all (neither
	// identity.crl nor one received from the broker), so an order signed by a revoked dispatch key would
	// be accepted. Received counts the CRLs the broker sent: applied, ignored as not newer, refused.
	CRL struct {
		sdk.CRLInfo
		Received truck.CRLStats `json:"received"`
	} `json:"crl"`
}

// FixQuality is what /healthz says of the latest fix: the installer's first questions (how many
// satellites, how good the geometry, 2D or 3D).
type FixQuality struct {
	Time time.Time `json:"time"`
	Age  float64   `json:"age_s"`
	Mode string    `json:"mode"`           // "2D" or "3D"
	Sats int       `json:"sats,omitempty"` // satellites used; absent when the receiver did not say
	HDOP *float64  `json:"hdop,omitempty"`
	PDOP *float64  `json:"pdop,omitempty"`
}

// GPSStale is how old the latest fix may be before the GPS counts as down in /healthz: receivers send
// at 1 Hz or faster, so ten missed epochs is a receiver that stopped, not a slow one.
const GPSStale = 10 * time.Second

// Status reports the agent's state now.
func (a *Agent) Status() Status {
	now := a.clock.Now()
	var s Status
	s.Truck, s.Version, s.Time, s.ClockGPS = a.client.Name(), a.opts.Version, now, !a.clock.plausible()
	gh := a.source.Health()
	s.GPS = gh.Status(a.opts.now(), GPSStale)
	if f := a.latest.Load(); f != nil {
		s.Fix = fixQuality(*f, now)
	}
	if cc := a.clock.check(); cc.Disagree {
		s.ClockSkew = cc.Skew.Seconds()
		s.ClockWarning = cc.warning(gh.Stats.Rollovers, a.rolloverFloor())
	}
	s.Ignition = a.ignitionState()
	st := a.client.Conn().Current()
	s.Connected = st.Connected
	switch {
	case st.Connected:
		s.Link = "connected to " + st.Info.Broker
	case st.Err != nil:
		s.Link = "offline: " + st.Err.Error()
	default:
		s.Link = "connecting"
	}
	s.Queue.InMemory = a.fixes.inMemory() // before the store: records move from memory to it
	qs := a.store.Stats()
	s.Queue.Critical, s.Queue.Normal = qs.Critical.Records, qs.Normal.Records
	s.Queue.OldestAge = max(qs.Critical.OldestAge(now), qs.Normal.OldestAge(now)).Seconds()
	s.Queue.Thinned, s.Queue.Dropped = qs.Thinned, qs.Dropped
	us := a.client.Uploader().Stats()
	s.Queue.Unreceipted, s.Queue.Receipted, s.Queue.Resent = us.Unreceipted, us.Receipted, us.Resent
	o := a.store.Origin()
	s.Store.Epoch, s.Store.Origin, s.Store.Since, s.Store.Detail = sdk.EpochOf(a.store.Epoch()), o.Kind.String(), o.At, o.Detail
	s.CertDaysLeft = a.certDaysLeft(now)
	s.DiskFree = diskFree(a.cfg.DataDir)
	s.CRL.CRLInfo, s.CRL.Received = a.client.CRLInfo(), a.client.CRLStats()
	if !strings.HasPrefix(s.GPS, "ok") {
		s.Problems = append(s.Problems, "gps: "+s.GPS)
	}
	if !s.Connected {
		s.Problems = append(s.Problems, "link: "+s.Link)
	}
	if s.ClockWarning != "" {
		s.Problems = append(s.Problems, "clock: "+s.ClockWarning)
	}
	s.Healthy = len(s.Problems) == 0
	return s
}

func fixQuality(f gps.Fix, now time.Time) *FixQuality {
	q := &FixQuality{Time: f.Time, Age: now.Sub(f.Time).Seconds(), Mode: fmt.Sprintf("%dD", f.Mode), Sats: f.Sats}
	if f.HasHDOP() {
		q.HDOP = &f.HDOP
	}
	if f.HasPDOP() {
		q.PDOP = &f.PDOP
	}
	return q
}

// rolloverFloor is the GPS source's week-rollover floor.
func (a *Agent) rolloverFloor() time.Time {
	if a.cfg.GPS.RolloverFloor.IsZero() {
		return gps.DefaultRolloverFloor
	}
	return a.cfg.GPS.RolloverFloor
}

// health is the summary in the retained status message.
func (a *Agent) health() sdk.Health {
	now := a.clock.Now()
	h := sdk.Health{Version: a.opts.Version, CertDaysLeft: a.certDaysLeft(now), DiskFree: diskFree(a.cfg.DataDir), Link: "mqtt"}
	if f := a.latest.Load(); f != nil {
		h.FixAge, h.Sats = now.Sub(f.Time), f.Sats
	} else {
		h.FixAge = -1
	}
	qs := a.store.Stats()
	h.QueueDepth = int(qs.Critical.Records + qs.Normal.Records)
	h.OldestAge = max(qs.Critical.OldestAge(now), qs.Normal.OldestAge(now))
	h.Unreceipted = a.client.Uploader().Stats().Unreceipted
	o := a.store.Origin()
	h.StoreEpoch, h.StoreOrigin, h.StoreSince = sdk.EpochOf(a.store.Epoch()), o.Kind.String(), o.At
	crl := a.client.CRLInfo()
	h.CRL = &crl
	if cc := a.clock.check(); cc.Disagree {
		h.ClockSkew = cc.Skew
	}
	h.Odometer = a.mileage.Metres()
	h.Ignition = a.ignitionState()
	return h
}

// ignitionState is the debounced ignition for the status: nil without an input or before it was read.
func (a *Agent) ignitionState() *bool {
	if a.ignition == nil {
		return nil
	}
	on, known := a.ignition.State()
	if !known {
		return nil
	}
	return &on
}

func (a *Agent) certDaysLeft(now time.Time) int {
	cert, err := pki.LoadCertificate(a.cfg.Identity.Cert)
	if err != nil {
		return 0
	}
	return int(cert.NotAfter.Sub(now).Hours() / 24)
}

func diskFree(dir string) uint64 {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0
	}
	return fs.Bavail * uint64(fs.Bsize)
}

// serveHealthz answers 200 only when the agent does its whole job: a fix within GPSStale, the link to a
// broker up, and GPS time agreeing with the system clock (Status.Healthy). Otherwise it answers 503 with
// one sentence per problem in "problems": a monitor alerts on the code, a person reads the reasons. The
// body is the whole Status either way (queue, store, certificate, CRL, the fix's satellites, HDOP and
// mode), so a 503 is still the full picture; an agent that does not answer at all is down. A truck in a
// dead zone or a garage is 503 although it keeps queueing on disk: that is worth a look, not a restart.
func (a *Agent) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	s := a.Status()
	w.Header().Set("Content-Type", "application/json")
	if !s.Healthy {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(s)
}

// sky returns the receiver's latest sky view, when the source has one (serial, replay and gpsd all do).
func (a *Agent) sky() (gps.Sky, bool) {
	if s, ok := a.source.(interface{ Sky() gps.Sky }); ok {
		return s.Sky(), true
	}
	return gps.Sky{}, false
}

// serveSky answers the receiver's latest sky view as JSON (gps.Sky: satellites in view with elevation,
// azimuth, SNR and use in the fix; fix mode; HDOP, PDOP, VDOP), for `waybill gps sky --agent`: the agent
// holds the serial port, so an installer reads the view from it instead of opening the port. "updates" is
// 0 until the receiver sent GSV or GSA.
func (a *Agent) serveSky(w http.ResponseWriter, _ *http.Request) {
	s, ok := a.sky()
	if !ok {
		http.Error(w, "this GPS source gives no sky view", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s)
}
