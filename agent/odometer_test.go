package agent

import (
	"context"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/store"
)

func openTestStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "queue.db"), store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func testOdoConfig() OdometerConfig {
	c := OdometerConfig{StopAfter: 30 * time.Second, TripEndAfter: 40 * time.Second}
	c.defaults()
	return c
}

// feed runs fixes through the mileage as runFixes does: fixes batched 30 at a time with the reading, a
// save of its own when SaveDistance is reached or the truck stands, and (clean) the final flush of a clean
// stop. It returns the movement events.
func feed(t *testing.T, m *mileage, st *store.Store, fixes []gps.Fix, clean bool) []sdk.Event {
	t.Helper()
	ctx := context.Background()
	var pending []store.Entry
	var events []sdk.Event
	for _, f := range fixes {
		for _, ev := range m.next(f) {
			e, err := encodeTripEvent(ev)
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, ev)
			pending = append(pending, e)
		}
		if m.mustSave() || len(pending) >= 30 {
			if err := m.commit(ctx, st, pending); err != nil {
				t.Fatal(err)
			}
			pending = pending[:0]
		}
		if m.unsaved() >= m.cfg.SaveDistance+70 {
			t.Fatalf("%.0f m unsaved, bound %.0f m", m.unsaved(), m.cfg.SaveDistance)
		}
	}
	if clean {
		if err := m.commit(ctx, st, pending); err != nil {
			t.Fatal(err)
		}
	}
	return events
}

// TestMileageRestartAndPowerCut: a clean stop keeps the reading exactly; a power cut (the store closed
// without the final save, as after kill -9) loses less than SaveDistance plus one second of driving.
func TestMileageRestartAndPowerCut(t *testing.T) {
	dir := t.TempDir()
	cfg := testOdoConfig()
	ctx := context.Background()
	fixes, _ := sdktest.SimDrive(t, 3, 2, 0)
	half := len(fixes) / 2

	st := openTestStore(t, dir)
	m, err := openMileage(ctx, st, cfg, time.Now(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	feed(t, m, st, fixes[:half], true)
	clean := m.odo.Metres()
	st.Close()

	st = openTestStore(t, dir)
	m, err = openMileage(ctx, st, cfg, time.Now(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.odo.Metres(); got != clean {
		t.Fatalf("after a restart the odometer reads %.1f m, before it %.1f m", got, clean)
	}
	// The power goes while the truck drives: cut at the last fix above 5 m/s, a street before the end.
	cut := len(fixes) - 1
	for cut > half && !(fixes[cut].Speed > 5 && fixes[cut-1].Speed > 5) {
		cut--
	}
	cut -= 20
	feed(t, m, st, fixes[half:cut], false)
	live := m.odo.Metres()
	st.Close() // power cut: no final save

	st = openTestStore(t, dir)
	defer st.Close()
	m, err = openMileage(ctx, st, cfg, time.Now(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	lost := live - m.odo.Metres()
	t.Logf("odometer %.0f m at the cut; the power cut lost %.0f m (bound %.0f m + 1 s of driving)", live, lost, cfg.SaveDistance)
	if lost < 0 || lost > cfg.SaveDistance+70 {
		t.Fatalf("the power cut lost %.1f m, bound %.0f m", lost, cfg.SaveDistance)
	}
	if lost == 0 {
		t.Fatalf("the power cut lost nothing: the test cut where the reading had just been saved")
	}
}

// TestSetKMOnce: odometer.set_km applies once; a restart with the same value keeps the driven distance; a
// changed value applies again; `waybill-agent odometer set` refuses while the agent holds the store and
// works when it is stopped, and the unchanged set_km does not undo it.
func TestSetKMOnce(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	cfg := testOdoConfig()
	km := 123456.7
	cfg.SetKM = &km
	fixes, _ := sdktest.SimDrive(t, 4, 1, 0)

	st := openTestStore(t, dir)
	m, err := openMileage(ctx, st, cfg, time.Now(), log)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Metres(); got != 123456700 {
		t.Fatalf("set_km 123456.7 reads %d m", got)
	}
	feed(t, m, st, fixes, true)
	driven := m.odo.Metres() - 123456700
	if driven < 1000 {
		t.Fatalf("drove only %.0f m", driven)
	}

	agentCfg := Config{DataDir: dir}
	if _, err := SetOdometer(ctx, agentCfg, 5000e3, time.Now()); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("odometer set while the agent runs: %v", err)
	}
	st.Close()

	st = openTestStore(t, dir)
	m, _ = openMileage(ctx, st, cfg, time.Now(), log)
	if got := m.odo.Metres(); math.Abs(got-(123456700+driven)) > 1e-6 {
		t.Fatalf("after a restart with the same set_km: %.1f m, want %.1f (applied again?)", got, 123456700+driven)
	}
	st.Close()

	km2 := 200000.0
	cfg.SetKM = &km2
	st = openTestStore(t, dir)
	m, _ = openMileage(ctx, st, cfg, time.Now(), log)
	if got := m.Metres(); got != 200000000 {
		t.Fatalf("a changed set_km did not apply: %d m", got)
	}
	st.Close()

	prev, err := SetOdometer(ctx, agentCfg, 300000e3, time.Now())
	if err != nil || prev != 200000000 {
		t.Fatalf("odometer set on a stopped agent: previous %.0f, %v", prev, err)
	}
	st = openTestStore(t, dir)
	defer st.Close()
	m, _ = openMileage(ctx, st, cfg, time.Now(), log)
	if got := m.Metres(); got != 300000000 {
		t.Fatalf("after odometer set and a restart with the same set_km: %d m, want 300000000", got)
	}
}

func TestParseDistance(t *testing.T) {
	for in, want := range map[string]float64{"123456.7km": 123456700, "100 mi": 160934.4, "500m": 500, "0km": 0, " 12KM ": 12000} {
		if got, err := ParseDistance(in); err != nil || math.Abs(got-want) > 1e-6 {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{"123456.7": "no unit", "-5km": "from 0", "abc km": "with its unit", "": "no unit",
		"1e12km": "from 0", "NaNkm": "from 0"} {
		if _, err := ParseDistance(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error saying %q", in, err, want)
		}
	}
}
