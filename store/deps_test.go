package store_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestDependencies: store never imports MQTT, agent or cmd code (design.md), transitively.
func TestDependencies(t *testing.T) {
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"github.com/eclipse/paho", "github.com/mochi-mqtt/", "github.com/waybill-iot/waybill/agent",
			"github.com/waybill-iot/waybill/cmd", "github.com/waybill-iot/waybill/sdk", "github.com/waybill-iot/waybill/gps"} {
			if strings.HasPrefix(dep, bad) {
				t.Errorf("store depends on %s", dep)
			}
		}
	}
}
