package boards

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestEveryProfileIsValid(t *testing.T) {
	names := Names()
	for _, want := range []string{"rpi4", "rpi-zero2", "beaglebone-black", "usb-ublox-arm64", "openwrt-armv7"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("board %s missing from %v", want, names)
		}
	}
	// Every profile must name a Go target.
	out, err := exec.Command("go", "tool", "dist", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		p, err := Lookup(n)
		if err != nil {
			t.Errorf("%s: %v", n, err)
			continue
		}
		if !strings.Contains(string(out), "linux/"+p.GOARCH+"\n") {
			t.Errorf("%s: linux/%s is not a Go target", n, p.GOARCH)
		}
	}
}

func TestLookupUnknownNamesTheKnownOnes(t *testing.T) {
	_, err := Lookup("rpi9")
	if err == nil || !strings.Contains(err.Error(), "rpi4") {
		t.Fatalf("Lookup(rpi9) = %v", err)
	}
}

func TestServiceFilesMatchTheCommandLine(t *testing.T) {
	// The service files start the agent with the commands design.md fixes.
	for _, f := range []string{"waybill-agent.service", "waybill-agent.init"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "run --config") {
			t.Errorf("%s does not run `waybill-agent run --config`", f)
		}
	}
	unit, _ := os.ReadFile("waybill-agent.service")
	for _, want := range []string{"Type=notify", "WatchdogSec=", "StateDirectory=waybill", "Restart=on-failure",
		"NoNewPrivileges=yes", "ProtectSystem=strict"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("systemd unit lacks %s", want)
		}
	}
}
