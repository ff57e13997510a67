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
func TestButton(t *testing.T) {
	f := newFleet(t, fleetOptions{Button: true})
	f.createOrders("b-1")
	b := f.boot("none", true, "pl061_set_output", "pl061_input_change")
	b.waitHealth(90*time.Second, "a connection", func(h health) bool { return h.Connected })
	view := func() (state string, problems int, ok bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		code, raw, err := b.request(ctx, "GET", "/api/orders/b-1", nil)
		if err != nil || code != http.StatusOK {
			return "", 0, false
		}
		var v struct {
			State    string `json:"state"`
			Problems int    `json:"problems"`
		}
		if json.Unmarshal(raw, &v) != nil {
			return "", 0, false
		}
		return v.State, v.Problems, true
	}
	waitFor(t, b, 60*time.Second, "order b-1 on the truck", func() bool { _, _, ok := view(); return ok })
	waitFor(t, b, 30*time.Second, "the button and LED open (the LED blinks while an order waits)", func() bool {
		return ledChanges(b.m.QEMULog()) > 0
	})
	before := ledChanges(b.m.QEMULog())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.m.Powerdown(ctx); err != nil {
		t.Fatal(err)
	}
	var state string
	var problems int
	waitFor(t, b, 30*time.Second, "an event via the button on order b-1", func() bool {
		state, problems, _ = view()
		return state == "delivered" || problems > 0
	})
	if state != "delivered" || problems != 0 {
		t.Errorf("the 100 ms press left order b-1 %s with %d problems, want delivered (a short press)", state, problems)
	}
	if !strings.Contains(b.m.QEMULog(), "pl061_input_change") {
		t.Errorf("QEMU's trace shows no change on the button's input line:\n%s", lastLines(b.m.QEMULog(), 20))
	}
	uname, _, _ := b.m.Exec(ctx, "uname -rm")
	uname = strings.TrimSpace(uname)
	t.Logf("%s: after system_powerdown: order b-1 is %s with %d problems; the LED line changed %d times before the press, %d in all",
		uname, state, problems, before, ledChanges(b.m.QEMULog()))
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
