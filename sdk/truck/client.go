package truck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/store"
)

// ClientConfig configures the truck's side of the SDK. Zero values are documented per field.
type ClientConfig struct {
	// Transport is the connection's configuration: Brokers, CertFile, KeyFile, CAFile, CRLFile and the
	// tuning fields. The client sets ClientID (the certificate's name), Will, Subscriptions, OnPublish and
	// OnConnect itself; Clock and Logger default to the ones below.
	Transport transport.Config
	// Store is the truck's durable queue and order book. Required.
	Store *store.Store
	// Topics gives the topic prefix. Zero: "fleet".
	Topics sdk.Topics
	// Clock is the time for signatures, verification and TLS checks. Nil = time.Now. A unit without a
	// real-time clock passes GPS time until its system clock is plausible.
	Clock func() time.Time
	// CRLCacheFile is where the newest fleet CRL received on Topics.CRL is kept (DER, replaced whole with
	// an fsync), so that after a restart the truck goes on refusing what it revoked before the broker sends
	// the list again. At start the verifier uses the newer (by CRL Number) of Transport.CRLFile and this
	// file; a missing or unusable cache is logged and skipped. Zero: nothing is kept, and after a restart
	// only Transport.CRLFile applies until the broker's retained CRL arrives. The agent sets it to
	// <data_dir>/crl.der.
	CRLCacheFile string
	// Health returns the agent's health summary for the status topic. Nil: status carries no summary.
	Health func() sdk.Health
	// StatusInterval is how often the retained status is refreshed while connected. Zero means 5 minutes.
	StatusInterval time.Duration
	// OnOrder is called after an order changed in the order book. It must not block for long.
	OnOrder func(Entry)
	// KeepClosed is how long a delivered, failed or cancelled order stays in the order book; Run prunes it
	// then (not before its expiry has passed: see Book.Prune). Zero: 30 days (DefaultKeepClosed).
	KeepClosed time.Duration
	// Uploader tuning: BatchFixes, MaxInFlight, PublishTimeout, RetryDelay (Store, Link, Signer, Topics and
	// Logger are set by the client).
	Uploader UploaderConfig
	// Logger; nil discards.
	Logger *slog.Logger
}

// DefaultReceiveMaximum is a truck's MQTT Receive Maximum (transport.Config.ReceiveMaximum): what reaches
// a truck (orders, receipts, dispatch status, the CRL) is rare and acknowledged at once, and the MQTT
// default of 65535 cost every connection a 512 kB channel in paho.
const DefaultReceiveMaximum = 16

// Client is a truck's connection to the fleet: it uploads the store, receives and stores orders, and keeps
// the retained status (online, with a health summary; offline by the MQTT will).
type Client struct {
	cfg      ClientConfig
	name     string
	signer   *RenewingSigner
	conn     *transport.Conn
	uploader *Uploader
	book     *Book
	status   string
	verifier *sdk.Verifier // orders, receipts and dispatch status
	crlTopic string        // the fleet CRL: applied to verifier
	crl      crlState

	dmu           sync.Mutex
	dispatchState map[string]sdk.State // last state of each dispatch process; guarded by dmu

	smu     sync.Mutex
	session time.Time // the will's time for the current connection: every status's Session; guarded by smu
}

