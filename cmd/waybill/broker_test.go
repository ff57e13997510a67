package main

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

func newCmdPKI(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	for _, args := range [][]string{
		{"pki", "init", "--dir", dir},
		{"pki", "issue", "--dir", dir, "--role", "broker", "mqtt"},
		{"pki", "issue", "--dir", dir, "--role", "dispatch", "office"},
		{"pki", "issue", "--dir", dir, "--role", "truck", "truck-1"},
	} {
		if code, _, errOut := runCmd(t, args...); code != 0 {
			t.Fatalf("%v: %s", args, errOut)
		}
	}
	return dir
}

func TestBrokerConfig(t *testing.T) {
	dir := newCmdPKI(t)
	out := filepath.Join(t.TempDir(), "broker")
	code, stdout, stderr := runCmd(t, "broker", "config", "--dir", dir, "--out", out, "--port", "18883", "--prefix", "acme")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "1 dispatch identities") {
		t.Errorf("stdout: %s", stdout)
	}
	conf, _ := os.ReadFile(filepath.Join(out, "mosquitto.conf"))
	acl, _ := os.ReadFile(filepath.Join(out, "access", "dynamic-security.json"))
	if !regexp.MustCompile(`(?m)^listener 18883$`).Match(conf) || !strings.Contains(string(acl), `"topic": "acme/trucks/+/orders/#"`) {
		t.Errorf("conf:\n%s\nacl:\n%s", conf, acl)
	}
	if err := pki.CheckKeyFile(filepath.Join(out, "certs", "broker.key")); err != nil {
		t.Error(err)
	}
	for _, args := range [][]string{
		{"broker", "config", "--dir", dir},
		{"broker", "config", "--dir", dir, "--out", out, "--port", "99999"},
		{"broker", "nope"},
	} {
		if code, _, _ := runCmd(t, args...); code == 0 {
			t.Errorf("%v succeeded", args)
		}
	}
	if code, stdout, _ := runCmd(t, "broker", "config", "--help"); code != 0 || !strings.Contains(stdout, "-max-inflight") {
		t.Errorf("help: %d %s", code, stdout)
	}
}

func TestBrokerRun(t *testing.T) {
	dir := newCmdPKI(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb sdktest.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, streams{strings.NewReader(""), &out, &errb}, []string{"broker", "run", "--dir", dir, "--listen", "127.0.0.1:0"})
	}()
	re := regexp.MustCompile(`listening on (\S+)`)
	var addr string
	for deadline := time.Now().Add(5 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		cancel()
		t.Fatalf("not listening; stderr: %s (exit %d)", errb.String(), <-done)
	}
	pair, err := pki.LoadKeyPair(filepath.Join(dir, "issued", "truck-1.crt"), filepath.Join(dir, "private", "truck-1.key"))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := pki.LoadCertPool(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("mutual TLS to the development broker: %v", err)
	}
	conn.Close()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d: %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("broker run did not stop")
	}
}

// TestBrokerConfigTwoCertificates (issue 11.6): with two broker certificates the error names the flag that
// picks one, --cert NAME picks it, and the old --broker NAME still works with a deprecation note.
func TestBrokerConfigTwoCertificates(t *testing.T) {
	dir := newCmdPKI(t)
	if code, _, errOut := runCmd(t, "pki", "issue", "--dir", dir, "--role", "broker", "standby"); code != 0 {
		t.Fatal(errOut)
	}
	out := filepath.Join(t.TempDir(), "broker")
	code, _, errOut := runCmd(t, "broker", "config", "--dir", dir, "--out", out)
	if code != 2 || !strings.Contains(errOut, "pick one with --cert NAME") || !strings.Contains(errOut, "mqtt, standby") {
		t.Fatalf("two broker certificates, none chosen: exit %d: %s", code, errOut)
	}
	code, stdout, errOut := runCmd(t, "broker", "config", "--dir", dir, "--out", out, "--cert", "standby")
	if code != 0 || !strings.Contains(stdout, "broker certificate standby") {
		t.Fatalf("--cert standby: exit %d: %s%s", code, stdout, errOut)
	}
	code, stdout, errOut = runCmd(t, "broker", "config", "--dir", dir, "--out", out, "--broker", "mqtt")
	if code != 0 || !strings.Contains(stdout, "broker certificate mqtt") || !strings.Contains(errOut, "deprecated") {
		t.Fatalf("--broker mqtt: exit %d: %s%s", code, stdout, errOut)
	}
	code, _, errOut = runCmd(t, "broker", "config", "--dir", dir, "--out", out, "--cert", "nope")
	if code != 2 || !strings.Contains(errOut, `no broker certificate "nope"`) {
		t.Fatalf("--cert nope: exit %d: %s", code, errOut)
	}
}

