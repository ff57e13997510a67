package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/cmd/waybill/fleetsim"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// fleet sim --workers 2 starts the built waybill twice more, as `fleet sim-worker`: the summary counts
// every truck once and loses nothing.
func TestFleetSimWorkers(t *testing.T) {
	sdktest.MosquittoPath(t)
	bin := buildWaybill(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "fleet", "sim", "--dir", t.TempDir(), "--trucks", "8", "--workers", "2",
		"--duration", "5s", "--dispatch", "--confirm", "--receipt-delay", "1s", "--restart-broker-at", "2s",
		"--reconnect-window", "1s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fleet sim: %v\n%s", err, stderr.Bytes())
	}
	var sum fleetsim.Summary
	if err := json.Unmarshal(out, &sum); err != nil {
		t.Fatalf("summary: %v\n%s", err, out)
	}
	if sum.Trucks != 8 || sum.Connected != 8 || sum.NeverConnected != 0 || sum.FixesStored == 0 ||
		sum.Lost != 0 || sum.FixesReceived != sum.FixesStored || sum.ReconnectAll <= 0 {
		t.Errorf("summary:\n%s\nprogress:\n%s", out, stderr.Bytes())
	}
}

// The hidden worker subcommand refuses to run by hand.
func TestFleetSimWorkerNeedsParent(t *testing.T) {
	t.Setenv(fleetsim.WorkerEnv, "")
	var out, errb bytes.Buffer
	if code := run(context.Background(), streams{strings.NewReader(""), &out, &errb}, []string{"fleet", workerCommand}); code != 1 ||
		!strings.Contains(errb.String(), "not a worker") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

// fleet sim --broker runs against a Mosquitto it did not start, configured from the PKI given with --pki:
// its trucks and dispatch are issued there under --name-prefix, every truck connects, nothing is lost,
// and the summary measures no broker.
func TestFleetSimExternalBroker(t *testing.T) {
	sdktest.MosquittoPath(t)
	p, err := pki.Init(pki.Config{Dir: filepath.Join(t.TempDir(), "pki")}, pki.CAOptions{Fleet: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Issue(pki.RoleBroker, sdktest.BrokerName, pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	b := sdktest.StartMosquitto(t, sdktest.Options{PKI: p})
	code, out, errOut := runCmd(t, "fleet", "sim", "--broker", "mqtts://"+b.Addr, "--pki", p.Dir(), "--name-prefix", "load-",
		"--dir", t.TempDir(), "--trucks", "8", "--workers", "1", "--duration", "3s", "--dispatch", "--receipt-delay", "1s")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	var sum fleetsim.Summary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("summary: %v\n%s", err, out)
	}
	if sum.Connected != 8 || sum.FixesStored == 0 || sum.Lost != 0 || sum.FixesReceived != sum.FixesStored ||
		sum.DispatchRSS == 0 || strings.Contains(out, `"broker_`) {
		t.Errorf("summary:\n%s\nprogress:\n%s", out, errOut)
	}
	if trucks, _ := p.Names(pki.RoleTruck); len(trucks) != 8 || trucks[0] != "load-00001" {
		t.Errorf("trucks in the PKI: %v", trucks)
	}
	if d, _ := p.Names(pki.RoleDispatch); len(d) != 1 || d[0] != "load-dispatch" {
		t.Errorf("dispatch identities in the PKI: %v", d)
	}
}

// fleet sim refuses to restart a broker it did not start, and a broker without its PKI.
func TestFleetSimExternalRefusals(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--broker", "mqtts://127.0.0.1:8883", "--pki", "p", "--restart-broker-at", "1m"}, "cannot restart mqtts://127.0.0.1:8883"},
		{[]string{"--broker", "mqtts://127.0.0.1:8883"}, "--pki DIR"},
		{[]string{"--pki", "p"}, "--broker"},
	} {
		if code, _, errOut := runCmd(t, append([]string{"fleet", "sim", "--dir", t.TempDir()}, c.args...)...); code == 0 ||
			!strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %q", c.args, code, errOut, c.want)
		}
	}
}
