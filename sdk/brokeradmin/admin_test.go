package brokeradmin_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/waybill-iot/waybill/sdk/brokeradmin"
	"github.com/waybill-iot/waybill/sdk/brokerconf"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSyncPagesAndRemoves: a fleet larger than one page of the plugin's lists is created, then shrunk;
// every client is seen (no page skipped), the removed ones are gone, the rest keep their rights.
func TestSyncPagesAndRemoves(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{})
	a := b.Admin()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var ids []pki.Identity
	for i := range 250 { // more than one page of the plugin's lists
		ids = append(ids, pki.Identity{Name: fmt.Sprintf("truck-%04d", i), Role: pki.RoleTruck})
	}
	ids = append(ids, pki.Identity{Name: "office", Role: pki.RoleDispatch})
	res, err := a.Sync(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Created) != len(ids) || len(res.Removed) != 0 {
		t.Fatalf("first sync: created %d, removed %v", len(res.Created), res.Removed)
	}
	clients, err := a.Clients(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(clients) != len(ids)+1 { // and the administrator
		t.Fatalf("broker lists %d clients, want %d", len(clients), len(ids)+1)
	}
	// Unchanged: nothing to do.
	if res, err = a.Sync(ctx, ids); err != nil || len(res.Created)+len(res.Corrected)+len(res.Removed) != 0 {
		t.Fatalf("second sync changed %+v (%v)", res, err)
	}
	// A role whose rules differ is corrected.
	if _, err := a.Sync(ctx, ids[:10]); err != nil {
		t.Fatal(err)
	}
	clients, err = a.Clients(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range clients {
		names = append(names, c.Username)
	}
	slices.Sort(names)
	want := []string{pki.AdminName}
	for _, id := range ids[:10] {
		want = append(want, id.Name)
	}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("after shrinking: %v, want %v", names, want)
	}
	if err := a.Remove(ctx, "truck-0003", "never-known"); err != nil {
		t.Fatal(err)
	}
	if err := a.Remove(ctx, pki.AdminName); err == nil {
		t.Fatal("removed the administrator")
	}
}

// TestCorrectsChangedRules: a role whose ACLs were changed behind our back is put right.
func TestCorrectsChangedRules(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{})
	b.Truck("truck-a")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids, err := brokerconf.Identities(b.PKI)
	if err != nil {
		t.Fatal(err)
	}
	// The rules of another prefix are "wrong" for this broker's fleet: Sync with them, then back.
	cfg, err := brokeradmin.FromPKI(b.PKI, b.Addr, brokerconf.ACL{Prefix: "other"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := brokeradmin.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := other.Sync(ctx, ids)
	other.Close() // one administrator session at a time: the client id is the name
	if err != nil || !slices.Equal(res.Corrected, []string{"truck-a"}) {
		t.Fatalf("sync with other rules: %+v %v", res, err)
	}
	a := b.Admin()
	if res, err := a.Sync(ctx, ids); err != nil || !slices.Equal(res.Corrected, []string{"truck-a"}) {
		t.Fatalf("sync back: %+v %v", res, err)
	}
}
