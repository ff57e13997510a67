package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// TestBrokerConfigAgainUnderMosquitto follows the README on a broker host: `broker config`, `chown -R
// mosquitto: DIR`, Mosquitto started as root (it drops to the user mosquitto), then the routine after a
// revoke: `broker config` again and SIGHUP. Mosquitto must still load its key (a truck connects over
// mutual TLS; the revoked one is refused by the reloaded CRL) and still save its access file (an identity
// told afterwards is there after a restart). The rewrite made every file root:root, so the SIGHUP locked
// the fleet out and the plugin could no longer save.
func TestBrokerConfigAgainUnderMosquitto(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: Mosquitto starts as root and drops to the user mosquitto, as on a broker host")
	}
	mosqPath, subPath := sdktest.MosquittoPath(t), sdktest.ClientTool(t, "mosquitto_sub")
	if _, err := user.Lookup("mosquitto"); err != nil {
		t.Fatalf("no user mosquitto (Debian's mosquitto package creates it): apt-get install mosquitto: %v", err)
	}
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} { // 0700: the user mosquitto must reach DIR
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir, out := filepath.Join(base, "pki"), filepath.Join(base, "broker")
	port := strconv.Itoa(sdktest.FreePort(t))
	url := "mqtts://127.0.0.1:" + port
	must := func(args ...string) string {
		t.Helper()
		code, stdout, errOut := runCmd(t, args...)
		if code != 0 {
			t.Fatalf("waybill %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, errOut)
		}
		return stdout
	}
	must("pki", "init", "--dir", dir)
	must("pki", "issue", "--dir", dir, "--role", "broker", "mqtt")
	for _, n := range []string{"truck-1", "truck-2"} {
		must("pki", "issue", "--dir", dir, "--role", "truck", n)
	}
	config := []string{"broker", "config", "--dir", dir, "--out", out, "--port", port, "--bind", "127.0.0.1"}
	stdout := must(config...)
	conf := filepath.Join(out, "mosquitto.conf")
	if !strings.Contains(stdout, "start: chown -R mosquitto: "+out+" && mosquitto -c "+conf) {
		t.Errorf("the start hint lacks the chown:\n%s", stdout)
	}
	if b, err := exec.Command("chown", "-R", "mosquitto:", out).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, b)
	}
	m := startMosquittoAsRoot(t, mosqPath, conf, "127.0.0.1:"+port)
	if uid := m.uid(t); uid == 0 {
		t.Fatal("Mosquitto kept running as root: this test needs it as the user mosquitto")
	}

	must("pki", "issue", "--dir", dir, "--role", "truck", "--broker", url, "truck-3")
	must("pki", "revoke", "--dir", dir, "--broker", url, "truck-1")
	stdout = must(config...)
	if strings.Contains(stdout, "chown") || !strings.Contains(stdout, "reload: kill -HUP $(pidof mosquitto)") {
		t.Errorf("a directory that stayed Mosquitto's needs no chown, only a SIGHUP:\n%s", stdout)
	}
	m.reload(t)
	if logs := m.logs.String(); strings.Contains(logs, "Permission denied") || strings.Contains(logs, "Unable to load") {
		t.Errorf("Mosquitto could not read its files after the reload:\n%s", logs)
	}

	subscribe := func(name string, args ...string) (string, error) {
		args = append([]string{"-V", "mqttv5", "-h", "127.0.0.1", "-p", port, "--cafile", filepath.Join(dir, "ca.crt"),
			"--cert", filepath.Join(dir, "issued", name+".crt"), "--key", filepath.Join(dir, "private", name+".key"),
			"-i", name}, args...)
		b, err := exec.Command(subPath, args...).CombinedOutput()
		return string(b), err
	}
	// The retained CRL from the revoke: mutual TLS, the plugin and the truck's rights all work.
	if out, err := subscribe("truck-2", "-t", "fleet/crl", "-C", "1", "-W", "5"); err != nil {
		t.Fatalf("a valid truck cannot connect after `broker config` and SIGHUP: %v\n%s\nMosquitto:\n%s", err, out, m.logs.String())
	}
	if out, err := subscribe("truck-1", "-t", "fleet/crl", "-C", "1", "-W", "3"); err == nil {
		t.Errorf("the revoked truck connected after the reload:\n%s", out)
	}

	// Told while running: Mosquitto must save it, and have it after a restart.
	must("pki", "issue", "--dir", dir, "--role", "truck", "--broker", url, "truck-4")
	sdktest.WaitFor(t, 5*time.Second, "Mosquitto saves truck-4 in its access file", func() bool {
		b, _ := os.ReadFile(filepath.Join(out, "access", "dynamic-security.json"))
		return strings.Contains(string(b), `"truck-4"`)
	})
	if logs := m.logs.String(); strings.Contains(logs, "Error saving") {
		t.Errorf("the plugin could not save its file:\n%s", logs)
	}
	m.stop(t)
	m = startMosquittoAsRoot(t, mosqPath, conf, "127.0.0.1:"+port)
	for _, n := range []string{"truck-3", "truck-4"} {
		if out, _ := subscribe(n, "-d", "-W", "1", "-t", "fleet/trucks/"+n+"/orders/#"); !strings.Contains(out, "Subscribed (mid: 1): 0") {
			t.Errorf("%s, told while Mosquitto ran, lost its rights at the restart:\n%s", n, out)
		}
	}
}

// mosquittoProc is a Mosquitto this test started.
type mosquittoProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when it exits
	logs   *sdktest.SyncBuffer
}

// startMosquittoAsRoot starts Mosquitto with conf (no `user` line: it drops to mosquitto), waits until it
// accepts connections on addr and stops it when the test ends.
func startMosquittoAsRoot(t *testing.T, path, conf, addr string) *mosquittoProc {
	t.Helper()
	m := &mosquittoProc{cmd: exec.Command(path, "-c", conf), exited: make(chan struct{}), logs: &sdktest.SyncBuffer{}}
	m.cmd.Stdout, m.cmd.Stderr = m.logs, m.logs
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.cmd.Wait(); close(m.exited) }()
	t.Cleanup(func() { m.stop(t) })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return m
		}
		select {
		case <-m.exited:
			t.Fatalf("mosquitto exited:\n%s", m.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto does not listen on %s:\n%s", addr, m.logs.String())
		}
	}
}

// uid is the user Mosquitto runs as.
func (m *mosquittoProc) uid(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(m.cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(b)) {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
			uid, _ := strconv.Atoi(f[1])
			return uid
		}
	}
	t.Fatal("no Uid in /proc/PID/status")
	return -1
}

// reload sends SIGHUP and waits until Mosquitto has reloaded.
func (m *mosquittoProc) reload(t *testing.T) {
	t.Helper()
	before := strings.Count(m.logs.String(), "Reloading config")
	if err := m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	sdktest.WaitFor(t, 10*time.Second, "Mosquitto reloads", func() bool {
		return strings.Count(m.logs.String(), "Reloading config") > before
	})
	time.Sleep(200 * time.Millisecond) // the log line comes before the reload finishes
}

// stop stops Mosquitto (SIGTERM, which saves its state); stopping it again does nothing.
func (m *mosquittoProc) stop(t *testing.T) {
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Error(err)
	}
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
	}
}
