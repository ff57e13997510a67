package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// Defaults for ConsumerConfig's zero values.
const (
	DefaultMaxRanges = 64 // remembered runs of record sequence numbers per truck and epoch
	DefaultMaxEpochs = 4  // remembered store epochs per truck
)

// Fix is one verified fix from a truck, identified for good by (Truck, Epoch, Seq).
type Fix struct {
	Truck string    `json:"truck"`
	Epoch sdk.Epoch `json:"epoch"`
	Seq   uint64    `json:"seq"`
	Fix   sdk.Fix   `json:"fix"`
}

// Event is one verified delivery event from a truck.
type Event struct {
	Truck string    `json:"truck"`
	ID    sdk.MsgID `json:"id"`   // (epoch, record seq): the same event re-sent keeps it
	Sent  time.Time `json:"sent"` // when the truck signed this copy
	Event sdk.Event `json:"event"`
}

// Status is a verified status message from a truck.
type Status struct {
	Truck    string     `json:"truck"`
	Status   sdk.Status `json:"status"`
	Changed  bool       `json:"changed"`  // the state differs from the last one known (or none was)
	Retained bool       `json:"retained"` // delivered from the broker's retained store, not live
	// NewStore is set by a Client with an Outbox when this status shows the truck's store is new (another
	// store epoch than the one recorded): the truck lost or salvaged its store, and the outbox sends its open
	// orders again (Outbox.NoteStore). Nil otherwise, and always in what a Record commits.
	NewStore *StoreChange `json:"new_store,omitempty"`
}

// Rejection is a message the verifier refused.
type Rejection struct {
	Topic  string     `json:"topic"`
	Sender string     `json:"sender,omitempty"` // the envelope's sender, when it decoded
	Reason sdk.Reason `json:"reason"`
	Err    error      `json:"-"`
}

// Update is what the consumer hands over: exactly one field is set.
type Update struct {
	Fixes     []Fix      `json:"fixes,omitempty"` // the new fixes of one telemetry message, duplicates removed
	Event     *Event     `json:"event,omitempty"`
	Status    *Status    `json:"status,omitempty"`
	Rejection *Rejection `json:"rejection,omitempty"`
	// CRL is the fleet CRL the verifier applies from now on: a newer one arrived on Topics.CRL. It is
	// handed to Handle only, never committed to a Record.
	CRL *sdk.CRLInfo `json:"crl,omitempty"`
}

// ConsumerConfig configures a Consumer. Verifier is required.
type ConsumerConfig struct {
	// Verifier checks every message. Give it the fleet CA and, so that telemetry (which carries no
	// certificate) verifies from the first message, every issued truck certificate (AddCertificate).
	Verifier *sdk.Verifier
	// Handle receives each verified, de-duplicated update, one at a time. Returning an error leaves the
	// message unacknowledged (the broker delivers it again) and its records unmarked. Nil: updates are only
	// counted.
	Handle func(ctx context.Context, u Update) error
	// Record, when set, gets every verified update before Handle: a telemetry message's fixes (duplicates
	// included: Commit is idempotent), an event (duplicates included) and each new status. A failing Commit
	// leaves the message unacknowledged, like a failing Handle. Nil: nothing is committed.
	Record Record
	// MaxRanges and MaxEpochs bound the duplicate memory per truck (see doc.go). Zero: DefaultMaxRanges
	// (64) and DefaultMaxEpochs (4).
	MaxRanges, MaxEpochs int
	// Logger gets rejections (Warn). Nil: discard.
	Logger *slog.Logger

	// committed, set by Client, learns the records that are committed and handled (receipts).
	committed committedFunc
	// duplicateEvent, set by Client, gets an event the duplicate memory took for one, when a Record is set:
	// it is receipted, so the outbox must have seen it (Apply is idempotent).
	duplicateEvent func(ctx context.Context, u Update) error
}

// ConsumerStats counts what a Consumer did.
type ConsumerStats struct {
	Fixes           uint64                `json:"fixes"`            // new fixes handed over
	DuplicateFixes  uint64                `json:"duplicate_fixes"`  // fixes dropped as seen before
	Events          uint64                `json:"events"`           // new events handed over
	DuplicateEvents uint64                `json:"duplicate_events"` // events dropped as seen before
	Statuses        uint64                `json:"statuses"`         // status messages handed over
	CommitErrors    uint64                `json:"commit_errors"`    // failed Record commits (messages left unacknowledged)
	CRLsApplied     uint64                `json:"crls_applied"`     // fleet CRLs newer than the one in use, applied
	CRLsNotNewer    uint64                `json:"crls_not_newer"`   // fleet CRLs no newer than the one in use (the retained one at each connection): ignored
	CRLsRefused     uint64                `json:"crls_refused"`     // fleet CRLs refused: not a CRL of the fleet CA
	Rejected        map[sdk.Reason]uint64 `json:"rejected"`         // refused messages by reason
}

