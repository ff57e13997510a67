package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/truck"
	"github.com/waybill-iot/waybill/store"
)

// The odometer lives in the store's keyed state (bucket "odometer", key "state"): one small JSON value,
// written in the same fsync'd transaction as a batch of fixes whenever one is committed, so most saves cost
// no extra flash write. A store that is recreated or salvaged without that page starts from zero and says
// so in the log; set it again from the vehicle's odometer.
const (
	odometerBucket = "odometer"
	odometerKey    = "state"
)

// odometerState is what is persisted.
type odometerState struct {
	Metres float64 `json:"m"`
	// SetKM is the last odometer.set_km applied from the configuration, so a restart does not apply it again.
	SetKM *float64 `json:"set_km,omitempty"`
	// SetAt and SetVia say when and how the reading was last set by a person ("config", "command").
	SetAt  time.Time `json:"set_at,omitzero"`
	SetVia string    `json:"set_via,omitempty"`
}

func loadOdometer(st *store.Store) (odometerState, error) {
	var s odometerState
	raw, err := st.Get(odometerBucket, []byte(odometerKey))
	if errors.Is(err, store.ErrNotFound) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("odometer: %w", err)
	}
	if err := json.Unmarshal(raw, &s); err != nil || s.Metres < 0 || math.IsNaN(s.Metres) || math.IsInf(s.Metres, 0) {
		return odometerState{}, fmt.Errorf("odometer: unreadable saved state %q: set it again with `waybill-agent odometer set`", raw)
	}
	return s, nil
}

func putOdometer(tx *store.Tx, s odometerState) error {
	raw, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return tx.Put(odometerBucket, []byte(odometerKey), raw)
}

// mileage is the agent's odometer and trip detector, fed every fix by runFixes (one goroutine); Metres may be
// read from any goroutine.
type mileage struct {
	cfg    OdometerConfig
	log    *slog.Logger
	odo    *gps.Odometer
	trips  *tripDetector
	state  odometerState // as last saved, apart from Metres
	saved  float64       // the reading last written
	metres atomic.Uint64 // the reading, rounded down, for status and metrics
}

// openMileage reads the saved odometer and applies odometer.set_km if it is new.
func openMileage(ctx context.Context, st *store.Store, cfg OdometerConfig, now time.Time, log *slog.Logger) (*mileage, error) {
	s, err := loadOdometer(st)
	if err != nil {
		log.Error("odometer starts from zero", "err", err)
		s = odometerState{}
	}
	if cfg.SetKM != nil && (s.SetKM == nil || *s.SetKM != *cfg.SetKM) {
		log.Info("odometer set from the configuration", "from_km", s.Metres/1000, "to_km", *cfg.SetKM)
		s.Metres, s.SetAt, s.SetVia = *cfg.SetKM*1000, now.UTC(), "config"
		v := *cfg.SetKM
		s.SetKM = &v
		if err := st.Update(ctx, func(tx *store.Tx) error { return putOdometer(tx, s) }); err != nil {
			return nil, fmt.Errorf("odometer.set_km: %w", err)
		}
	}
	m := &mileage{cfg: cfg, log: log, odo: gps.NewOdometer(gps.OdometerConfig{}, s.Metres), state: s, saved: s.Metres,
		trips: newTripDetector(cfg)}
	m.metres.Store(uint64(s.Metres))
	return m, nil
}

// Metres is the odometer reading in whole metres.
func (m *mileage) Metres() uint64 { return m.metres.Load() }

// next takes a fix and returns the movement events it completes.
func (m *mileage) next(f gps.Fix) []sdk.Event {
	m.odo.Next(f)
	m.metres.Store(uint64(m.odo.Metres()))
	towed := m.trips.towed
	evs := m.trips.next(f, m.odo.Metres())
	m.logTowed(towed)
	return evs
}

// followIgnition makes trips follow the ignition input (ignite) instead of movement. Call it before the
// first fix.
func (m *mileage) followIgnition() { m.trips.followIgnition() }

// ignite takes a debounced change of the ignition input at time at and returns the movement events it
// completes.
func (m *mileage) ignite(on bool, at time.Time) []sdk.Event {
	towed := m.trips.towed
	evs := m.trips.ignite(on, at, m.odo.Metres())
	m.logTowed(towed)
	return evs
}

// logTowed says when movement with the ignition off begins and ends: it is no trip, so the log is where
// a towed truck (or an ignition input wired wrong) shows.
func (m *mileage) logTowed(was bool) {
	d := m.trips
	switch {
	case d.towed && !was:
		m.log.Warn("moving with the ignition off: not a trip (towed, or check the [ignition] line and active_high)",
			"odometer_m", uint64(m.odo.Metres()))
	case !d.towed && was:
		m.log.Info("movement with the ignition off ended", "distance_m", uint64(max(0, m.odo.Metres()-d.towOdo)),
			"ignition_on", d.ignOn)
	}
}

