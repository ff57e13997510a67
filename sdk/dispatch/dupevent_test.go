package dispatch

import (
	"context"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// commitAll is a Record that keeps nothing: the test is about what the consumer does after the commit.
type commitAll struct{}

func (commitAll) Commit(context.Context, Update) error { return nil }

// The duplicate memory is bounded: past 64 runs of record numbers in one epoch it merges the gaps between
// them, and an event re-sent late into such a gap is taken for a duplicate. It is still committed and
// receipted (so the truck deletes it), so it must reach the outbox all the same: the outbox's Apply is
// idempotent. Without that, the order it answers stayed "received" for ever.
func TestEventTakenForDuplicateStillReachesOutbox(t *testing.T) {
	p := sdktest.NewPKI(t, "truck-1")
	signer := sdktest.Client{CertFile: p.CertPath("truck-1"), KeyFile: p.KeyPath("truck-1")}.Signer(t)
	v, err := sdk.NewVerifier(sdk.VerifierConfig{CA: []*x509.Certificate{p.CACert()}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var receipted, applied, handled []uint64
	c, err := NewConsumer(ConsumerConfig{Verifier: v, Record: commitAll{},
		Handle: func(_ context.Context, u Update) error {
			mu.Lock()
			defer mu.Unlock()
			if u.Event != nil {
				handled = append(handled, u.Event.Event.RecordSeq)
			}
			return nil
		},
		committed: func(_ string, _ sdk.Epoch, seqs []uint64) {
			mu.Lock()
			defer mu.Unlock()
			receipted = append(receipted, seqs...)
		},
		duplicateEvent: func(_ context.Context, u Update) error {
			mu.Lock()
			defer mu.Unlock()
			applied = append(applied, u.Event.Event.RecordSeq)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	var topics sdk.Topics
	topic, _ := topics.Events("truck-1")
	epoch := sdk.Epoch{1, 2, 3, 4, 5, 6, 7, 8}
	send := func(seq uint64) {
		t.Helper()
		payload, err := signer.SignEvent(&sdk.Event{Kind: sdk.EventDelivered, Epoch: epoch, RecordSeq: seq,
			Time: time.Now(), OrderID: "o-1", Revision: 1, Via: sdk.ViaButton})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.HandleMessage(context.Background(), transport.Message{Topic: topic, Payload: payload, QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	for seq := uint64(2); seq <= 200; seq += 2 { // 100 events, every other record number (fixes between)
		send(seq)
	}
	send(3) // late: never seen, but inside the merged gaps
	mu.Lock()
	defer mu.Unlock()
	if receipted[len(receipted)-1] != 3 {
		t.Fatalf("the late event was not receipted: %v", receipted[len(receipted)-3:])
	}
	if len(handled) != 100 {
		t.Fatalf("%d events handed over, want 100: the late one must be taken for a duplicate here (the memory's "+
			"bound changed? make the test's runs outnumber it)", len(handled))
	}
	if len(applied) != 1 || applied[0] != 3 {
		t.Errorf("the late event taken for a duplicate was receipted but applied %v, want [3]", applied)
	}
}