// Consumer verifies messages from trucks, drops duplicates and hands over typed updates. Use
// HandleMessage as a transport.Config.OnPublish handler (Client does). It is safe for concurrent use; updates
// are handed over one at a time.
type Consumer struct {
	cfg ConsumerConfig
	log *slog.Logger

	// mu guards the fields below it, and serialises Handle calls.
	mu       sync.Mutex
	fixes    *dedup
	events   *dedup
	statuses map[string]Status
	stats    ConsumerStats

	crlTopic string // the fleet CRL, applied to the verifier
}

// NewConsumer checks cfg.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	if cfg.Verifier == nil {
		return nil, errors.New("dispatch: consumer needs a Verifier")
	}
	if cfg.MaxRanges <= 0 {
		cfg.MaxRanges = DefaultMaxRanges
	}
	if cfg.MaxEpochs <= 0 {
		cfg.MaxEpochs = DefaultMaxEpochs
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Consumer{cfg: cfg, log: log, fixes: newDedup(cfg.MaxRanges, cfg.MaxEpochs),
		events: newDedup(cfg.MaxRanges, cfg.MaxEpochs), statuses: map[string]Status{},
		stats: ConsumerStats{Rejected: map[sdk.Reason]uint64{}}, crlTopic: cfg.Verifier.Topics().CRL()}, nil
}

// Subscriptions returns the subscriptions a consumer needs: telemetry and events of every truck (shared in
// group when it is not empty, so that the processes of the group split them), status of every truck and the
// fleet CRL (never shared: every process needs to know who is online, and what is revoked).
func Subscriptions(t sdk.Topics, group string) []transport.Subscription {
	share := ""
	if group != "" {
		share = "$share/" + group + "/"
	}
	// Telemetry and events are what dispatch connects for: a connection on which the broker refuses them
	// (an identity it does not know yet, or a revoked one) is dropped and tried again with backoff, so the
	// office is not "up" while it receives nothing, and picks up `waybill broker sync` at its next attempt.
	return []transport.Subscription{
		{Topic: share + t.FleetFilter(sdk.KindTelemetry), QoS: 1, Required: true},
		{Topic: share + t.FleetFilter(sdk.KindEvents), QoS: 1, Required: true},
		{Topic: t.FleetFilter(sdk.KindStatus), QoS: 1},
		{Topic: t.CRL(), QoS: 1},
	}
}

