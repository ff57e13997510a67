package main

import (
	"strings"
	"testing"

	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// TestOdometerCommand: `odometer set` takes a reading with its unit and refuses a bare number; `show` prints
// it back with who set it.
func TestOdometerCommand(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{})
	cfg := config(t, t.TempDir(), b.Truck("truck-0001"), "mqtts://"+b.Addr, "/dev/null", "")
	if code, _, errs := runAgent(t, "odometer", "set", "123456.7", "--config", cfg); code != 2 || !strings.Contains(errs, "no unit") {
		t.Fatalf("a bare number: exit %d, %q", code, errs)
	}
	if code, out, errs := runAgent(t, "odometer", "set", "76712.4mi", "--config", cfg); code != 0 || !strings.Contains(out, "123456.6 km") {
		t.Fatalf("set 76712.4mi: exit %d, %q %q", code, out, errs)
	}
	if code, out, errs := runAgent(t, "odometer", "show", "--config", cfg); code != 0 || !strings.Contains(out, "123456.6 km") ||
		!strings.Contains(out, "command") {
		t.Fatalf("show: exit %d, %q %q", code, out, errs)
	}
	if code, _, errs := runAgent(t, "odometer", "--config", cfg); code != 2 || !strings.Contains(errs, "show or set") {
		t.Fatalf("no verb: exit %d, %q", code, errs)
	}
}
