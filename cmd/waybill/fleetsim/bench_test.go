package fleetsim

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// BenchmarkFleet (in `make bench`): 1,000, 5,000 and 10,000 trucks on one Mosquitto on this machine, each
// driving 6 minutes with the broker restarted after 1 minute and dispatch stalled for 5 minutes from the
// second minute (at 5,000 trucks the stall the issue asks about), then draining for up to 10 minutes.
// Reported: the whole-fleet reconnect time after the restart, failed connection attempts, lost records
// (must be 0), still queued after the drain, and per 1,000 trucks the memory (peak) and CPU time of the
// broker, of dispatch (this process: with the trucks in it up to 5,000 trucks, then it equals the
// simulator's memory and the trucks' CPU) and of the trucks (the simulator's memory: this process and its
// workers'). The trucks start at 500 a second and reconnect within the
// agent's default 30 s window. The workers are automatic: 10,000 trucks do not fit one process under a
// 20,000 open-file limit, so they run in two workers (this test binary again, see TestMain).
func BenchmarkFleet(b *testing.B) {
	sdktest.MosquittoPath(b)
	for _, n := range []int{1000, 5000, 10000} {
		b.Run(fmt.Sprintf("trucks=%d", n), func(b *testing.B) {
			for range b.N {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
				var progress, logs sdktest.SyncBuffer
				sum, err := Run(ctx, Config{Dir: b.TempDir(), Trucks: n, Duration: 6 * time.Minute, Drain: 10 * time.Minute,
					Dispatch: true, Confirm: true, RestartBrokerAt: time.Minute,
					StallDispatch: 5 * time.Minute, StallDispatchAt: 61 * time.Second, Progress: &progress,
					Logger: slog.New(fleetsimOnly{slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})})})
				cancel()
				if err != nil {
					b.Fatalf("%v\nprogress (tail):\n%s\nlogs (tail):\n%s", err, progress.Tail(20), logs.Tail(20))
				}
				js, _ := json.Marshal(sum)
				b.Logf("summary: %s\nprogress (tail):\n%s\nlogs (tail):\n%s", js, progress.Tail(5), logs.Tail(10))
				if sum.Lost != 0 {
					// Still queued after the drain may include records dispatch received whose receipt had
					// not reached the truck yet: those count twice, and lost goes below zero.
					b.Errorf("%d records lost (%d still queued after the drain)", sum.Lost, sum.StillQueued)
				}
				per := float64(n) / 1000
				b.ReportMetric(sum.ReconnectAll, "reconnect-s")
				b.ReportMetric(float64(sum.ConnectFailures), "connect-failures")
				b.ReportMetric(float64(sum.Lost), "lost")
				b.ReportMetric(float64(sum.StillQueued), "still-queued")
				b.ReportMetric(sum.ConnectP99, "connect-p99-s")
				b.ReportMetric(sum.NewestFixLatencyP99, "newest-fix-p99-s")
				b.ReportMetric(float64(sum.BrokerRSS)/per/(1<<20), "broker-MB/1000trucks")
				b.ReportMetric(float64(sum.DispatchRSS)/per/(1<<20), "dispatch-MB/1000trucks")
				b.ReportMetric(float64(sum.SimRSS)/per/(1<<20), "sim-MB/1000trucks")
				b.ReportMetric(sum.BrokerCPU/per, "broker-cpu-s/1000trucks")
				b.ReportMetric(sum.DispatchCPU/per, "dispatch-cpu-s/1000trucks")
				b.ReportMetric(sum.TrucksCPU/per, "trucks-cpu-s/1000trucks")
			}
		})
	}
}

// fleetsimOnly passes on the simulator's own warnings ("fleetsim: ..."), not its thousands of clients'.
type fleetsimOnly struct{ slog.Handler }

func (h fleetsimOnly) Handle(ctx context.Context, r slog.Record) error {
	if !strings.HasPrefix(r.Message, "fleetsim:") {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h fleetsimOnly) WithAttrs(as []slog.Attr) slog.Handler {
	return fleetsimOnly{h.Handler.WithAttrs(as)}
}
func (h fleetsimOnly) WithGroup(g string) slog.Handler { return fleetsimOnly{h.Handler.WithGroup(g)} }