// NewClient loads the truck's certificate and key (refusing a key file readable by others), builds the
// verifier from the fleet CA, and prepares the connection. It does not touch the network.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Store == nil {
		return nil, errors.New("truck: ClientConfig.Store is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = 5 * time.Minute
	}
	tc := cfg.Transport
	if tc.CertFile == "" || tc.KeyFile == "" || tc.CAFile == "" {
		return nil, errors.New("truck: Transport.CertFile, KeyFile and CAFile are required")
	}
	seq, err := NewStoreSequencer(context.Background(), cfg.Store, SequencerConfig{Clock: cfg.Clock, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	signer, err := NewRenewingSigner(tc.CertFile, tc.KeyFile, sdk.SignerConfig{Sequencer: seq, Clock: cfg.Clock}, cfg.Logger)
	if err != nil {
		return nil, err
	}
	id := signer.Identity()
	if id.Role != pki.RoleTruck {
		return nil, fmt.Errorf("truck: certificate %s is for a %s, not a truck", tc.CertFile, id.Role)
	}
	ca, err := pki.LoadCertificates(tc.CAFile)
	if err != nil {
		return nil, fmt.Errorf("truck: %w", err)
	}
	verifier, err := sdk.NewVerifier(sdk.VerifierConfig{CA: ca, Topics: cfg.Topics, Clock: cfg.Clock, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, name: id.Name, signer: signer, verifier: verifier, crlTopic: cfg.Topics.CRL(),
		dispatchState: map[string]sdk.State{}}
	if err := c.loadCRLs(tc.CRLFile, cfg.CRLCacheFile); err != nil {
		return nil, err
	}
	if c.book, err = NewBook(BookConfig{Store: cfg.Store, Verifier: verifier, Truck: id.Name, Clock: cfg.Clock,
		OnChange: cfg.OnOrder, KeepClosed: cfg.KeepClosed, Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	if c.status, err = cfg.Topics.Status(id.Name); err != nil {
		return nil, err
	}
	orders, err := cfg.Topics.TruckOrdersFilter(id.Name)
	if err != nil {
		return nil, err
	}
	receipts, err := cfg.Topics.Receipts(id.Name)
	if err != nil {
		return nil, err
	}
	tc.ClientID = id.Name
	if tc.ReceiveMaximum == 0 {
		tc.ReceiveMaximum = DefaultReceiveMaximum
	}
	// Orders are what a truck connects for: a connection on which the broker refuses them (a revoked
	// truck let in before the broker reloaded its CRL) is dropped and tried again with backoff.
	tc.Subscriptions = []transport.Subscription{{Topic: orders, QoS: 1, Required: true}, {Topic: receipts, QoS: 1},
		{Topic: cfg.Topics.DispatchStatusFilter(), QoS: 1}, {Topic: c.crlTopic, QoS: 1}}
	tc.OnPublish = c.onPublish
	tc.OnConnect = c.onConnect
	tc.Will = &transport.Will{Topic: c.status, Retain: true, Refresh: func() ([]byte, error) {
		// Before each connection: pick up a renewed certificate (TLS reads the same files), then sign the will.
		if _, err := c.signer.Reload(); err != nil {
			c.cfg.Logger.Error("truck: renewed certificate not usable for signing; keeping the old one", "err", err)
		}
		return c.signStatus(sdk.StateOffline)
	}}
	if tc.Clock == nil {
		tc.Clock = cfg.Clock
	}
	if tc.Logger == nil {
		tc.Logger = cfg.Logger
	}
	if c.conn, err = transport.New(tc); err != nil {
		return nil, err
	}
	ucfg := cfg.Uploader
	ucfg.Store, ucfg.Link, ucfg.Signer, ucfg.Topics, ucfg.Logger = cfg.Store, c.conn, signer, cfg.Topics, cfg.Logger
	if c.uploader, err = NewUploader(ucfg); err != nil {
		return nil, err
	}
	return c, nil
}

// Name is the truck's identity.
func (c *Client) Name() string { return c.name }

// Book is the truck's order book.
func (c *Client) Book() *Book { return c.book }

// Conn is the connection, for its state and statistics.
func (c *Client) Conn() *transport.Conn { return c.conn }

// Uploader is the store's uploader, for its statistics.
func (c *Client) Uploader() *Uploader { return c.uploader }

// Run connects, uploads, receives orders, refreshes the status and prunes the order book until ctx ends,
// then disconnects (the broker publishes the offline will) and returns after every goroutine it started has
// finished.
func (c *Client) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, run := range []func(context.Context) error{c.conn.Run, c.uploader.Run, c.refreshStatus, c.book.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && ctx.Err() == nil {
				errs <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when ctx ended
}

// signStatus signs a status of the current connection. The will (offline), signed before each connection
// attempt, starts a session; the online statuses that follow carry its time, so that dispatch orders the
// will after them although it was signed first (sdk.Status.Newer).
func (c *Client) signStatus(s sdk.State) ([]byte, error) {
	st := sdk.Status{State: s, Time: c.cfg.Clock().UTC().Truncate(time.Millisecond)}
	c.smu.Lock()
	if s == sdk.StateOffline {
		c.session = st.Time
	}
	st.Session = c.session
	c.smu.Unlock()
	if s == sdk.StateOnline && c.cfg.Health != nil {
		h := c.cfg.Health()
		st.Health = &h
	}
	return c.signer.SignStatus(&st)
}

func (c *Client) publishStatus(ctx context.Context) {
	payload, err := c.signStatus(sdk.StateOnline)
	if err != nil {
		c.cfg.Logger.Error("truck: sign status", "err", err)
		return
	}
	if err := c.conn.Publish(ctx, c.status, payload, transport.PublishOptions{QoS: 1, Retain: true}); err != nil &&
		ctx.Err() == nil {
		c.cfg.Logger.Warn("truck: publish status", "err", err)
	}
}

func (c *Client) onConnect(ctx context.Context, _ transport.ConnectInfo) { c.publishStatus(ctx) }

func (c *Client) refreshStatus(ctx context.Context) error {
	t := time.NewTicker(c.cfg.StatusInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			// Also a chance to pick up a renewed certificate whose files were replaced while a connection
			// was being made (the connection reads them at each handshake, signing at each connection).
			if _, err := c.signer.Reload(); err != nil {
				c.cfg.Logger.Warn("truck: renewed certificate not usable for signing yet", "err", err)
			}
			if c.conn.Connected() {
				c.publishStatus(ctx)
			}
		}
	}
}

// onPublish routes what dispatch sends: orders to the book, receipts to the uploader, dispatch status (a
// dispatch process coming online sends what waits for a receipt at once), and the fleet CRL to the
// verifier.
func (c *Client) onPublish(ctx context.Context, m transport.Message) error {
	if m.Topic == c.crlTopic {
		c.handleCRL(m.Payload, m.Retained)
		return nil
	}
	tp, err := c.cfg.Topics.Parse(m.Topic)
	if err != nil || tp.Kind == sdk.KindOrders {
		return c.book.Handle(ctx, m) // the book refuses and counts anything malformed
	}
	msg, err := c.verifier.Verify(ctx, m.Topic, m.Payload)
	switch {
	case errors.Is(err, sdk.ReasonDuplicate):
		return nil // applied before
	case err != nil:
		var rej *sdk.RejectError
		if !errors.As(err, &rej) {
			return err // the replay state failed: let the broker deliver it again
		}
		c.cfg.Logger.Warn("truck: message from dispatch refused", "topic", m.Topic, "err", err)
		return nil
	case msg.Receipt != nil:
		if _, err := c.uploader.HandleReceipt(ctx, msg.Receipt); err != nil {
			// The records stay queued and are sent again; dispatch receipts them again.
			c.cfg.Logger.Warn("truck: applying a receipt failed; its records will be sent again", "err", err)
		}
	case msg.Status != nil && tp.Kind == sdk.KindDispatchStatus:
		if c.dispatchCameOnline(tp.Dispatch, msg.Status.State, m.Retained) {
			n := c.uploader.DispatchOnline()
			c.cfg.Logger.Info("truck: dispatch is online; sending what waits for a receipt now",
				"dispatch", tp.Dispatch, "records", n)
		}
	}
	return nil
}

// maxDispatchStates bounds the dispatch identities whose last state the client remembers.
const maxDispatchStates = 64

// dispatchCameOnline remembers a dispatch process's state and reports whether it just came online: a live
// online status (it connected now), or a retained one when it was last seen offline (it came back while
// this truck was away).
func (c *Client) dispatchCameOnline(name string, st sdk.State, retained bool) bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	prev, known := c.dispatchState[name]
	if !known && len(c.dispatchState) >= maxDispatchStates {
		clear(c.dispatchState) // a fleet has a handful of dispatch identities; forgetting costs a re-send
	}
	c.dispatchState[name] = st
	return st == sdk.StateOnline && (!retained || (known && prev == sdk.StateOffline))
}
