package main

import (
	"bytes"
	"os/exec"
	"regexp"
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

// TestTellEveryBroker: trucks fail over between brokers (broker.urls) and Mosquitto does not cluster, so
// `--broker A,B` tells both: the identity may connect on each, and a revocation ends the truck's session on
// each. A dead third broker is reported on its own line and makes the command fail, after the others were
// told.
func TestTellEveryBroker(t *testing.T) {
	a := sdktest.StartMosquitto(t, sdktest.Options{})
	b := sdktest.StartMosquitto(t, sdktest.Options{PKI: a.PKI})
	dir := a.PKI.Dir()
	urlA, urlB, dead := "mqtts://"+a.Addr, "mqtts://"+b.Addr, "mqtts://127.0.0.1:1"

	code, stdout, errOut := runCmd(t, "pki", "issue", "--dir", dir, "--role", "truck", "--broker", urlA+", "+urlB, "truck-9")
	if code != 0 {
		t.Fatalf("issue --broker A,B: exit %d\n%s%s", code, stdout, errOut)
	}
	for _, u := range []string{urlA, urlB} {
		if n := strings.Count(stdout, "broker "+u+": "); n != 1 || !strings.Contains(stdout, "broker "+u+": told: truck-9 may connect now") {
			t.Errorf("issue: want one line saying %s lets truck-9 in, got %d:\n%s", u, n, stdout)
		}
	}

	// truck-9 connected to both brokers, as two units of a failover pair would be.
	type sub struct {
		out    bytes.Buffer
		exited chan struct{} // closed when it exits
	}
	var subs []*sub
	for _, br := range []*sdktest.Broker{a, b} {
		cmd := exec.Command(sdktest.ClientTool(t, "mosquitto_sub"), append(br.MosquittoArgs(br.ClientFiles("truck-9")),
			"-d", "-t", "fleet/trucks/truck-9/orders/#")...)
		s := &sub{exited: make(chan struct{})}
		cmd.Stdout, cmd.Stderr = &s.out, &s.out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { cmd.Wait(); close(s.exited) }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-s.exited
		})
		subs = append(subs, s)
		sdktest.WaitFor(t, 5*time.Second, "mosquitto_sub connected to "+br.Addr, func() bool {
			return strings.Contains(br.Logs(), "u'truck-9'")
		})
	}
	time.Sleep(200 * time.Millisecond) // its SUBSCRIBE follows the CONNACK

	code, stdout, errOut = runCmd(t, "pki", "revoke", "--dir", dir, "--broker", urlA+","+dead+","+urlB, "truck-9")
	if code == 0 {
		t.Errorf("revoke with a dead broker succeeded:\n%s", stdout)
	}
	for _, u := range []string{urlA, urlB} {
		if n := strings.Count(stdout, "broker "+u+": "); n != 1 || !regexp.MustCompile(`broker `+regexp.QuoteMeta(u)+
			`: told: published CRL #\d+ \(1 revoked\)[^\n]*; removed truck-9`).MatchString(stdout) {
			t.Errorf("revoke: want one line saying %s published the CRL and removed truck-9, got %d:\n%s", u, n, stdout)
		}
	}
	if !strings.Contains(stdout, "broker "+dead+": not told: ") || !strings.Contains(errOut, "1 of 3 brokers was not told") ||
		!strings.Contains(errOut, "waybill broker sync --broker "+dead+"`") {
		t.Errorf("the dead broker is not reported:\nstdout: %s\nstderr: %s", stdout, errOut)
	}
	for i, s := range subs {
		select {
		case <-s.exited:
			if !strings.Contains(s.out.String(), "DISCONNECT (152)") {
				t.Errorf("broker %d: want DISCONNECT 152 (administrative action):\n%s", i, s.out.String())
			}
		case <-time.After(5 * time.Second):
			t.Errorf("broker %d: the revoked truck's session is still open", i)
		}
	}

	code, stdout, _ = runCmd(t, "broker", "sync", "--dir", dir, "--broker", urlB+","+urlA)
	if code != 0 || strings.Count(stdout, "already knows every identity") != 2 {
		t.Errorf("broker sync A,B: exit %d\n%s", code, stdout)
	}
}
