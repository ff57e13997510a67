package sdktest

import (
	"context"
	"sync/atomic"

	"github.com/waybill-iot/waybill/sdk/transport"
)

// CountingPublisher is a dispatch.Publisher for tests that need an order sender but no broker: every
// publish succeeds at once and is counted; Wait reports the link up (ctx's error once ctx has ended).
type CountingPublisher struct{ N atomic.Int32 }

func (p *CountingPublisher) Publish(context.Context, string, []byte, transport.PublishOptions) error {
	p.N.Add(1)
	return nil
}

func (p *CountingPublisher) Wait(ctx context.Context) error { return ctx.Err() }
