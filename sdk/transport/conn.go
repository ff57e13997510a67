package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	paholog "github.com/eclipse/paho.golang/paho/log"
	"github.com/eclipse/paho.golang/paho/session"
	"github.com/eclipse/paho.golang/paho/session/state"
)

// packetTimeout is paho's per-request timeout. Publish is bounded by the caller's context instead: paho's
// timeout also covers the wait for a free slot in the broker's receive window, which with many publishes
// queued behind a small window on a slow link is legitimately long.
const packetTimeout = 24 * time.Hour

// State is the link's state, delivered on States.
type State struct {
	Connected bool
	// Info describes the connection while Connected.
	Info ConnectInfo
	// Err is why the link is down: the error that ended the connection or the last failed attempt. nil while
	// connected and after a clean stop.
	Err error
	// Closed is set once Run has ended; no further states follow.
	Closed bool
	// Since is when this state began, by Config.Clock.
	Since time.Time
}

// Stats are counters since New.
type Stats struct {
	// WireBytesWritten and WireBytesRead count bytes at the TCP socket, under TLS: handshakes, TLS record
	// overhead and MQTT framing included.
	WireBytesWritten, WireBytesRead uint64
	Connects                        uint64 // successful connections (CONNACK success)
	ConnectFailures                 uint64 // failed attempts, one per broker tried
	TLSResumptions                  uint64 // handshakes that resumed a TLS session
	HandlerErrors                   uint64 // OnPublish calls that returned an error (or panicked); those messages were not acknowledged
	StatesDropped                   uint64 // states discarded because the States reader fell behind
}

// Conn is one MQTT v5 client connection, kept up by Run. Its methods are safe for concurrent use.
type Conn struct {
	cfg          Config
	brokers      []brokerURL
	sessionCache tls.ClientSessionCache
	session      *sessionState
	states       chan State
	stopped      chan struct{} // closed when Run ends

	wireRead, wireWritten                 atomic.Uint64
	connects, connectFailures, resumed    atomic.Uint64
	handlerErrors, statesDropped, penalty atomic.Uint64
	// refusals counts the connections in a row dropped because a required subscription was refused
	// (Config.RequireSubscriptions); it backs off the next attempt as penalty does.
	refusals               atomic.Uint64
	maxPacket              atomic.Uint32 // broker's Maximum Packet Size, 0: no limit
	everConnected, running atomic.Bool

	wg sync.WaitGroup // OnConnect goroutines

	// orderMu is held by Submit from its call until its PUBLISH is on the wire, so publishes leave in the
	// order they were submitted; written is the channel the link closes when that happens.
	orderMu sync.Mutex
	written atomic.Pointer[chan struct{}]

	// mu guards the fields below it.
	mu         sync.Mutex
	runCtx     context.Context
	cm         *autopaho.ConnectionManager
	cur        *link // the newest network connection (paho keeps at most one open)
	sessCtx    context.Context
	sessCancel context.CancelCauseFunc
	state      State
	up         chan struct{} // closed while connected
	closed     bool
}

// New checks cfg and returns a Conn. It does not touch the network (a truck boots in dead zones): Run connects.
func New(cfg Config) (*Conn, error) {
	cfg, brokers, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Conn{
		cfg:          cfg,
		brokers:      brokers,
		sessionCache: tls.NewLRUClientSessionCache(8),
		states:       make(chan State, 32),
		stopped:      make(chan struct{}),
		up:           make(chan struct{}),
	}
	c.session = &sessionState{State: state.NewInMemory(), onConnack: c.onConnack}
	c.sessCtx, c.sessCancel = context.WithCancelCause(context.Background())
	c.state = State{Since: cfg.Clock()}
	return c, nil
}

