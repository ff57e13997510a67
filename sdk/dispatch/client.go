package dispatch

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// applyBatch bounds the events applied to the outbox in one store transaction.
const applyBatch = 1000

// Config configures a Client.
type Config struct {
	// Transport is the connection: Brokers, the dispatch identity (CertFile/KeyFile or GetCertificate), CAFile
	// and tuning. ClientID defaults to the certificate's Common Name. Subscriptions, OnPublish and OnConnect
	// are set by the client. Required.
	Transport transport.Config
	// Topics gives the topic prefix. Zero: sdk.DefaultPrefix.
	Topics sdk.Topics
	// ShareGroup, when not empty, subscribes telemetry and events as "$share/<ShareGroup>/...", so the
	// processes of the group split the fleet's messages between them. Status is never shared.
	ShareGroup string
	// NoTelemetry leaves telemetry out of the subscriptions (a tool that only sends orders). Zero: subscribed.
	NoTelemetry bool

	// Verifier checks every message. Nil: one is made from CA, with Certificates added.
	Verifier *sdk.Verifier
	// CA is the fleet CA, for the verifier made when Verifier is nil.
	CA []*x509.Certificate
	// Certificates are fleet certificates added to that verifier (trucks' certificates, so their telemetry,
	// which carries none, verifies); ones that cannot sign (broker, expired) are skipped.
	Certificates []*x509.Certificate

	// Outbox, when set, gets the received and other events (Apply) and online statuses (Kick), and its
	// re-sender runs on the client's connection. Zero: no orders are sent.
	Outbox *Outbox
	// Handle receives every verified, de-duplicated update (see ConsumerConfig.Handle). Nil: none.
	Handle func(ctx context.Context, u Update) error
	// Logger receives the client's logs; nil: discard.
	Logger *slog.Logger
}

// Client is a dispatch process's connection: a consumer of the fleet's telemetry, events and status, and,
// with an Outbox, the sender of its orders.
type Client struct {
	cfg      Config
	conn     *transport.Conn
	consumer *Consumer
	log      *slog.Logger
	events   chan TruckEvent
}

// New checks cfg and prepares the client; like transport.New it does not touch the network.
func New(cfg Config) (*Client, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Topics.Validate(); err != nil {
		return nil, err
	}
	tc := cfg.Transport
	if tc.ClientID == "" && tc.CertFile != "" {
		cert, err := pki.LoadCertificate(tc.CertFile)
		if err != nil {
			return nil, fmt.Errorf("dispatch: %w", err)
		}
		id, err := pki.IdentityOf(cert)
		if err != nil {
			return nil, fmt.Errorf("dispatch: %s: %w", tc.CertFile, err)
		}
		tc.ClientID = id.Name
	}
	v := cfg.Verifier
	if v == nil {
		var err error
		v, err = sdk.NewVerifier(sdk.VerifierConfig{CA: cfg.CA, Topics: cfg.Topics, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("dispatch: %w", err)
		}
		for _, c := range cfg.Certificates {
			if !c.IsCA {
				_ = v.AddCertificate(c) // broker and expired certificates cannot sign: skipped
			}
		}
	}
	c := &Client{cfg: cfg, log: log, events: make(chan TruckEvent, 4*applyBatch)}
	var err error
	c.consumer, err = NewConsumer(ConsumerConfig{Verifier: v, Handle: c.handle, Logger: log})
	if err != nil {
		return nil, err
	}
	subs := Subscriptions(cfg.Topics, cfg.ShareGroup)
	if cfg.NoTelemetry {
		subs = subs[1:]
	}
	tc.Subscriptions = subs
	tc.OnPublish = c.consumer.HandleMessage
	if tc.Logger == nil {
		tc.Logger = log
	}
	c.conn, err = transport.New(tc)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Conn is the client's connection (States, Stats, Wait).
func (c *Client) Conn() *transport.Conn { return c.conn }

// Consumer is the client's consumer (Stats, Statuses).
func (c *Client) Consumer() *Consumer { return c.consumer }

// Run connects, consumes, and runs the outbox's re-sender, until ctx ends; it returns once every goroutine
// it started has ended.
func (c *Client) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	start := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	start(c.conn.Run)
	if c.cfg.Outbox != nil {
		start(func(ctx context.Context) error { return c.cfg.Outbox.Run(ctx, c.conn) })
		start(c.applyEvents)
	}
	wg.Wait()
	close(errs)
	return errors.Join(func() []error {
		var out []error
		for err := range errs {
			out = append(out, err)
		}
		return out
	}()...)
}

// handle passes updates to the outbox and to the caller.
func (c *Client) handle(ctx context.Context, u Update) error {
	if ob := c.cfg.Outbox; ob != nil {
		switch {
		case u.Event != nil:
			ev := u.Event.Event
			select {
			case c.events <- TruckEvent{Truck: u.Event.Truck, Event: &ev}:
			case <-ctx.Done():
				return ctx.Err()
			}
		case u.Status != nil && u.Status.Changed && u.Status.Status.State == sdk.StateOnline:
			ob.Kick(u.Status.Truck)
		}
	}
	if c.cfg.Handle != nil {
		return c.cfg.Handle(ctx, u)
	}
	return nil
}

// applyEvents writes events into the outbox in batches: paho delivers messages one at a time, and one store
// transaction per event would cap confirmations at the disk's fsync rate. An event acknowledged to the
// broker but not yet applied when the process dies is recovered by the re-sender: the truck answers a
// re-sent order with another received event.
func (c *Client) applyEvents(ctx context.Context) error {
	for {
		var batch []TruckEvent
		select {
		case <-ctx.Done():
			return nil
		case te := <-c.events:
			batch = append(batch, te)
		}
	drain:
		for len(batch) < applyBatch {
			select {
			case te := <-c.events:
				batch = append(batch, te)
			default:
				break drain
			}
		}
		for {
			err := c.cfg.Outbox.Apply(ctx, batch...)
			if err == nil || ctx.Err() != nil {
				break
			}
			c.log.Error("dispatch: applying events to the outbox failed; retrying", "events", len(batch), "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(c.cfg.Outbox.cfg.RetryDelay):
			}
		}
	}
}
