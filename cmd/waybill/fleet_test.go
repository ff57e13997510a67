package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/cmd/waybill/fleetsim"
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
