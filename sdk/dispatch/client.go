package dispatch

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// Config configures a Client.
type Config struct {
	// Transport is the connection: Brokers, the dispatch identity (CertFile/KeyFile or GetCertificate), CAFile
	// and tuning. ClientID defaults to the certificate's Common Name. Subscriptions, OnPublish and OnConnect
	// are set by the client. Required.
	Transport transport.Config
	// Topics gives the topic prefix. Zero: sdk.DefaultPrefix.
	Topics sdk.Topics
	// ShareGroup, when not empty, subscribes telemetry and events as "$share/<ShareGroup>/...", so the
	// processes of the group split the fleet's messages between them. Status is never shared. Mosquitto
	// lets any client join a group it can name, and drops the messages its round robin gives a member that
	// may not read them (sdk/brokerconf/doc.go): receipts make that a delay, not a loss, but use a name
	// nobody can guess (RandomShareGroup) and keep it with dispatch's credentials.
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

	// Record, when set, is dispatch's durable record: every verified update is committed to it before Handle
	// and before the PUBLISH is acknowledged to the broker, and only then is it receipted to the truck with a
	// signed sdk.Receipt, which lets the truck delete it. With a Record the client also publishes its own
	// retained, signed online status on Topics.DispatchStatus(<its name>) after every connect, with a signed
	// offline status as its MQTT will; trucks re-send unreceipted records when it turns online.
	//
	// Nil: no receipts and no dispatch status. A passive observer (a second view of the fleet, a debugging
	// tool) must leave Record nil: a receipt makes the truck delete the record, and only the process that
	// stores records for the office may say it did.
	Record Record
	// Signer signs receipts and the dispatch status. Nil: made from Transport.CertFile and KeyFile. Used only
	// with a Record.
	Signer *sdk.Signer
	// ReceiptDelay is how long committed records wait so that one receipt covers many. Zero:
	// DefaultReceiptDelay (30 s); a truck with 1,000 records pending is receipted at once.
	ReceiptDelay time.Duration

	// Logger receives the client's logs; nil: discard.
	Logger *slog.Logger
}

// Client is a dispatch process's connection: a consumer of the fleet's telemetry, events and status, and,
// with an Outbox, the sender of its orders.
type Client struct {
	cfg       Config
	conn      *transport.Conn
	consumer  *Consumer
	log       *slog.Logger
	signer    *sdk.Signer  // with a Record
	receipts  *receipter   // with a Record
	statusTop string       // with a Record: our own status topic
	session   atomic.Int64 // Unix ms of the current connection's will: our statuses' Session
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
	c := &Client{cfg: cfg, log: log}
	ccfg := ConsumerConfig{Verifier: v, Handle: c.handle, Logger: log, Record: cfg.Record}
	if cfg.Record != nil {
		if err := c.setupRecord(&tc); err != nil {
			return nil, err
		}
		ccfg.committed = c.receipts.add
		ccfg.duplicateEvent = c.applyEvent
	}
	var err error
	c.consumer, err = NewConsumer(ccfg)
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
	if c.receipts != nil {
		c.receipts.conn = c.conn
	}
	return c, nil
}

// setupRecord prepares receipts and the dispatch status: the signer, the will and OnConnect.
func (c *Client) setupRecord(tc *transport.Config) error {
	c.signer = c.cfg.Signer
	if c.signer == nil {
		if tc.CertFile == "" {
			return errors.New("dispatch: a Record needs a Signer (or Transport.CertFile and KeyFile) for receipts")
		}
		pair, err := pki.LoadKeyPair(tc.CertFile, tc.KeyFile) // refuses a key file others can read
		if err != nil {
			return fmt.Errorf("dispatch: receipts signer: %w", err)
		}
		if c.signer, err = sdk.NewSignerTLS(pair, sdk.SignerConfig{}); err != nil {
			return fmt.Errorf("dispatch: %w", err)
		}
	}
	id := c.signer.Identity()
	if id.Role != pki.RoleDispatch {
		return fmt.Errorf("dispatch: receipts are signed by a dispatch identity, %q is a %s", id.Name, id.Role)
	}
	var err error
	if c.statusTop, err = c.cfg.Topics.DispatchStatus(id.Name); err != nil {
		return err
	}
	c.receipts = newReceipter(c.signer, c.cfg.Topics, nil, c.cfg.ReceiptDelay, c.log)
	// Signed anew before every connection attempt: receivers check its time and sequence number.
	// The will starts a session that our online status names (sdk.Status.Newer).
	tc.Will = &transport.Will{Topic: c.statusTop, Retain: true, Refresh: func() ([]byte, error) {
		now := time.Now().UTC().Truncate(time.Millisecond)
		c.session.Store(now.UnixMilli())
		return c.signer.SignStatus(&sdk.Status{State: sdk.StateOffline, Time: now, Session: now})
	}}
	tc.OnConnect = c.onConnect
	return nil
}

