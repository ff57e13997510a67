package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/office"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/embedded"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// demoOffice is the demo's dispatch: the office process of `waybill dispatch run` (sdk/dispatch/office on the
// embedded engine in DIR/dispatch), run inside the demo's process, and the demo's client for its API.
type demoOffice struct {
	base      string // http://127.0.0.1:PORT: the console, the API and the tracking pages
	token     string // the API's bearer token, also in tokenFile
	tokenFile string
	dataDir   string // the embedded engine's files: archive.db, outbox.db, tracking.db
	logPath   string // the office's slog output
	http      *http.Client

	mu       sync.Mutex // guards tracking
	tracking string     // one customer tracking link and whose it is, once an order was created
}

// startOffice starts the office on a free loopback port with a fresh random token. stop ends it (the HTTP
// server, the order sender, the MQTT client: office.Run's order) and closes its files; call it once.
func (d *demo) startOffice(ctx context.Context, p *pki.PKI, broker string, trucks []*demoTruck) (o *demoOffice, stop func(), err error) {
	o = &demoOffice{dataDir: filepath.Join(d.dir, "dispatch"), tokenFile: filepath.Join(d.dir, "dispatch.token"),
		logPath: filepath.Join(d.dir, "dispatch.log"), http: &http.Client{Timeout: 15 * time.Second}}
	var undo []func() // on an error, what was opened is closed again, newest first
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return nil, nil, err
	}
	// As `waybill dispatch run` does: the office holds the data directory's sender lock, so a `waybill order
	// --data DIR/dispatch` waits instead of connecting as the same dispatch identity.
	lock, got, holder, err := tryLock(o.dataDir, "waybill demo")
	if err != nil {
		return nil, nil, err
	}
	if !got {
		return nil, nil, fmt.Errorf("another waybill process%s holds %s", holder, filepath.Join(o.dataDir, senderLock))
	}
	undo = append(undo, lock.release)
	// 26 base32 characters, 130 random bits. The file is new (the demo directory was created afresh), so
	// 0600 holds: only this user can read the token.
	o.token = rand.Text()
	if err := os.WriteFile(o.tokenFile, []byte(o.token+"\n"), 0o600); err != nil {
		return nil, nil, err
	}
	logFile, err := os.Create(o.logPath)
	if err != nil {
		return nil, nil, err
	}
	undo = append(undo, func() { logFile.Close() })
	log := slog.New(slog.NewTextHandler(logFile, nil))

	cert, err := pki.LoadCertificate(p.CertPath("office"))
	if err != nil {
		return nil, nil, err
	}
	key, err := pki.LoadPrivateKey(p.KeyPath("office"))
	if err != nil {
		return nil, nil, err
	}
	var certs []*x509.Certificate // the trucks' certificates, so their first messages verify at once
	for _, t := range trucks {
		c, err := pki.LoadCertificate(p.CertPath(t.name))
		if err != nil {
			return nil, nil, err
		}
		certs = append(certs, c)
	}
	st, err := embedded.Open(embedded.Options{Dir: o.dataDir, Outbox: dispatch.OutboxConfig{Certificate: cert, Key: key,
		Logger: log,
		// A real office waits 15 s after a truck comes online and 30 s to 30 min between sends of an
		// unconfirmed order; a one-minute demo with a 30-second link cut needs seconds.
		OnlineGrace: 2 * time.Second, BackoffMin: 5 * time.Second, BackoffMax: 20 * time.Second}})
	if err != nil {
		return nil, nil, err
	}
	undo = append(undo, func() { st.Close() })
	svc, err := office.New(office.Config{Store: st, Token: o.token, Listen: "127.0.0.1:0", Logger: log,
		Dispatch: dispatch.Config{
			Transport: transport.Config{Brokers: []string{"mqtts://" + broker}, CertFile: p.CertPath("office"),
				KeyFile: p.KeyPath("office"), CAFile: p.CAPath(), Logger: log},
			CA: []*x509.Certificate{p.CACert()}, Certificates: certs, Logger: log,
			// A real office gathers a truck's records for 30 s into one receipt, to spare the cellular link
			// (the truck keeps them meanwhile). The demo wants to show the trucks' stores emptying as the
			// office commits what they sent, so it receipts after half a second.
			ReceiptDelay: 500 * time.Millisecond}})
	if err != nil {
		return nil, nil, err
	}
	o.base = "http://" + svc.Addr()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := svc.Run(runCtx); err != nil {
			d.logf("office: %v", err)
			d.note("the office stopped with an error: %v", err)
		}
	}()
	// The files close after the service that commits to them has stopped.
	stop = func() {
		cancel()
		<-done
		st.Close()
		logFile.Close()
		lock.release()
	}
	return o, stop, nil
}

