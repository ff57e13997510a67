package sdk_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestIntegratorDependencies enforces design.md's dependency direction on the packages integrators import:
// no agent or cmd code, no GPS (it pulls in serial code), no serial port, GPIO, browser-test or embedded
// broker code, transitively. (net/http is pulled in by paho's autopaho for MQTT over websockets; that is
// its client, and no HTTP server is started.)
func TestIntegratorDependencies(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	forbidden := []string{"github.com/waybill-iot/waybill/agent", "github.com/waybill-iot/waybill/cmd",
		"github.com/waybill-iot/waybill/gps", "go.bug.st/serial", "github.com/warthog618/go-gpiocdev",
		"github.com/chromedp/", "github.com/creack/pty", "github.com/mochi-mqtt/"}
	for _, pkg := range []string{".", "./transport", "./truck", "./dispatch", "./pki"} {
		out, err := exec.Command(goBin, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, bad := range forbidden {
				if strings.HasPrefix(dep, bad) {
					t.Errorf("sdk/%s depends on %s", strings.TrimPrefix(pkg, "./"), dep)
				}
			}
		}
	}
}