// TestBrokerConfigDynsecPlugin: --dynsec-plugin names the plugin on the broker host, which may be another
// architecture than the host that runs `broker config` (an arm64 broker configured from an amd64 laptop).
func TestBrokerConfigDynsecPlugin(t *testing.T) {
	dir := newCmdPKI(t)
	out := filepath.Join(t.TempDir(), "broker")
	const arm = "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so"
	code, stdout, errOut := runCmd(t, "broker", "config", "--dir", dir, "--out", out, "--dynsec-plugin", arm)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout, errOut)
	}
	conf, _ := os.ReadFile(filepath.Join(out, "mosquitto.conf"))
	if !regexp.MustCompile(`(?m)^plugin ` + regexp.QuoteMeta(arm) + `$`).Match(conf) {
		t.Errorf("mosquitto.conf does not load %s:\n%s", arm, conf)
	}
	if !strings.Contains(stdout, "plugin "+arm) {
		t.Errorf("stdout does not name the plugin:\n%s", stdout)
	}
	if code, _, errOut := runCmd(t, "broker", "config", "--dir", dir, "--out", out, "--dynsec-plugin", "lib/x.so"); code == 0 ||
		!strings.Contains(errOut, "absolute") {
		t.Errorf("a relative plugin path: exit %d: %s", code, errOut)
	}
	// Without the flag: the path found on this host, and the output says how to choose another.
	code, stdout, _ = runCmd(t, "broker", "config", "--dir", dir, "--out", out)
	if code != 0 || !strings.Contains(stdout, "--dynsec-plugin") {
		t.Errorf("exit %d: %s", code, stdout)
	}
	if code, stdout, _ := runCmd(t, "broker", "config", "--help"); code != 0 || !strings.Contains(stdout, "-dynsec-plugin") {
		t.Errorf("help: %d %s", code, stdout)
	}
}

// TestBrokerConfigAgain: run again, broker config leaves the access file to Mosquitto and says to reload;
// --reset-access rewrites it from the PKI and says to start (the plugin reads it only at start).
func TestBrokerConfigAgain(t *testing.T) {
	dir := newCmdPKI(t)
	out := filepath.Join(t.TempDir(), "broker")
	access := filepath.Join(out, "access", "dynamic-security.json")
	if code, stdout, errOut := runCmd(t, "broker", "config", "--dir", dir, "--out", out); code != 0 || !strings.Contains(stdout, "\nstart: ") {
		t.Fatalf("exit %d: %s%s", code, stdout, errOut)
	}
	if code, _, errOut := runCmd(t, "pki", "revoke", "--dir", dir, "truck-1"); code != 0 {
		t.Fatal(errOut)
	}
	code, stdout, errOut := runCmd(t, "broker", "config", "--dir", dir, "--out", out)
	if code != 0 || !strings.Contains(stdout, "kept "+access) || !regexp.MustCompile(`\nreload: .*kill -HUP`).MatchString(stdout) {
		t.Fatalf("again: exit %d: %s%s", code, stdout, errOut)
	}
	if b, _ := os.ReadFile(access); !strings.Contains(string(b), "truck-1") {
		t.Errorf("the kept file changed:\n%s", b)
	}
	code, stdout, errOut = runCmd(t, "broker", "config", "--dir", dir, "--out", out, "--reset-access")
	if code != 0 || !strings.Contains(stdout, "wrote ") || !strings.Contains(stdout, "\nstart: ") {
		t.Fatalf("--reset-access: exit %d: %s%s", code, stdout, errOut)
	}
	if b, _ := os.ReadFile(access); strings.Contains(string(b), "truck-1") {
		t.Errorf("--reset-access kept the revoked truck:\n%s", b)
	}
}