// api does one request to the office's JSON API with the bearer token, as a user's curl would: in (when
// not nil) is sent as JSON and the answer is decoded into out (when not nil). Another status than want is
// an error carrying the office's message.
func (o *demoOffice) api(ctx context.Context, method, path string, in, out any, want int) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, o.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+o.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := o.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("office: %s %s: %s: %s", method, path, resp.Status, e.Error)
		}
		return fmt.Errorf("office: %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("office: %s %s: %w", method, path, err)
	}
	return nil
}

// demoRange is a time range query covering the whole demo (the API's default is the last 24 hours up to
// now, and a truck's clock may run a little ahead of this one's).
func (d *demo) demoRange() string {
	v := url.Values{"from": {d.t0.Add(-time.Hour).UTC().Format(time.RFC3339)},
		"to": {time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}}
	return v.Encode()
}

// officeOrder is an order as the API shows it.
type officeOrder struct {
	dispatch.Entry
	StateText string `json:"state_text"`
	Tracking  *struct {
		Token string `json:"token"`
		URL   string `json:"url"` // relative to the office's address: the demo sets no public URL
	} `json:"tracking,omitempty"`
}

// orderRequest is POST /api/orders' body.
type demoOrderRequest struct {
	Truck     string    `json:"truck"`
	ID        string    `json:"id"`
	Recipient string    `json:"recipient"`
	Address   string    `json:"address"`
	Lat       float64   `json:"lat"`
	Lon       float64   `json:"lon"`
	RadiusM   int       `json:"radius_m"`
	Notes     string    `json:"notes,omitempty"`
	Expires   time.Time `json:"expires"`
}

// officeProof is one entry of GET /api/proofs: a delivered or failed event and what the office verified.
type officeProof struct {
	Truck    string        `json:"truck"`
	Order    string        `json:"order"`
	Revision uint32        `json:"revision"`
	Kind     sdk.EventKind `json:"kind"`
	Reason   string        `json:"reason"`
	Via      sdk.Via       `json:"via"`
	Fix      *sdk.Fix      `json:"fix"`
	Verified struct {
		Signature    bool     `json:"signature"`
		OrderHash    bool     `json:"order_hash"`
		DistanceM    *float64 `json:"distance_m"`
		WithinRadius *bool    `json:"within_radius"`
		OffSite      bool     `json:"off_site"`
	} `json:"verified"`
	Event dispatch.Event `json:"event"`
}

// checkProof says in words what is wrong with a proof of delivery as the office reports it, for an order
// with the given arrival radius; "" when it checks out: a delivered event, its signature verified, its
// order hash that of the revision the office holds, and a fix inside the radius.
func checkProof(p officeProof, radiusM int) string {
	var why []string
	if p.Kind != sdk.EventDelivered {
		why = append(why, fmt.Sprintf("the driver reported %s, not delivered (%q)", p.Kind, p.Reason))
	}
	if !p.Verified.Signature {
		why = append(why, "the office did not verify its signature")
	}
	if !p.Verified.OrderHash {
		h := p.Event.Event.OrderHash
		why = append(why, fmt.Sprintf("its order hash %x… (revision %d) is not the hash of the revision the office holds", h[:6],
			p.Revision))
	}
	switch {
	case p.Fix == nil:
		why = append(why, "it carries no GPS fix")
	case p.Verified.OffSite:
		why = append(why, fmt.Sprintf("the truck was OFF SITE (fix %.5f,%.5f, outside the %d m radius)", p.Fix.Lat, p.Fix.Lon, radiusM))
	case p.Verified.WithinRadius == nil || p.Verified.DistanceM == nil:
		why = append(why, "the office could not measure its fix against the order's destination")
	case !*p.Verified.WithinRadius:
		why = append(why, fmt.Sprintf("its fix %.5f,%.5f is %.0f m from the destination, OFF SITE (radius %d m)", p.Fix.Lat,
			p.Fix.Lon, *p.Verified.DistanceM, radiusM))
	}
	return strings.Join(why, "; ")
}

