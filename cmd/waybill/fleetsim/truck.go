package fleetsim

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/gps/gpssim"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/gpsfix"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/sdk/truck"
	"github.com/waybill-iot/waybill/store"
)

// The agent's default commit policy (agent.StoreConfig): reported fixes wait in memory until this many
// are pending or the oldest has waited this long, then share one commit.
const (
	fixBatch = 30
	fixDelay = 30 * time.Second
)

// simTruck is one simulated truck: the real client, its own store and certificate, a generated route.
type simTruck struct {
	name   string
	st     *store.Store
	client *truck.Client
	route  *gpssim.Route
	offset time.Duration // where on its loop the truck is at start
	p      *part
	cfg    *Config

	started   time.Time
	firstConn atomic.Int64 // time to the first connection, ns; 0 before
	lastConn  atomic.Int64 // when it last connected, Unix ns
	connected atomic.Bool
}

// newSimTruck opens a fresh store for the fleet's i-th truck and prepares its client for brokerURL.
func newSimTruck(p *part, i int, brokerURL string) (*simTruck, error) {
	cfg := &p.cfg
	name := truckName(cfg.NamePrefix, i)
	dir := filepath.Join(cfg.Dir, "trucks", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fleetsim: %w", err)
	}
	st, err := store.Open(filepath.Join(dir, "queue.db"), store.Options{})
	if err != nil {
		return nil, fmt.Errorf("fleetsim: %s: %w", name, err)
	}
	client, err := truck.NewClient(truck.ClientConfig{
		Transport: transport.Config{Brokers: []string{brokerURL}, CertFile: p.pki.CertPath(name),
			KeyFile: p.pki.KeyPath(name), CAFile: p.pki.CAPath(), ReconnectWindow: cfg.ReconnectWindow},
		Topics: sdk.Topics{Prefix: cfg.Prefix},
		Store:  st,
		Logger: p.log.With("truck", name),
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	route := gpssim.NewRoute(gpssim.RouteConfig{Seed: cfg.Seed*1_000_003 + uint64(i)})
	offset := time.Duration(pseudoRand(cfg.Seed+uint64(i)) % uint64(route.Loop()))
	return &simTruck{name: name, st: st, client: client, route: route, offset: offset, p: p, cfg: cfg}, nil
}

// run starts the client (until ctx ends), watches its connection, and drives until drive ends; it
// returns when the drive is over and its fixes are committed. wg owns the client and the watcher.
func (t *simTruck) run(ctx, drive context.Context, wg *sync.WaitGroup) {
	t.started = time.Now()
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := t.client.Run(ctx); err != nil {
			t.p.log.Error("fleetsim: truck client stopped", "truck", t.name, "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		t.watch(ctx)
	}()
	t.drive(ctx, drive)
}

func (t *simTruck) watch(ctx context.Context) {
	states := t.client.Conn().States()
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-states:
			if s.Closed {
				return
			}
			t.connected.Store(s.Connected)
			if s.Connected {
				now := time.Now()
				t.lastConn.Store(now.UnixNano())
				t.firstConn.CompareAndSwap(0, int64(max(now.Sub(t.started), 1)))
			}
		}
	}
}

// drive feeds the route's 1 Hz fixes through the reporting filter until drive ends and commits the
// reported ones in batches, and a delivered event at each stop with Config.Confirm. Commits wait until
// ctx (the client's life) ends.
func (t *simTruck) drive(ctx, drive context.Context) {
	filter := gps.NewFilter(gps.FilterConfig{})
	var pending []store.Entry
	var newest, oldest time.Time
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if err := t.append(ctx, pending...); err != nil {
			t.p.log.Error("fleetsim: store fixes", "truck", t.name, "err", err)
		} else {
			t.p.stored(len(pending), commitKey(t.name, newest))
		}
		pending = pending[:0]
	}
	defer flush()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	atStop, stops := false, 0
	for {
		select {
		case <-drive.Done():
			return
		case now := <-tick.C:
			s := t.route.At(now.Sub(t.started) + t.offset)
			if s.Stop && !atStop && t.cfg.Confirm {
				stops++
				t.confirm(ctx, now, s, stops)
			}
			atStop = s.Stop
			if s.Tunnel {
				continue
			}
			f := gps.Fix{Time: now.UTC().Truncate(time.Second), Lat: s.Pos.Lat, Lon: s.Pos.Lon, Alt: math.NaN(),
				Speed: s.Speed, Course: s.Course, Mode: gps.Mode3D, Sats: 9, HDOP: 0.9, PDOP: math.NaN()}
			if ok, _ := filter.Next(f); ok {
				e, err := truck.EncodeFix(gpsfix.From(f))
				if err != nil {
					continue
				}
				if len(pending) == 0 {
					oldest = now
				}
				pending = append(pending, e)
				newest = f.Time
			}
			if len(pending) >= fixBatch || (len(pending) > 0 && now.Sub(oldest) >= fixDelay) {
				flush()
			}
		}
	}
}

// confirm stores a delivered event, as the driver's tap does: at once, in the critical lane.
func (t *simTruck) confirm(ctx context.Context, now time.Time, s gpssim.State, n int) {
	f := sdk.Fix{Time: now.UTC().Truncate(time.Millisecond), Lat: s.Pos.Lat, Lon: s.Pos.Lon, Mode: 3}
	e, err := truck.EncodeEvent(sdk.Event{Kind: sdk.EventDelivered, OrderID: fmt.Sprintf("sim-%s-%d", t.name, n),
		Revision: 1, Time: now.UTC(), Via: sdk.ViaButton, Fix: &f})
	if err != nil {
		t.p.log.Error("fleetsim: encode event", "err", err)
		return
	}
	if err := t.append(ctx, e); err != nil {
		t.p.log.Error("fleetsim: store event", "truck", t.name, "err", err)
		return
	}
	t.p.eventsConfirmed.Add(1)
}

// append commits entries to the truck's store, waiting as long as the store takes: an Append that gave
// up waiting may still commit, and dispatch would receive records the counts do not have (lost < 0).
func (t *simTruck) append(ctx context.Context, entries ...store.Entry) error {
	t0 := time.Now()
	_, err := t.st.Append(ctx, entries...)
	t.p.commitTook(time.Since(t0))
	return err
}

// queued is what the truck's store holds.
func (t *simTruck) queued() uint64 {
	s := t.st.Stats()
	return uint64(s.Critical.Records + s.Normal.Records)
}