// Run connects and keeps the connection up until ctx ends, then disconnects cleanly (bounded by
// Config.DisconnectTimeout) and returns nil once every goroutine it started has ended. It returns an error
// only if it cannot start. Run may be called once.
func (c *Conn) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("transport: Run called more than once")
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer c.finish()

	urls := make([]*url.URL, len(c.brokers))
	for i, b := range c.brokers {
		urls[i] = b.url
	}
	warn := pahoLogger{l: c.cfg.Logger, level: slog.LevelWarn, source: "paho"}
	var dbg paholog.Logger = paholog.NOOPLogger{}
	if c.cfg.LogPahoDebug {
		dbg = pahoLogger{l: c.cfg.Logger, level: slog.LevelDebug, source: "paho"}
	}
	acfg := autopaho.ClientConfig{
		ServerUrls:                    urls,
		KeepAlive:                     uint16(seconds(c.cfg.KeepAlive, 65535)),
		CleanStartOnInitialConnection: c.cfg.CleanStart,
		SessionExpiryInterval:         uint32(seconds(c.cfg.SessionExpiry, 0xFFFFFFFE)),
		ReconnectBackoff:              c.backoff,
		ConnectTimeout:                c.cfg.ConnectTimeout,
		AttemptConnection:             c.attempt,
		OnConnectionUp:                c.onConnectionUp,
		OnConnectionDown:              c.onConnectionDown,
		OnConnectError:                c.onConnectError,
		Debug:                         dbg,
		Errors:                        warn,
		PahoDebug:                     dbg,
		PahoErrors:                    warn,
		ConnectUsername:               c.cfg.Username,
		ConnectPassword:               c.cfg.Password,
		ClientConfig: paho.ClientConfig{
			ClientID:                   c.cfg.ClientID,
			Session:                    c.session,
			OnPublishReceived:          []func(paho.PublishReceived) (bool, error){c.onPublish},
			PacketTimeout:              packetTimeout,
			EnableManualAcknowledgment: true,
			PingHandler:                &pinger{debug: dbg},
		},
	}
	if w := c.cfg.Will; w != nil {
		acfg.WillMessage = &paho.WillMessage{Topic: w.Topic, Payload: w.Payload, Retain: w.Retain, QoS: 1}
		acfg.WillProperties = &paho.WillProperties{}
		if d := uint32(seconds(w.Delay, 0xFFFFFFFF)); d > 0 {
			acfg.WillProperties.WillDelayInterval = &d
		}
		// A clean stop still means we are gone: reason 0x04 asks the broker to publish the will.
		acfg.DisconnectPacketBuilder = func() *paho.Disconnect { return &paho.Disconnect{ReasonCode: 0x04} }
	}
	acfg.ConnectPacketBuilder = func(pc *paho.Connect, _ *url.URL) (*paho.Connect, error) {
		if n := c.cfg.ReceiveMaximum; n > 0 {
			if pc.Properties == nil {
				pc.Properties = &paho.ConnectProperties{}
			}
			pc.Properties.ReceiveMaximum = &n
		}
		if w := c.cfg.Will; w != nil && w.Refresh != nil {
			payload, err := w.Refresh()
			if err != nil {
				return nil, fmt.Errorf("transport: refresh will: %w", err)
			}
			if pc.WillMessage != nil {
				pc.WillMessage.Payload = payload
			}
		}
		return pc, nil
	}

	c.mu.Lock()
	c.runCtx = runCtx
	c.mu.Unlock()
	cm, err := autopaho.NewConnection(runCtx, acfg)
	if err != nil {
		return fmt.Errorf("transport: %w", err)
	}
	c.mu.Lock()
	c.cm = cm
	c.mu.Unlock()

	<-runCtx.Done()
	// autopaho now writes DISCONNECT and closes. Over a black-holed link that write could block for good,
	// so bound it, and close the link outright if paho is still not done after the timeout.
	c.mu.Lock()
	cur := c.cur
	c.mu.Unlock()
	if cur != nil {
		_ = cur.SetWriteDeadline(time.Now().Add(c.cfg.DisconnectTimeout))
	}
	select {
	case <-cm.Done():
	case <-time.After(c.cfg.DisconnectTimeout):
		c.mu.Lock()
		cur = c.cur
		c.mu.Unlock()
		if cur != nil {
			_ = cur.closeWith(errors.New("disconnect timed out"))
		}
		<-cm.Done()
	}
	return nil
}