// noteProof records the office's proof p of an order with the given radius: verified, or failed with the
// reason logged, noted as a problem, and kept even if a good copy comes later.
func (d *demo) noteProof(p officeProof, radiusM int) {
	why := checkProof(p, radiusM)
	d.mu.Lock()
	if why == "" {
		if _, failed := d.proofFailed[p.Order]; !failed {
			d.proof[p.Order] = true
		}
	} else {
		d.proof[p.Order] = false
		d.proofFailed[p.Order] = why
	}
	d.mu.Unlock()
	if why != "" {
		d.logf("proof of delivery for %s from %s does NOT check out: %s", p.Order, p.Truck, why)
		d.note("proof of delivery for %s from %s does not check out: %s", p.Order, p.Truck, why)
		return
	}
	dist := ""
	if p.Verified.DistanceM != nil {
		dist = fmt.Sprintf(", %.0f m from the destination", *p.Verified.DistanceM)
	}
	d.logf("office: PROOF OF DELIVERY for %s verified: signed by %s, order hash matches, fix %.5f,%.5f on site%s, via %s",
		p.Order, p.Truck, p.Fix.Lat, p.Fix.Lon, dist, p.Via)
}

// watchOffice is the live log's dispatch side: it reads the office's API as the console would (the
// orders, the trucks, every truck's events, the proofs of delivery, the refused messages) every 300 ms
// and says what changed, until ctx ends.
func (d *demo) watchOffice(ctx context.Context, trucks []*demoTruck) {
	o := d.office
	sends := map[string]int{}      // "ID rev N" -> sends seen
	online := map[string]bool{}    // truck -> online
	events := map[sdk.MsgID]bool{} // events already logged
	proofs := map[sdk.MsgID]bool{} // proofs already checked
	radius := map[string]int{}     // order id -> its arrival radius
	var refused float64            // refused messages already said
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var orders []officeOrder
		if o.api(ctx, http.MethodGet, "/api/orders", nil, &orders, http.StatusOK) == nil {
			for _, e := range orders {
				radius[e.Order.ID] = e.Order.RadiusM
				k := fmt.Sprintf("%s rev %d", e.Order.ID, e.Order.Revision)
				if e.Sends > sends[k] {
					sends[k] = e.Sends
					what := k
					if e.Order.Status == sdk.OrderCancelled {
						what = "the cancellation of " + k
					}
					d.logf("office: sent %s to %s (send %d; it sends again until the truck's signed receipt)", what,
						e.Order.Truck, e.Sends)
				}
			}
		}
		var ts []struct {
			Name   string `json:"name"`
			Online bool   `json:"online"`
		}
		if o.api(ctx, http.MethodGet, "/api/trucks", nil, &ts, http.StatusOK) == nil {
			for _, t := range ts {
				if was, ok := online[t.Name]; !ok || was != t.Online {
					online[t.Name] = t.Online
					state := "offline"
					if t.Online {
						state = "online"
					}
					d.logf("office: %s is %s", t.Name, state)
				}
			}
		}
		newProof := false
		for _, t := range trucks {
			var evs []dispatch.Event
			if o.api(ctx, http.MethodGet, "/api/trucks/"+t.name+"/events?"+d.demoRange(), nil, &evs, http.StatusOK) != nil {
				continue
			}
			for _, ev := range evs {
				if events[ev.ID] {
					continue
				}
				events[ev.ID] = true
				e := ev.Event
				switch e.Kind {
				case sdk.EventReceived:
					what := "received"
					if e.Conflict {
						what = "reports a CONFLICT for"
					}
					d.logf("office: %s %s %s rev %d (signed receipt)", t.name, what, e.OrderID, e.Revision)
				case sdk.EventArrived:
					d.logf("office: %s ARRIVED at %s (inside its radius, computed on the truck)", t.name, e.OrderID)
				case sdk.EventDelivered, sdk.EventFailed:
					newProof = true
					d.logf("office: %s reports %s %s via %s", t.name, e.OrderID, strings.ToUpper(e.Kind.String()), e.Via)
				default:
					if e.Kind.IsTrip() {
						d.logf("office: %s: %s (a movement event)", t.name, e.Kind)
					} else {
						d.logf("office: %s: %s %s", t.name, e.Kind, e.OrderID)
					}
				}
			}
		}
		if newProof {
			var ps []officeProof
			if o.api(ctx, http.MethodGet, "/api/proofs?"+d.demoRange(), nil, &ps, http.StatusOK) == nil {
				for _, p := range ps {
					if !proofs[p.Event.ID] {
						proofs[p.Event.ID] = true
						d.noteProof(p, radius[p.Order])
					}
				}
			}
		}
		if n, reasons := o.refused(ctx); n > refused {
			d.logf("office: REFUSED %.0f message(s): %s", n-refused, reasons)
			d.note("the office refused messages: %s", reasons)
			refused = n
		}
	}
}

