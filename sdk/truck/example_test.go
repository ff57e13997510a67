package truck_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/sdk/truck"
	"github.com/waybill-iot/waybill/store"
)

// A truck-side program: queue fixes durably, upload them, receive orders and confirm a delivery. (Compiled,
// not run: it needs a broker and the truck's certificate.)
func ExampleClient() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()

	st, err := store.Open("/var/lib/waybill/queue.db", store.Options{MaxBytes: 32 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	client, err := truck.NewClient(truck.ClientConfig{
		Transport: transport.Config{
			Brokers:  []string{"mqtts://mqtt.fleet.example:8883"},
			CertFile: "/etc/waybill/truck.crt", KeyFile: "/etc/waybill/truck.key", CAFile: "/etc/waybill/ca.crt",
		},
		Store:   st,
		OnOrder: func(e truck.Entry) { log.Printf("order %s rev %d: %s", e.Order.ID, e.Order.Revision, e.State) },
	})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		// A fix: on disk (fsync'd) when Append returns; uploaded in a batch later, acked on PUBACK.
		e, _ := truck.EncodeFix(sdk.Fix{Time: time.Now().UTC(), Lat: 52.52, Lon: 13.405, Mode: 3})
		if _, err := st.Append(ctx, e); err != nil {
			log.Print(err)
		}
		// The driver confirms an order: a signed proof of delivery in the critical lane.
		if _, err := client.Book().Act(ctx, truck.Action{OrderID: "o-1001", Kind: sdk.EventDelivered, Via: sdk.ViaButton}); err != nil {
			log.Print(err)
		}
	}()
	if err := client.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
