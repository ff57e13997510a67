package postgres_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/pgtest"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/postgres"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// publisher records the orders it was given; hang makes the publishes of topics containing it wait
// until ctx ends (a process whose broker link stalls mid-publish).
type publisher struct {
	hang string
	mu   sync.Mutex
	sent map[string]int // order id -> publishes (counted at the start); guarded by mu
}

func (p *publisher) Publish(ctx context.Context, topic string, _ []byte, _ transport.PublishOptions) error {
	p.mu.Lock()
	p.sent[topic[strings.LastIndex(topic, "/")+1:]]++
	p.mu.Unlock()
	if p.hang != "" && strings.Contains(topic, p.hang) {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (p *publisher) Wait(context.Context) error { return nil }

func (p *publisher) count(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent[id]
}

// A truck coming online brings forward its orders waiting in backoff, not one that another process has
// claimed and is still publishing (its lease): that one would go out twice.
func TestOnlineKeepsLeases(t *testing.T) {
	dsn := pgtest.Start(t).Database(t)
	office := sdktest.NewOffice(t)
	openStore := func(o postgres.Options) *postgres.Store {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		o.DSN, o.Certificate, o.Key, o.Poll = dsn, office.Certificate, office.Key, 20*time.Millisecond
		st, err := postgres.Open(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	a := openStore(postgres.Options{PublishTimeout: 20 * time.Second, RetryDelay: time.Second}) // a 21 s lease
	b := openStore(postgres.Options{OnlineGrace: -1})
	ctx := context.Background()
	create := func(id string) {
		if _, err := b.Create(ctx, sdk.Order{ID: id, Truck: "truck-1", Expires: time.Now().Add(time.Hour),
			Address: "1 Quay St", Lat: 51.5, Lon: -0.1, RadiusM: 50}); err != nil {
			t.Fatal(err)
		}
	}
	run := func(st *postgres.Store, p *publisher) {
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- st.RunSender(sctx, p) }() // owned: waited in Cleanup
		t.Cleanup(func() { cancel(); <-done })
	}
	// A sends o-waiting, which then waits out its backoff (30 s); then o-leased, whose publish hangs under
	// A's lease.
	pa := &publisher{hang: "o-leased", sent: map[string]int{}}
	run(a, pa)
	create("o-waiting")
	sdktest.WaitFor(t, 10*time.Second, "A sending o-waiting", func() bool {
		e, err := b.Order(ctx, "truck-1", "o-waiting")
		return err == nil && e.Sends == 1
	})
	create("o-leased")
	sdktest.WaitFor(t, 10*time.Second, "A publishing o-leased", func() bool { return pa.count("o-leased") == 1 })

	// The truck comes online at B, which then sends what is due.
	if _, err := b.NoteStatus(ctx, dispatch.Status{Truck: "truck-1", Changed: true,
		Status: sdk.Status{State: sdk.StateOnline, Time: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	pb := &publisher{sent: map[string]int{}}
	run(b, pb)
	sdktest.WaitFor(t, 10*time.Second, "B sending o-waiting, brought forward by the truck coming online", func() bool {
		return pb.count("o-waiting") == 1
	})
	time.Sleep(500 * time.Millisecond) // many of B's rounds (Poll 20 ms)
	if n := pb.count("o-leased"); n != 0 {
		t.Errorf("B sent o-leased %d times while A's lease on it ran (A still publishing it)", n)
	}
}