// refused reads the office's /metrics: how many messages its verifier refused, and the reasons.
func (o *demoOffice) refused(ctx context.Context) (float64, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.base+"/metrics", nil)
	if err != nil {
		return 0, ""
	}
	req.Header.Set("Authorization", "Bearer "+o.token)
	var n float64
	var reasons []string
	for name, v := range scrapeMetrics(o.http, req) {
		if r, ok := strings.CutPrefix(name, "waybill_dispatch_rejected_total{"); ok && v > 0 {
			n += v
			reasons = append(reasons, fmt.Sprintf("%s %.0f", strings.TrimSuffix(r, "}"), v))
		}
	}
	sort.Strings(reasons)
	return n, strings.Join(reasons, ", ")
}

// officeCounts is what the office holds for one truck: its distinct fixes, by (epoch, seq), and its events.
func (d *demo) officeCounts(ctx context.Context, truck string) (fixes, events int, err error) {
	var track struct {
		Features []struct {
			Geometry struct {
				Type string `json:"type"`
			} `json:"geometry"`
			Properties struct {
				Epoch string `json:"epoch"`
				Seq   uint64 `json:"seq"`
			} `json:"properties"`
		} `json:"features"`
	}
	if err := d.office.api(ctx, http.MethodGet, "/api/trucks/"+truck+"/track?format=geojson&"+d.demoRange(), nil, &track,
		http.StatusOK); err != nil {
		return 0, 0, err
	}
	seen := map[string]bool{}
	for _, f := range track.Features {
		if f.Geometry.Type == "Point" { // one per fix; the LineString draws them all
			seen[fmt.Sprintf("%s/%d", f.Properties.Epoch, f.Properties.Seq)] = true
		}
	}
	var evs []json.RawMessage
	if err := d.office.api(ctx, http.MethodGet, "/api/trucks/"+truck+"/events?"+d.demoRange(), nil, &evs,
		http.StatusOK); err != nil {
		return 0, 0, err
	}
	return len(seen), len(evs), nil
}

// printOffice prints the console's address, how to sign in, a customer tracking link and, with pages, the
// driver pages.
func (d *demo) printOffice(title string, trucks []*demoTruck, pages bool) {
	o := d.office
	o.mu.Lock()
	tracking := o.tracking
	o.mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.s.out
	fmt.Fprintln(w, title)
	fmt.Fprintf(w, "  console   %s/   sign in with the token in %s: %s\n", o.base, o.tokenFile, o.token)
	fmt.Fprintf(w, "  API       curl -H \"Authorization: Bearer $(cat %s)\" %s/api/orders\n", o.tokenFile, o.base)
	if tracking != "" {
		fmt.Fprintf(w, "  tracking  %s\n", tracking)
	}
	if pages {
		for _, t := range trucks {
			fmt.Fprintf(w, "  driver    %s  http://%s/\n", t.name, t.httpAddr)
		}
	}
}
