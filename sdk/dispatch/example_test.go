package dispatch_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/pki"
)

// The outbox stores each order revision durably before it returns; a dispatch.Client (or Outbox.Run on a
// connection) sends it until the truck's signed received event confirms it.
func ExampleOutbox() {
	dir, _ := os.MkdirTemp("", "outbox-example")
	defer os.RemoveAll(dir)
	p, err := pki.Init(pki.Config{Dir: filepath.Join(dir, "pki")}, pki.CAOptions{Fleet: "example"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := p.Issue(pki.RoleDispatch, "office", pki.IssueOptions{}); err != nil {
		log.Fatal(err)
	}
	cert, _ := pki.LoadCertificate(p.CertPath("office"))
	key, _ := pki.LoadPrivateKey(p.KeyPath("office"))

	ob, err := dispatch.NewOutbox(dispatch.OutboxConfig{Path: filepath.Join(dir, "outbox.db"), Certificate: cert, Key: key})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	e, err := ob.Create(ctx, sdk.Order{ID: "o-1001", Truck: "truck-17", Expires: time.Now().Add(48 * time.Hour),
		Recipient: "A. Jones", Address: "1 Quay Street", Lat: 51.5072, Lon: -0.1276, RadiusM: 80})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.Order.ID, "revision", e.Order.Revision, e.State)

	e, _ = ob.Cancel(ctx, "truck-17", "o-1001", "customer moved")
	fmt.Println(e.Order.ID, "revision", e.Order.Revision, e.Order.Status, e.State)

	list, _ := ob.List(ctx)
	fmt.Println(len(list), "order waiting for the truck:", list[0].Unconfirmed())
	// Output:
	// o-1001 revision 1 pending
	// o-1001 revision 2 cancelled pending
	// 1 order waiting for the truck: true
}