// onConnect publishes our retained online status; trucks learn our certificate from it and re-send what we
// have not receipted.
func (c *Client) onConnect(ctx context.Context, _ transport.ConnectInfo) {
	p, err := c.signer.SignStatus(&sdk.Status{State: sdk.StateOnline, Time: time.Now().UTC(),
		Session: time.UnixMilli(c.session.Load()).UTC()})
	if err == nil {
		pctx, cancel := context.WithTimeout(ctx, receiptTimeout)
		err = c.conn.Publish(pctx, c.statusTop, p, transport.PublishOptions{QoS: 1, Retain: true})
		cancel()
	}
	if err != nil && ctx.Err() == nil {
		c.log.Error("dispatch: publishing our online status failed", "topic", c.statusTop, "err", err)
	}
}

// ReceiptsSent is the number of receipts published (0 without a Record).
func (c *Client) ReceiptsSent() uint64 {
	if c.receipts == nil {
		return 0
	}
	return c.receipts.Sent()
}

// Conn is the client's connection (States, Stats, Wait).
func (c *Client) Conn() *transport.Conn { return c.conn }

// Consumer is the client's consumer (Stats, Statuses).
func (c *Client) Consumer() *Consumer { return c.consumer }

// Run connects, consumes, sends receipts and runs the outbox's re-sender, until ctx ends; it returns once
// every goroutine it started has ended. At the end, pending receipts get one last chance (bounded) before
// the connection closes.
func (c *Client) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The connection outlives the others by a little, so the last receipts can go out on it.
	connCtx, stopConn := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConn()
	errs := make(chan error, 3)
	var connWG, wg sync.WaitGroup
	connWG.Add(1)
	go func() {
		defer connWG.Done()
		if err := c.conn.Run(connCtx); err != nil {
			errs <- err
		}
		cancel()
	}()
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
	if c.cfg.Outbox != nil {
		start(func(ctx context.Context) error { return c.cfg.Outbox.Run(ctx, c.conn) })
	}
	if c.receipts != nil {
		start(c.receipts.run)
	}
	<-ctx.Done()
	wg.Wait()
	stopConn()
	connWG.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// applyEvent applies an event to the outbox, if there is one. Apply is idempotent, so an event the
// consumer's bounded duplicate memory takes for a repeat is applied again rather than receipted unseen.
func (c *Client) applyEvent(ctx context.Context, u Update) error {
	if c.cfg.Outbox == nil {
		return nil
	}
	ev := u.Event.Event
	if err := c.cfg.Outbox.Apply(ctx, TruckEvent{Truck: u.Event.Truck, Event: &ev}); err != nil {
		return fmt.Errorf("dispatch: applying an event to the outbox: %w", err)
	}
	return nil
}

// handle passes updates to the outbox and to the caller. An event is applied to the outbox before the
// message is acknowledged: with a Record the truck deletes a receipted event and never sends it again, so
// an event applied only after the acknowledgement would be lost to the outbox by a crash in between. It
// costs one outbox transaction (an fsync) per event, batching being impossible on paho's one-at-a-time
// delivery: BenchmarkOutboxApplyOne measured 0.38 ms with an open Store and 0.92 ms with OutboxConfig.Path
// (open and close per event), about 2,600 and 1,100 events/s, far above the rate events arrive (a few
// per order).
func (c *Client) handle(ctx context.Context, u Update) error {
	switch {
	case u.Event != nil:
		if err := c.applyEvent(ctx, u); err != nil {
			return err
		}
	case u.Status != nil && u.Status.Status.State == sdk.StateOnline:
		if c.cfg.Outbox != nil {
			// Before Kick: a truck whose store is new gets its open orders at once, not after the grace.
			ch, err := c.cfg.Outbox.NoteStore(ctx, u.Status.Truck, u.Status.Status.Health)
			if err != nil {
				return fmt.Errorf("dispatch: recording a truck's store epoch in the outbox: %w", err)
			}
			if ch != nil {
				st := *u.Status
				st.NewStore = ch
				u.Status = &st
			}
		}
		if !u.Status.Changed {
			break
		}
		if c.cfg.Outbox != nil {
			c.cfg.Outbox.Kick(u.Status.Truck)
		}
		if c.receipts != nil {
			c.receipts.online(u.Status.Truck)
		}
	}
	if c.cfg.Handle != nil {
		return c.cfg.Handle(ctx, u)
	}
	return nil
}

// RandomShareGroup returns a share group name nobody can guess ("dispatch-" and 24 hex digits): a certificate
// that cannot name dispatch's group cannot join it and take its share of the fleet's messages.
func RandomShareGroup() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "dispatch-" + hex.EncodeToString(b[:])
}