// finish runs when Run returns: waits for OnConnect goroutines, fails waiting publishes, sends the last state.
func (c *Conn) finish() {
	c.mu.Lock()
	if cur := c.cur; cur != nil {
		_ = cur.closeWith(ErrClosed) // normally closed already by paho; this ends the link's context
	}
	c.mu.Unlock()
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	select {
	case <-c.up:
		c.up = make(chan struct{}) // Wait now reports ErrClosed
	default:
	}
	c.sessCancel(ErrClosed)
	c.emitLocked(State{Closed: true, Since: c.cfg.Clock()})
	close(c.stopped)
}

// attempt is autopaho's AttemptConnection: it dials the broker u refers to.
func (c *Conn) attempt(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
	for _, b := range c.brokers {
		if b.url == u {
			return c.dial(ctx, b)
		}
	}
	return nil, fmt.Errorf("transport: unknown broker URL %s", u)
}

// linkParent is the context new links derive from: Run's.
func (c *Conn) linkParent() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.runCtx == nil {
		return context.Background()
	}
	return c.runCtx
}

// onConnack runs inside paho's Connect, before any publish can use the new connection.
func (c *Conn) onConnack(ca *packets.Connack) {
	var maxPacket uint32
	if ca.Properties != nil && ca.Properties.MaximumPacketSize != nil {
		maxPacket = *ca.Properties.MaximumPacketSize
	}
	c.maxPacket.Store(maxPacket)
	if ca.SessionPresent {
		return
	}
	// paho is about to forget every unacknowledged publish without answering their callers: fail them now.
	c.mu.Lock()
	old := c.sessCancel
	c.sessCtx, c.sessCancel = context.WithCancelCause(context.Background())
	c.mu.Unlock()
	old(ErrSessionLost)
}

func (c *Conn) onConnectionUp(cm *autopaho.ConnectionManager, ca *paho.Connack) {
	c.connects.Add(1)
	c.everConnected.Store(true)
	c.mu.Lock()
	l := c.cur
	c.mu.Unlock()
	info := l.info
	info.SessionPresent = ca.SessionPresent
	info.ReceiveMaximum = 65535 // MQTT default when the property is absent
	if ca.Properties != nil && ca.Properties.ReceiveMaximum != nil {
		info.ReceiveMaximum = *ca.Properties.ReceiveMaximum
	}
	c.cfg.Logger.Info("connected", "broker", info.Broker, "session_present", info.SessionPresent,
		"receive_maximum", info.ReceiveMaximum, "tls_resumed", info.TLSResumed)
	// autopaho's callback must not block; subscribing and OnConnect wait for the broker.
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.afterConnect(l, cm, info)
	}()
}

func (c *Conn) afterConnect(l *link, cm *autopaho.ConnectionManager, info ConnectInfo) {
	if len(c.cfg.Subscriptions) > 0 {
		s := &paho.Subscribe{}
		for _, sub := range c.cfg.Subscriptions {
			s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: sub.Topic, QoS: sub.QoS})
		}
		ctx, cancel := context.WithTimeout(l.ctx, c.cfg.ConnectTimeout)
		suback, err := cm.Subscribe(ctx, s)
		cancel()
		if err != nil {
			var required bool
			required, err = c.refused(suback, err)
			info.SubscribeErr = err
			if required {
				n := c.refusals.Add(1)
				c.cfg.Logger.Error("subscribe failed; dropping the connection: this client cannot work without it "+
					"(a revoked identity, or access rules not updated for it yet)", "err", err, "refusals_in_a_row", n)
				_ = l.closeWith(err)
				return
			}
			c.cfg.Logger.Error("subscribe failed", "err", err)
		}
		c.refusals.Store(0) // what is required was granted
	}
	c.mu.Lock()
	if l.ctx.Err() != nil { // already gone again: onConnectionDown has reported it
		c.mu.Unlock()
		return
	}
	c.emitLocked(State{Connected: true, Info: info, Since: c.cfg.Clock()})
	close(c.up)
	c.mu.Unlock()
	if c.cfg.OnConnect != nil {
		c.cfg.OnConnect(l.ctx, info)
	}
}

