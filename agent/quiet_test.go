package agent

import (
	"context"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// TestReceiverQuietReleasesHeldFixes: in curve mode the filter holds undecided fixes until a later fix
// decides them. When the receiver goes silent while it holds some (a tunnel, a dead receiver, the
// drain before a power cut), they are logged after receiverQuiet (the newest with them: Flush logs it), so
// /healthz's in_memory drops to 0 and every fix the filter logged is in the store: dispatch gets the last
// position and a power cut loses none of it. Before, they stayed in memory until the next fix.
func TestReceiverQuietReleasesHeldFixes(t *testing.T) {
	gpsCtx, unplug := context.WithCancel(context.Background())
	defer unplug()
	a, _, _ := startAgentGPS(t, gpsCtx, time.Now().UTC(), func(c *Config) {
		c.GPS.Filter.Mode = string(gps.FilterCurve)
	}, Options{})
	sdktest.WaitFor(t, 30*time.Second, "the curve filter holding fixes", func() bool {
		return a.fixes.seen.Load() >= 20 && a.fixes.held.Load() > 0
	})
	unplug()
	var s Status
	sdktest.WaitFor(t, 2*receiverQuiet+10*time.Second, "no fix left in memory", func() bool {
		_, s = readHealthz(t, a)
		return s.Queue.InMemory == 0 && a.fixes.held.Load() == 0
	})
	if r, st := a.fixes.reported.Load(), a.fixes.stored.Load(); r != st || st == 0 {
		t.Errorf("the filter logged %d fixes, the store holds %d of them", r, st)
	}
	t.Logf("after the receiver went quiet: %d fixes seen, %d logged, all stored; queue %+v",
		a.fixes.seen.Load(), a.fixes.stored.Load(), s.Queue)
}
