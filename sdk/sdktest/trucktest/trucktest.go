package trucktest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/sdk/truck"
	"github.com/waybill-iot/waybill/store"
)

// Options change the truck from its test defaults.
type Options struct {
	// Broker is the host:port the truck connects to (e.g. a faultproxy in front of the broker). Zero: the
	// broker's own address.
	Broker string
	// StatusInterval is how often the truck refreshes its status. Zero: the client's default (5 minutes).
	StatusInterval time.Duration
	// Health makes the truck's online status carry a health summary as the agent's does: its store (epoch,
	// origin, since) and queue depth. Zero: no summary.
	Health bool
}

// Run starts the truck client until the test ends (then it is stopped, waited for, and its store
// closed). Its retries are fast and its receipt timeouts short (2 s, at most 4 s), so that records handed
// to a dispatch that stopped or died are sent again within a test: a delay, not a loss.
func Run(t testing.TB, b *sdktest.Broker, cl sdktest.Client, o Options) (*truck.Client, *store.Store) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "queue.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := o.Broker
	if addr == "" {
		addr = b.Addr
	}
	var health func() sdk.Health
	if o.Health {
		health = func() sdk.Health {
			or := st.Origin()
			s := st.Stats()
			return sdk.Health{StoreEpoch: sdk.EpochOf(st.Epoch()), StoreOrigin: or.Kind.String(), StoreSince: or.At,
				QueueDepth: int(s.Critical.Records + s.Normal.Records)}
		}
	}
	c, err := truck.NewClient(truck.ClientConfig{Store: st, StatusInterval: o.StatusInterval, Health: health,
		Transport: transport.Config{Brokers: []string{"mqtts://" + addr}, CertFile: cl.CertFile, KeyFile: cl.KeyFile,
			CAFile: cl.CAFile, BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond},
		Uploader: truck.UploaderConfig{RetryDelay: 100 * time.Millisecond, ReceiptTimeout: 2 * time.Second,
			ReceiptTimeoutMax: 4 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }() // owned: waited in Cleanup
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("truck Run: %v", err)
		}
		st.Close()
	})
	return c, st
}

// Deliver plays the driver: each order of ids that the truck holds and done does not list yet is
// delivered (via the screen) and marked in done. It returns how many done lists.
func Deliver(t testing.TB, tr *truck.Client, done map[string]bool, ids ...string) int {
	t.Helper()
	for _, id := range ids {
		if done[id] {
			continue
		}
		if _, ok, _ := tr.Book().Get(id); !ok {
			continue
		}
		if _, err := tr.Book().Act(context.Background(), truck.Action{OrderID: id, Kind: sdk.EventDelivered,
			Via: sdk.ViaScreen}); err != nil {
			t.Fatal(err)
		}
		done[id] = true
	}
	return len(done)
}
