package transport_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/waybill-iot/waybill/sdk/transport"
)

// A truck's connection: certificate files renewed in place, retained online status with an offline will,
// orders acknowledged only once stored.
func ExampleConn() {
	const status = "fleet/trucks/truck-17/status"
	var c *transport.Conn
	c, err := transport.New(transport.Config{
		Brokers:  []string{"mqtts://broker.fleet.example:8883"},
		ClientID: "truck-17",
		CertFile: "/var/lib/waybill/truck.pem",
		KeyFile:  "/var/lib/waybill/truck.key",
		CAFile:   "/var/lib/waybill/fleet-ca.pem",
		Will:     &transport.Will{Topic: status, Payload: []byte("offline"), Retain: true},
		OnConnect: func(ctx context.Context, info transport.ConnectInfo) {
			_ = c.Publish(ctx, status, []byte("online"), transport.PublishOptions{QoS: 1, Retain: true})
		},
		Subscriptions: []transport.Subscription{{Topic: "fleet/trucks/truck-17/orders/#", QoS: 1}},
		OnPublish: func(ctx context.Context, m transport.Message) error {
			return nil // store the order durably first: a nil return acknowledges it
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = c.Run(ctx) }() // Run owns the connection until ctx ends
	defer func() { cancel(); wg.Wait() }()
	if err := c.Wait(ctx); err != nil {
		return // no link yet: the durable queue keeps the data
	}
	err = c.Publish(ctx, "fleet/trucks/truck-17/telemetry", []byte("batch"), transport.PublishOptions{QoS: 1})
	var refused *transport.PublishError
	switch {
	case errors.As(err, &refused):
		log.Printf("broker refused: %v", refused) // e.g. 135 not authorized: do not retry as is
	case err != nil:
		log.Printf("not acknowledged, retry later: %v", err)
	}
}

func ExamplePublishError() {
	err := error(&transport.PublishError{Topic: "fleet/trucks/truck-2/telemetry", ReasonCode: 135})
	var pe *transport.PublishError
	if errors.As(err, &pe) {
		fmt.Println(pe.ReasonCode, transport.ReasonName(pe.ReasonCode))
	}
	fmt.Println(err)
	// Output:
	// 135 not authorized
	// transport: broker refused publish to "fleet/trucks/truck-2/telemetry": reason code 135 (not authorized)
}