func (c *Conn) onConnectionDown() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	var reason error
	if c.cur != nil {
		reason = c.cur.Reason()
	}
	if reason == nil || errors.Is(reason, io.EOF) {
		reason = errors.New("connection closed by the broker or the network")
	}
	c.cfg.Logger.Warn("disconnected", "err", reason)
	c.setDownLocked(reason)
	return true // keep reconnecting
}

func (c *Conn) onConnectError(err error) {
	c.connectFailures.Add(1)
	if be := (*brokerError)(nil); errors.As(err, &be) {
		err = be // says which broker already, and what to check
	}
	c.cfg.Logger.Warn("connection attempt failed", "err", err)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setDownLocked(err)
}

// setDownLocked records a down state. c.mu must be held.
func (c *Conn) setDownLocked(err error) {
	if c.closed {
		return
	}
	select {
	case <-c.up:
		c.up = make(chan struct{})
	default:
	}
	c.emitLocked(State{Err: err, Since: c.cfg.Clock()})
}

// emitLocked records s and sends it, dropping the oldest queued state if the reader is behind. c.mu must be held.
func (c *Conn) emitLocked(s State) {
	c.state = s
	for {
		select {
		case c.states <- s:
			return
		default:
		}
		select {
		case <-c.states:
			c.statesDropped.Add(1)
		default:
		}
	}
}

// States returns the channel of link states: connected, disconnected with the reason, failed attempts, and a
// final Closed state when Run ends. It is the same channel on every call, meant for one reader; if the reader
// falls behind, the oldest states are dropped and the newest is kept.
func (c *Conn) States() <-chan State { return c.states }

// Current returns the latest state.
func (c *Conn) Current() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Connected reports whether the link is up (connected and subscribed).
func (c *Conn) Connected() bool { return c.Current().Connected }

// Wait returns nil once the link is up (connected and subscribed), ctx's error if ctx ends first, or
// ErrClosed if Run has ended.
func (c *Conn) Wait(ctx context.Context) error {
	c.mu.Lock()
	up := c.up
	c.mu.Unlock()
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.stopped:
		return ErrClosed
	}
}

// Stats returns the counters.
func (c *Conn) Stats() Stats {
	return Stats{
		WireBytesWritten: c.wireWritten.Load(),
		WireBytesRead:    c.wireRead.Load(),
		Connects:         c.connects.Load(),
		ConnectFailures:  c.connectFailures.Load(),
		TLSResumptions:   c.resumed.Load(),
		HandlerErrors:    c.handlerErrors.Load(),
		StatesDropped:    c.statesDropped.Load(),
	}
}

// Publish sends one message. With QoS 1 it returns after the broker's PUBACK; a PUBACK with a reason code
// >= 128 (135: not authorized by the ACL, ...) is a *PublishError. It does not wait for the link: when the
// link is down it returns ErrNotConnected at once (wait with Wait; the caller's durable queue is the offline
// buffer). Many Publish calls may run concurrently: up to the broker's receive maximum are in flight at once,
// the others wait in paho for a slot. If the link drops after the message was sent, Publish keeps waiting:
// paho sends it again on the next connection and the PUBACK answers this call, unless the broker lost our
// session (ErrSessionLost) or Run ends (ErrClosed). Bound the wait with ctx; a message whose ctx ended after
// it was sent may still be delivered.
func (c *Conn) Publish(ctx context.Context, topic string, payload []byte, o PublishOptions) error {
	p, err := c.Submit(ctx, topic, payload, o)
	if err != nil {
		return err
	}
	return p.Wait(ctx)
}

