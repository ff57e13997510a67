package fleetsim

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/waybill-iot/waybill/sdk/sdktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// 200 real truck clients on real Mosquitto, with dispatch stalled for 10 s and the broker restarted
// mid-drive: every truck comes back, and every fix and delivery a truck stored reaches dispatch.
func TestFleetSurvivesStallAndRestart(t *testing.T) {
	sdktest.MosquittoPath(t) // fails with the install command when Mosquitto is missing
	var progress sdktest.SyncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sum, err := Run(ctx, Config{
		Dir: t.TempDir(), Trucks: 200, Duration: 45 * time.Second, Drain: 90 * time.Second, StartRate: 200,
		Dispatch: true, ReceiptDelay: time.Second, Confirm: true, ReconnectWindow: 3 * time.Second,
		StallDispatch: 10 * time.Second, StallDispatchAt: 5 * time.Second, RestartBrokerAt: 25 * time.Second,
		Progress: &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.MarshalIndent(sum, "", "  ")
	t.Logf("summary:\n%s\nprogress (tail):\n%s", js, progress.Tail(5))
	if sum.NeverConnected != 0 {
		t.Errorf("%d trucks never connected (after retries)", sum.NeverConnected)
	}
	if sum.Connected != 200 {
		t.Errorf("%d of 200 trucks connected at the end", sum.Connected)
	}
	if sum.ReconnectAll <= 0 {
		t.Errorf("reconnect_all %v: every truck should have come back after the restart", sum.ReconnectAll)
	}
	if sum.FixesStored == 0 || sum.EventsConfirmed == 0 {
		t.Fatalf("nothing stored (%d fixes, %d events): the drive did not run", sum.FixesStored, sum.EventsConfirmed)
	}
	if sum.Lost != 0 || sum.StillQueued != 0 || sum.FixesReceived != sum.FixesStored || sum.EventsReceived != sum.EventsConfirmed {
		t.Errorf("lost %d, still queued %d; fixes %d stored / %d received, events %d / %d",
			sum.Lost, sum.StillQueued, sum.FixesStored, sum.FixesReceived, sum.EventsConfirmed, sum.EventsReceived)
	}
	if sum.DispatchStalled < 9 {
		t.Errorf("dispatch stalled %.1f s, want about 10", sum.DispatchStalled)
	}
	if sum.BrokerRSS == 0 || sum.SimRSS == 0 {
		t.Errorf("resident memory not measured: broker %d, sim %d", sum.BrokerRSS, sum.SimRSS)
	}
	if !strings.Contains(progress.String(), "[dispatch stalled]") {
		t.Error("the progress line never showed the stall")
	}
}

func TestConfigRefusals(t *testing.T) {
	for _, c := range []Config{
		{},
		{Dir: "x", Trucks: -1},
		{Dir: "x", DropLink: 1.5},
		{Dir: "x", StallDispatch: time.Second},
		{Dir: "x", Duration: -time.Second},
	} {
		if _, err := c.withDefaults(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	var b bytes.Buffer
	if _, err := Run(context.Background(), Config{Dir: "x", DropLink: 2, Progress: &b}); err == nil || !strings.Contains(err.Error(), "0 to 1") {
		t.Errorf("drop-link 2: %v", err)
	}
}
