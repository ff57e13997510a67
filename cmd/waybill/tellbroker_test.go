package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// TestTellBroker drives the commands as an operator would, against real Mosquitto with mosquitto_sub as
// the truck: a truck issued while the broker runs may subscribe to its orders only after `pki issue
// --broker`; `pki revoke --broker` closes its open session (DISCONNECT 0x98) and publishes the CRL; `broker
// sync` finds nothing left to do; an unreachable broker is an error that says what to run later.
func TestTellBroker(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{})
	dir, url := b.PKI.Dir(), "mqtts://"+b.Addr
	sub := func(args ...string) *exec.Cmd {
		return exec.Command(sdktest.ClientTool(t, "mosquitto_sub"), append(b.MosquittoArgs(b.ClientFiles("truck-9")), args...)...)
	}

	if code, _, errOut := runCmd(t, "pki", "issue", "--dir", dir, "--role", "truck", "truck-9"); code != 0 {
		t.Fatal(errOut)
	}
	out, _ := sub("-d", "-W", "1", "-t", "fleet/trucks/truck-9/orders/#").CombinedOutput()
	if !strings.Contains(string(out), "Subscribed (mid: 1): 135") {
		t.Errorf("a truck the broker was not told about subscribed:\n%s", out)
	}
	code, stdout, errOut := runCmd(t, "pki", "issue", "--dir", dir, "--role", "truck", "--broker", url, "truck-9")
	if code != 0 || !strings.Contains(stdout, "truck-9 may connect now") {
		t.Fatalf("issue --broker: exit %d\n%s%s", code, stdout, errOut)
	}

	live := sub("-d", "-t", "fleet/trucks/truck-9/orders/#", "-t", "fleet/crl")
	var liveOut bytes.Buffer
	live.Stdout, live.Stderr = &liveOut, &liveOut
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- live.Wait() }()
	waited := false
	defer func() {
		if !waited {
			live.Process.Kill()
			<-exited
		}
	}()
	// mosquitto_sub's output is block-buffered into a pipe: read it only after it exits, and learn from
	// the broker's log that it is connected (its first session, the refused one, was connected once).
	sdktest.WaitFor(t, 5*time.Second, "mosquitto_sub connected", func() bool {
		return strings.Count(b.Logs(), "u'truck-9'") >= 2
	})
	time.Sleep(200 * time.Millisecond) // its SUBSCRIBE follows the CONNACK

	code, stdout, errOut = runCmd(t, "pki", "revoke", "--dir", dir, "--broker", url, "truck-9")
	if code != 0 || !strings.Contains(stdout, "published CRL") || !strings.Contains(stdout, "removed truck-9") {
		t.Fatalf("revoke --broker: exit %d\n%s%s", code, stdout, errOut)
	}
	select {
	case <-exited:
		waited = true
	case <-time.After(5 * time.Second):
		t.Fatalf("the revoked truck's session is still open:\n%s", liveOut.String())
	}
	if s := liveOut.String(); !strings.Contains(s, "Subscribed (mid: 1): 0, 0") || !strings.Contains(s, "'fleet/crl'") ||
		!strings.Contains(s, "DISCONNECT (152)") {
		t.Errorf("want the CRL, then DISCONNECT 152 (administrative action):\n%s", s)
	}

	code, stdout, _ = runCmd(t, "broker", "sync", "--dir", dir, "--broker", url)
	if code != 0 || !strings.Contains(stdout, "already knows every identity") {
		t.Errorf("broker sync: exit %d\n%s", code, stdout)
	}
	code, _, errOut = runCmd(t, "pki", "revoke", "--dir", dir, "--broker", "mqtts://127.0.0.1:1", "test-broker")
	if code == 0 || !strings.Contains(errOut, "the broker was not told") || !strings.Contains(errOut, "waybill broker sync") {
		t.Errorf("unreachable broker: exit %d\n%s", code, errOut)
	}
}