// Pending is a submitted publish waiting for its acknowledgement.
type Pending struct {
	done chan struct{}
	err  error // set before done is closed
}

// Done is closed when the publish has finished; Err then says how.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Err is the publish's result once Done is closed: nil after a successful PUBACK, else as for Publish.
func (p *Pending) Err() error {
	<-p.done
	return p.err
}

// Wait waits for the result, or for ctx.
func (p *Pending) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Submit sends one message and returns once its PUBLISH packet is written to the connection (waiting for a
// slot in the broker's receive window first), without waiting for the PUBACK: the Pending reports that.
// Calls are served one at a time, so messages submitted one after the other leave in that order and, on
// one connection, reach subscribers in that order. ctx bounds the whole publish, acknowledgement included.
// An error from Submit means nothing was sent (ErrNotConnected, ErrTooLarge, ...).
func (c *Conn) Submit(ctx context.Context, topic string, payload []byte, o PublishOptions) (*Pending, error) {
	if topic == "" {
		return nil, errors.New("transport: publish with an empty topic")
	}
	if o.QoS > 2 {
		return nil, fmt.Errorf("transport: publish QoS %d: want 0, 1 or 2", o.QoS)
	}
	// A packet over the broker's limit would make it drop the connection, and paho would send the packet
	// again after every reconnect: refuse it here.
	if limit := c.maxPacket.Load(); limit > 0 {
		if size := publishSize(topic, len(payload), o.QoS); size > uint64(limit) {
			return nil, fmt.Errorf("%w: publish to %q is %d bytes, the broker accepts at most %d", ErrTooLarge, topic,
				size, limit)
		}
	}
	c.orderMu.Lock()
	defer c.orderMu.Unlock()
	written := make(chan struct{})
	c.written.Store(&written)
	defer c.written.CompareAndSwap(&written, nil)
	p := &Pending{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = c.publish(ctx, topic, payload, o)
	}()
	select {
	case <-written:
		return p, nil
	case <-p.done:
		if p.err != nil && (errors.Is(p.err, ErrNotConnected) || errors.Is(p.err, ErrClosed)) {
			return nil, p.err // refused before anything was sent
		}
		return p, nil
	case <-ctx.Done():
		return p, nil // p reports ctx's error; the message may or may not have been sent
	}
}

// publishWritten is the link's signal that a first-time PUBLISH is on the wire.
func (c *Conn) publishWritten() {
	if ch := c.written.Swap(nil); ch != nil {
		close(*ch)
	}
}

// publish does the work of one publish: hand it to paho and wait for the acknowledgement.
func (c *Conn) publish(ctx context.Context, topic string, payload []byte, o PublishOptions) error {
	c.mu.Lock()
	cm, sess, closed := c.cm, c.sessCtx, c.closed
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if cm == nil {
		return ErrNotConnected
	}
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(sess, func() { cancel(context.Cause(sess)) })
	defer stop()

	resp, err := cm.Publish(pctx, &paho.Publish{QoS: o.QoS, Retain: o.Retain, Topic: topic, Payload: payload})
	if resp != nil && resp.ReasonCode >= 0x80 { // paho returns a failed PUBREC without an error
		pe := &PublishError{Topic: topic, ReasonCode: resp.ReasonCode}
		if resp.Properties != nil {
			pe.Reason = resp.Properties.ReasonString
		}
		return pe
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, autopaho.ConnectionDownError), errors.Is(err, session.ErrNoConnection):
		return ErrNotConnected
	case ctx.Err() != nil:
		return fmt.Errorf("transport: publish to %q: %w", topic, ctx.Err())
	}
	if cause := context.Cause(pctx); errors.Is(cause, ErrSessionLost) || errors.Is(cause, ErrClosed) {
		return cause
	}
	return fmt.Errorf("transport: publish to %q: %w", topic, err)
}