// unsaved is the distance not yet written.
func (m *mileage) unsaved() float64 { return m.odo.Metres() - m.saved }

// mustSave says whether the reading must be written now rather than with the next batch of fixes: the
// unsaved distance reached SaveDistance, or the truck stands (so a power cut at ignition off loses nothing).
func (m *mileage) mustSave() bool {
	u := m.unsaved()
	return u >= m.cfg.SaveDistance || u > 0 && m.trips.standing()
}

// commit appends entries (fixes, movement events) and writes the reading in one transaction: one fsync,
// and no flash write of its own for the odometer while fixes are being stored.
func (m *mileage) commit(ctx context.Context, st *store.Store, entries []store.Entry) error {
	s := m.state
	s.Metres = m.odo.Metres()
	err := st.Update(ctx, func(tx *store.Tx) error {
		if len(entries) > 0 {
			if _, err := tx.Append(entries...); err != nil {
				return err
			}
		}
		return putOdometer(tx, s)
	})
	if err == nil {
		m.saved = s.Metres
	}
	return err
}

// encodeTripEvent stores a movement event in the normal lane: it is not a proof of delivery, it can be
// recomputed from the fixes, and when the disk is full it must yield to what can not (orders and delivery
// events in the critical lane). Like a fix it may then be thinned, and the drop is counted.
func encodeTripEvent(e sdk.Event) (store.Entry, error) {
	entry, err := truck.EncodeEvent(e)
	entry.Lane = store.Normal
	return entry, err
}

// ParseDistance reads a distance with its unit: "123456.7km", "76712.4 mi", "500m". A bare number is
// refused: kilometres and miles differ by 60 %, and a guess would corrupt the mileage.
func ParseDistance(s string) (metres float64, err error) {
	v := strings.ToLower(strings.TrimSpace(s))
	units := []struct {
		suffix string
		metres float64
	}{{"km", 1000}, {"mi", 1609.344}, {"m", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(v, u.suffix); ok {
			x, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || math.IsNaN(x) || x < 0 || x*u.metres > maxOdometerKM*1000 {
				return 0, fmt.Errorf("odometer reading %q: want a number from 0 to %d km with its unit, e.g. 123456.7km", s, maxOdometerKM)
			}
			return x * u.metres, nil
		}
	}
	return 0, fmt.Errorf("odometer reading %q has no unit: write it as the vehicle shows it, e.g. 123456.7km or 76712.4mi (km, mi, m)", s)
}

// SetOdometer sets the odometer of a stopped agent to metres (`waybill-agent odometer set`), in the data
// directory's store. While the agent runs it holds the store, and this fails at once with a message
// saying to stop it first.
func SetOdometer(ctx context.Context, cfg Config, metres float64, now time.Time) (previous float64, err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return 0, fmt.Errorf("data_dir: %w", err)
	}
	st, err := store.Open(filepath.Join(cfg.DataDir, "queue.db"), store.Options{LockTimeout: 500 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if errors.Is(err, store.ErrLocked) {
		return 0, fmt.Errorf("the agent is running and holds %s: stop it first (systemctl stop waybill-agent), "+
			"set the odometer, start it again", cfg.DataDir)
	}
	if err != nil {
		return 0, err
	}
	defer st.Close()
	s, err := loadOdometer(st)
	if err != nil {
		s = odometerState{} // unreadable: the new reading replaces it
	}
	previous = s.Metres
	s.Metres, s.SetAt, s.SetVia = metres, now.UTC(), "command"
	return previous, st.Update(ctx, func(tx *store.Tx) error { return putOdometer(tx, s) })
}

// ReadOdometer returns the saved odometer of a stopped agent (`waybill-agent odometer show`).
func ReadOdometer(cfg Config) (metres float64, setAt time.Time, setVia string, err error) {
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "queue.db")); errors.Is(err, os.ErrNotExist) {
		return 0, time.Time{}, "", nil // the agent never ran here: nothing driven, nothing set
	}
	st, err := store.Open(filepath.Join(cfg.DataDir, "queue.db"), store.Options{LockTimeout: 500 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if errors.Is(err, store.ErrLocked) {
		return 0, time.Time{}, "", fmt.Errorf("the agent is running and holds %s: its status (/healthz, odometer_m) "+
			"shows the live reading", cfg.DataDir)
	}
	if err != nil {
		return 0, time.Time{}, "", err
	}
	defer st.Close()
	s, err := loadOdometer(st)
	return s.Metres, s.SetAt, s.SetVia, err
}
