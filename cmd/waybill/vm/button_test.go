package vm

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestButton presses the truck's power button: system_powerdown on QEMU's monitor pulses PL061 line 3
// (acpi=off), which the agent has open as its button on /dev/gpiochip0; the order the driver page shows
// as Next gets an event given via the button, and the LED (PL061 line 4, an output) changes, which QEMU's
// pl061_set_output trace shows on the host.
//
// QEMU's gpio-key drives line 3 high for 100 ms and the PL061 has no pull resistors: the truck's
// configuration says so (button.active_high, button.no_pull), and the 100 ms pulse is a short press, which
// delivers the selected order. (As an active-low button with a pull-up, the idle line read as held and the
// pulse became a long press: a problem, not a delivery.)
//
// Then the two pulse trains the button's documentation promises an answer for (agent/button/doc.go):
//
//   - a driver pressing again and again (four 100 ms pulses 250 ms apart, each longer than the debounce):
//     one delivery, the presses during the acknowledgement (AckHold, 3 s) are ignored, so the next order
//     is not delivered as well;
//   - a held button (presses every 40 ms for 2.8 s re-arm the gpio-key's 100 ms timer: the line stays
//     high about 2.9 s): a long press, which reports a problem on the selected order and delivers nothing.
//
// Contact bounce shorter than the debounce (30 ms) cannot be made from the monitor (a pulse is at least
// 100 ms); agent/button's tests cover it with an injected line.
func TestButton(t *testing.T) {
	f := newFleet(t, fleetOptions{Button: true})
	ids := []string{"b-1", "b-2", "b-3"}
	f.createOrders(ids...)
	b := f.boot("none", true, "pl061_set_output", "pl061_input_change")
	b.waitHealth(90*time.Second, "a connection", func(h health) bool { return h.Connected })
	type view struct {
		State    string `json:"state"`
		Problems int    `json:"problems"`
	}
	views := func() (map[string]view, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out := map[string]view{}
		for _, id := range ids {
			code, raw, err := b.request(ctx, "GET", "/api/orders/"+id, nil)
			if err != nil || code != http.StatusOK {
				return nil, false
			}
			var v view
			if json.Unmarshal(raw, &v) != nil {
				return nil, false
			}
			out[id] = v
		}
		return out, true
	}
	// tally counts the orders delivered and the problems reported.
	tally := func(v map[string]view) (delivered, problems int) {
		for _, o := range v {
			if o.State == "delivered" {
				delivered++
			}
			problems += o.Problems
		}
		return delivered, problems
	}
	var v map[string]view
	waitFor(t, b, 60*time.Second, "the three orders on the truck", func() bool {
		var ok bool
		v, ok = views()
		return ok
	})
	waitFor(t, b, 30*time.Second, "the button and LED open (the LED blinks while an order waits)", func() bool {
		return ledChanges(b.m.QEMULog()) > 0
	})
	before := ledChanges(b.m.QEMULog())
	// The kernel's name, for the log only: bounded on its own, so that a slow guest shell cannot eat the
	// presses' time (it once took a whole shared minute, and the monitor dial that followed failed).
	uctx, ucancel := context.WithTimeout(context.Background(), 15*time.Second)
	uname, _, err := b.m.Exec(uctx, "uname -rm")
	ucancel()
	if err != nil {
		t.Logf("uname in the guest: %v", err)
	}
	uname = strings.TrimSpace(uname)

	// press acts, waits for the agent to record something, lets the acknowledgement (AckHold) end and
	// checks the tally.
	press := func(what string, act func(ctx context.Context) error, wantDelivered, wantProblems int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := act(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		d0, p0 := tally(v)
		waitFor(t, b, 30*time.Second, "an event via the button after "+what, func() bool {
			nv, ok := views()
			if ok {
				v = nv
			}
			d, p := tally(v)
			return d+p > d0+p0
		})
		time.Sleep(4 * time.Second) // AckHold (3 s) and a margin: late events from the same train show up
		if nv, ok := views(); ok {
			v = nv
		}
		d, p := tally(v)
		t.Logf("%s: %s: %d delivered, %d problems (%v)", uname, what, d, p, v)
		if d != wantDelivered || p != wantProblems {
			t.Errorf("after %s: %d orders delivered and %d problems, want %d and %d (%v)", what, d, p,
				wantDelivered, wantProblems, v)
		}
	}
	press("one 100 ms press", func(ctx context.Context) error { return b.m.Powerdown(ctx) }, 1, 0)
	press("four presses 250 ms apart", func(ctx context.Context) error {
		return b.m.PowerdownTrain(ctx, 4, 250*time.Millisecond)
	}, 2, 0)
	press("the button held 2.9 s", func(ctx context.Context) error {
		return b.m.PowerdownTrain(ctx, 71, 40*time.Millisecond)
	}, 2, 1)

	if !strings.Contains(b.m.QEMULog(), "pl061_input_change") {
		t.Errorf("QEMU's trace shows no change on the button's input line:\n%s", lastLines(b.m.QEMULog(), 20))
	}
	after := ledChanges(b.m.QEMULog())
	t.Logf("%s: the LED line changed %d times before the first press, %d in all", uname, before, after)
	if after <= before {
		t.Errorf("the LED line did not change after the presses (%d changes before, %d after)", before, after)
	}
	if strings.Contains(b.m.Console(), "button unavailable") {
		t.Errorf("the agent could not open the button:\n%s", lastLines(b.m.Console(), 30))
	}
}

// ledChanges counts the LED line's (PL061 line 4) output changes in QEMU's trace.
func ledChanges(log string) int {
	return len(regexp.MustCompile(`pl061_set_output.*output 4 to [01]`).FindAllString(log, -1))
}

func waitFor(t testing.TB, b *boot, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		select {
		case <-b.m.Exited():
			t.Fatalf("the machine ended (%v) while waiting for %s:\n%s", b.m.ExitErr(), what, lastLines(b.m.Console(), 40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v:\nconsole:\n%s\nQEMU:\n%s", what, d, lastLines(b.m.Console(), 40), lastLines(b.m.QEMULog(), 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
