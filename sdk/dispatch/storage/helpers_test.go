package storage_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/embedded"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/pgtest"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/postgres"
	"github.com/waybill-iot/waybill/sdk/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type identity struct {
	cert *x509.Certificate
	key  crypto.Signer
	ca   *x509.Certificate
}

func newIdentity(t *testing.T) identity {
	t.Helper()
	o := sdktest.NewOffice(t)
	return identity{cert: o.Certificate, key: o.Key, ca: o.CA}
}

// engine opens a fresh store of one engine.
type engine struct {
	name string
	open func(t *testing.T, id identity, clock func() time.Time) storage.Store
}

// engines are the two engines; the PostgreSQL cluster is started once per test that uses it.
func engines(parent *testing.T) []engine {
	var once sync.Once
	var cluster *pgtest.Cluster
	return []engine{
		{"embedded", func(t *testing.T, id identity, clock func() time.Time) storage.Store {
			st, err := embedded.Open(embedded.Options{Dir: t.TempDir(), Outbox: dispatch.OutboxConfig{
				Certificate: id.cert, Key: id.key, Clock: clock, Poll: 20 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}},
		{"postgres", func(t *testing.T, id identity, clock func() time.Time) storage.Store {
			once.Do(func() { cluster = pgtest.Start(parent) }) // stopped when the whole test ends
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			st, err := postgres.Open(ctx, postgres.Options{DSN: cluster.Database(t), Certificate: id.cert, Key: id.key,
				Clock: clock, Poll: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}},
	}
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testOrder(id, truck string, now time.Time) sdk.Order {
	return sdk.Order{ID: id, Truck: truck, Expires: now.Add(48 * time.Hour), Recipient: "A. Jones",
		Address: "1 Quay St", Lat: 51.5, Lon: -0.1, RadiusM: 80}
}

func fixAt(truck string, epoch sdk.Epoch, seq uint64, t time.Time) dispatch.Fix {
	return dispatch.Fix{Truck: truck, Epoch: epoch, Seq: seq, Fix: sdk.Fix{Time: t, Lat: 51.5 + float64(seq)*1e-4,
		Lon: -0.1, Speed: 12.5, Course: 90.5, Sats: 9, HDOP: 0.9, Mode: 3, Alt: 12.3,
		Has: sdk.FixAlt | sdk.FixSpeed | sdk.FixCourse | sdk.FixSats | sdk.FixHDOP}}
}

func eventFor(e dispatch.Entry, kind sdk.EventKind, epoch sdk.Epoch, seq uint64, at time.Time) dispatch.Update {
	return dispatch.Update{Event: &dispatch.Event{Truck: e.Order.Truck, Sent: at, Event: sdk.Event{Kind: kind,
		Epoch: epoch, RecordSeq: seq, Time: at, OrderID: e.Order.ID, Revision: e.Order.Revision, OrderHash: e.Hash,
		Via: sdk.ViaButton}}}
}

// recorder is a dispatch.Publisher that keeps what it was given, always connected.
type recorder struct {
	mu   sync.Mutex
	msgs []transport.Message
	fail bool
}

func (r *recorder) Publish(ctx context.Context, topic string, payload []byte, _ transport.PublishOptions) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return context.DeadlineExceeded
	}
	r.msgs = append(r.msgs, transport.Message{Topic: topic, Payload: payload})
	return nil
}

func (r *recorder) Wait(ctx context.Context) error { return ctx.Err() }

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
