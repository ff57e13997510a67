package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// TestARMBinaryUnderQEMU builds the agent for linux/arm (GOARM=7), the trucks' most common target, and runs
// it under qemu-arm-static: version, and check on a generated configuration.
func TestARMBinaryUnderQEMU(t *testing.T) {
	if runtime.GOARCH == "arm" {
		t.Skip("already running as an ARM binary (make test-arm): this test builds and runs one from the host")
	}
	qemu, err := exec.LookPath("qemu-arm-static")
	if err != nil {
		t.Fatal("qemu-arm-static not found: apt-get install qemu-user-static")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	bin := filepath.Join(t.TempDir(), "waybill-agent")
	build := exec.Command(goBin, "build", "-trimpath", "-ldflags", "-s -w -X main.version=arm-test", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm", "GOARM=7")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build for linux/arm: %v\n%s", err, out)
	}
	if out, err := exec.Command("file", bin).Output(); err == nil && !strings.Contains(string(out), "ARM") {
		t.Fatalf("not an ARM binary: %s", out)
	}
	out, err := exec.Command(qemu, bin, "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "waybill-agent arm-test" {
		t.Fatalf("version under qemu: %v %q", err, out)
	}
	b := sdktest.StartMosquitto(t, sdktest.Options{})
	cl := b.Truck("truck-arm")
	cfg := config(t, t.TempDir(), cl, "mqtts://"+b.Addr, "/dev/null", "")
	out, err = exec.Command(qemu, bin, "check", "--offline", "--config", cfg).CombinedOutput()
	if err != nil || strings.Contains(string(out), "FAIL") || !strings.Contains(string(out), "truck-arm") {
		t.Fatalf("check under qemu: %v\n%s", err, out)
	}
	fi, _ := os.Stat(bin)
	t.Logf("linux/arm binary %.1f MB; check under qemu:\n%s", float64(fi.Size())/1e6, out)
}
