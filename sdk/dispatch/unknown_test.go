package dispatch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// TestIdentityUnknownToTheBroker: a dispatch identity issued but not yet told to the broker (`pki issue`
// without --broker) is let in by the TLS listener (same CA) and refused its subscriptions by the access
// rules. The client does not sit on that connection as if it were up: it is not connected, its state says
// why and what to do, and once the broker learns the identity (`waybill broker sync`) its next attempt
// connects, without a restart.
func TestIdentityUnknownToTheBroker(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{})
	if _, err := b.PKI.Issue(pki.RoleDispatch, "office-new", pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	cl := b.ClientFiles("office-new") // no b.Sync: the broker does not know it
	c := runClient(t, b, cl, Config{}, func(tc *transport.Config) { tc.BackoffMax = 300 * time.Millisecond })
	sdktest.WaitFor(t, 20*time.Second, "a connection refused its subscriptions", func() bool {
		st := c.Conn().Current()
		return st.Err != nil && strings.Contains(st.Err.Error(), "waybill broker sync")
	})
	for range 10 {
		if c.Conn().Connected() {
			t.Fatalf("dispatch reported connected with its subscriptions refused: %+v", c.Conn().Current())
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Sync()
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	if err := c.Conn().Wait(wctx); err != nil {
		t.Fatalf("not connected after the broker learned the identity: %v (%v)", err, c.Conn().Current().Err)
	}
	if err := c.Conn().Current().Info.SubscribeErr; err != nil {
		t.Errorf("connected with a refused subscription: %v", err)
	}
}