// publishSize is the size on the wire of a PUBLISH without properties.
func publishSize(topic string, payload int, qos byte) uint64 {
	remaining := uint64(2+len(topic)) + 1 + uint64(payload) // topic, empty properties, payload
	if qos > 0 {
		remaining += 2 // packet identifier
	}
	header := uint64(2)
	for r := remaining; r >= 128; r /= 128 {
		header++
	}
	return header + remaining
}

// onPublish is paho's OnPublishReceived handler (set in ClientConfig, so it survives reconnects, unlike
// AddOnPublishReceived: paho #326). It acknowledges the PUBLISH only if OnPublish returns nil.
func (c *Conn) onPublish(pr paho.PublishReceived) (bool, error) {
	p := pr.Packet
	if c.cfg.OnPublish == nil {
		c.cfg.Logger.Warn("message received without an OnPublish handler; not acknowledged", "topic", p.Topic)
		return true, nil
	}
	c.mu.Lock()
	l := c.cur
	c.mu.Unlock()
	// While paho delivers, its connection is the newest: autopaho dials again only after this client's
	// delivery goroutine has returned.
	ctx := context.Background()
	if l != nil {
		ctx = l.ctx
	}
	err := c.callHandler(ctx, Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retained: p.Retain})
	if err != nil {
		c.handlerErrors.Add(1)
		if ctx.Err() != nil {
			// The connection ended under the handler (a broker restart): the messages paho still holds fail
			// one by one on the dead link. That is no reason to reconnect later; counting each as a handler
			// failure kept a dispatch process away from a restarted broker for a minute with 200 trucks.
			c.cfg.Logger.Debug("message not acknowledged: the connection ended", "topic", p.Topic, "err", err)
			return true, nil
		}
		c.penalty.Add(1)
		c.cfg.Logger.Error("message handler failed: not acknowledged; dropping the connection so the broker "+
			"delivers it again", "topic", p.Topic, "err", err)
		// Acknowledgements go out in order, so every later one would wait behind this message until the
		// connection ends anyway; ending it now gets the message redelivered.
		if l != nil {
			_ = l.closeWith(fmt.Errorf("message handler failed for %q: %w", p.Topic, err))
		}
		return true, nil
	}
	c.penalty.Store(0)
	if err := pr.Client.Ack(p); err != nil && !errors.Is(err, paho.ErrPacketNotFound) {
		c.cfg.Logger.Warn("acknowledging message", "topic", p.Topic, "err", err)
	}
	return true, nil
}

// callHandler runs OnPublish, turning a panic into an error: a panic on paho's goroutine would kill the process.
func (c *Conn) callHandler(ctx context.Context, m Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return c.cfg.OnPublish(ctx, m)
}

// refused names the refused subscription, a Required one first, and says whether a Required one was
// refused. Without a SUBACK (a timeout, a lost link) nothing says which: it counts as Required if any is.
func (c *Conn) refused(suback *paho.Suback, err error) (required bool, _ error) {
	if suback == nil {
		return slices.ContainsFunc(c.cfg.Subscriptions, func(s Subscription) bool { return s.Required }), err
	}
	var first error
	for i, code := range suback.Reasons {
		if code < 0x80 || i >= len(c.cfg.Subscriptions) {
			continue
		}
		sub := c.cfg.Subscriptions[i]
		e := fmt.Errorf("transport: subscription to %q refused: reason code %d (%s)", sub.Topic, code, ReasonName(code))
		if sub.Required {
			if code == 0x87 {
				e = fmt.Errorf("%w: the broker's access rules refuse this identity its own topics: it was revoked, "+
					"or the broker does not know it yet (on the PKI host: waybill broker sync --broker URL)", e)
			}
			return true, e
		}
		if first == nil {
			first = e
		}
	}
	if first == nil {
		return false, err
	}
	return false, first
}

// sessionState is paho's in-memory session state with a hook on CONNACK.
type sessionState struct {
	*state.State
	onConnack func(*packets.Connack)
}

func (s *sessionState) ConAckReceived(w io.Writer, cp *packets.Connect, ca *packets.Connack) error {
	s.onConnack(ca)
	return s.State.ConAckReceived(w, cp, ca)
}