// HandleMessage verifies one message, commits it to the Record (if any) and hands over what is new. It
// returns nil (acknowledge) for rejected and duplicate messages too: they must not come back forever. It
// returns an error only when Commit, Handle or the verifier's replay state fails, so the broker delivers the
// message again. A message on the fleet CRL topic goes to the verifier (UpdateCRL): from then on messages
// signed by a certificate it revokes are refused (sdk.ReasonRevoked).
func (c *Consumer) HandleMessage(ctx context.Context, m transport.Message) error {
	if m.Topic == c.crlTopic {
		return c.handleCRL(ctx, m.Payload)
	}
	msg, err := c.cfg.Verifier.Verify(ctx, m.Topic, m.Payload)
	dup := errors.Is(err, sdk.ReasonDuplicate)
	var rej *sdk.RejectError
	if err != nil && !dup {
		if !errors.As(err, &rej) {
			return err // the replay state failed: not the message's fault
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.stats.Rejected[rej.Reason]++
		return c.handle(ctx, Update{Rejection: &Rejection{Topic: m.Topic, Sender: rej.Sender, Reason: rej.Reason, Err: rej}})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	truck := msg.Signer.Name
	switch {
	case msg.Telemetry != nil:
		t := msg.Telemetry
		var fresh []Fix
		all := make([]Fix, 0, len(t.Fixes))
		for _, f := range t.Fixes {
			fx := Fix{Truck: truck, Epoch: t.Epoch, Seq: f.Seq, Fix: f.Fix}
			all = append(all, fx)
			if c.fixes.seen(truck, t.Epoch, f.Seq) {
				c.stats.DuplicateFixes++
				continue
			}
			fresh = append(fresh, fx)
		}
		// Duplicates are committed again (a no-op for the Record) so that they can be receipted: the duplicate
		// memory is lossy (see seqSet), a Record is not.
		if err := c.commit(ctx, Update{Fixes: all}); err != nil {
			return err
		}
		if len(fresh) > 0 {
			if err := c.handle(ctx, Update{Fixes: fresh}); err != nil {
				return err
			}
			for _, f := range fresh {
				c.fixes.mark(truck, t.Epoch, f.Seq)
			}
			c.stats.Fixes += uint64(len(fresh))
		}
		seqs := make([]uint64, len(all))
		for i, f := range all {
			seqs[i] = f.Seq
		}
		c.done(truck, t.Epoch, seqs)
	case msg.Event != nil:
		ev := msg.Event
		u := Update{Event: &Event{Truck: truck, ID: msg.ID, Sent: msg.Created, Event: *ev}}
		if err := c.commit(ctx, u); err != nil {
			return err
		}
		if c.events.seen(truck, ev.Epoch, ev.RecordSeq) {
			c.stats.DuplicateEvents++
			// The duplicate memory is bounded and may take a late re-send for a duplicate; the record is
			// receipted all the same, so whatever must not miss it (the outbox) sees it again.
			if c.cfg.Record != nil && c.cfg.duplicateEvent != nil {
				if err := c.cfg.duplicateEvent(ctx, u); err != nil {
					return err
				}
			}
		} else {
			if err := c.handle(ctx, u); err != nil {
				return err
			}
			c.events.mark(truck, ev.Epoch, ev.RecordSeq)
			c.stats.Events++
		}
		c.done(truck, ev.Epoch, []uint64{ev.RecordSeq})
	case msg.Status != nil:
		if dup {
			return nil // the retained status again, after a reconnect
		}
		// A status older than the one known (sdk.Status.Newer: a connection's late refresh after its will,
		// an old will after the next connection's online) is still recorded and handed over, but does not
		// change the state.
		prev, known := c.statuses[truck]
		older := known && prev.Status.Newer(*msg.Status)
		st := Status{Truck: truck, Status: *msg.Status, Retained: m.Retained,
			Changed: !known || (!older && prev.Status.State != msg.Status.State)}
		if err := c.commit(ctx, Update{Status: &st}); err != nil {
			return err
		}
		if err := c.handle(ctx, Update{Status: &st}); err != nil {
			return err
		}
		if !older {
			c.statuses[truck] = st
		}
		c.stats.Statuses++
	}
	return nil
}

// handleCRL applies a fleet CRL to the verifier and hands a newer one to Handle. An older or equal one is
// ignored; one that is not the fleet's is logged and counted. Only a failing Handle returns an error.
func (c *Consumer) handleCRL(ctx context.Context, payload []byte) error {
	up, err := c.cfg.Verifier.UpdateCRL(payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err != nil:
		c.stats.CRLsRefused++
		c.log.Warn("dispatch: fleet CRL refused; keeping the one in use", "crl", c.cfg.Verifier.CRLInfo().String(), "err", err)
		return nil
	case !up:
		c.stats.CRLsNotNewer++ // the retained CRL again after a reconnect, or an older one
		return nil
	}
	c.stats.CRLsApplied++
	info := c.cfg.Verifier.CRLInfo()
	c.log.Info("dispatch: fleet CRL applied", "crl", info.String())
	return c.handle(ctx, Update{CRL: &info})
}

// commit writes u to the Record, if there is one.
func (c *Consumer) commit(ctx context.Context, u Update) error {
	if c.cfg.Record == nil {
		return nil
	}
	if err := c.cfg.Record.Commit(ctx, u); err != nil {
		c.stats.CommitErrors++
		return fmt.Errorf("dispatch: record: %w", err)
	}
	return nil
}

// done reports records that are committed (and handled) for receipts; without a Record nothing is.
func (c *Consumer) done(truck string, epoch sdk.Epoch, seqs []uint64) {
	if c.cfg.committed == nil || c.cfg.Record == nil || len(seqs) == 0 {
		return
	}
	c.cfg.committed(truck, epoch, seqs)
}

func (c *Consumer) handle(ctx context.Context, u Update) error {
	if r := u.Rejection; r != nil {
		c.log.Warn("dispatch: message rejected", "topic", r.Topic, "reason", r.Reason.String(), "err", r.Err)
	}
	if c.cfg.Handle == nil {
		return nil
	}
	return c.cfg.Handle(ctx, u)
}

// Stats returns a snapshot of the counters.
func (c *Consumer) Stats() ConsumerStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Rejected = maps.Clone(c.stats.Rejected)
	return s
}

// Statuses returns the last status of every truck heard from.
func (c *Consumer) Statuses() map[string]Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.statuses)
}
