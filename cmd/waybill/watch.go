package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
)

func runWatch(ctx context.Context, s streams, args []string) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.SetOutput(s.err)
	var d dispatchFlags
	d.register(fs)
	asJSON := fs.Bool("json", false, "one JSON object per line instead of readable lines")
	allStatus := fs.Bool("all-status", false, "print every status message, not only those where something an operator cares about changed")
	lockWait := fs.Duration("lock-wait", 15*time.Second, "how long to wait for another process sending for --data (an order command holds it for its --wait) before giving up")
	share := fs.String("share", "", "shared subscription group: processes with the same group split telemetry and events "+
		"(only dispatch identities may join one at a broker configured by waybill broker config)")
	passive := fs.Bool("passive", false, "only look: no archive, no receipts, no order re-sending, no sender lock, and a session "+
		"that ends with the connection; for a view beside the office or another recording watch, under an identity of its own")
	fs.Usage = func() {
		fmt.Fprintln(s.err, "Usage: waybill watch [--data DIR] [--json] [--all-status] [--share GROUP | --passive] --pki DIR|--cert/--key/--ca --broker URL")
		fmt.Fprintln(s.err)
		fmt.Fprintln(s.err, "Live, verified view of the fleet: one line per fix and delivery event, a truck's status when")
		fmt.Fprintln(s.err, "something changed (online/offline, store epoch or origin, queue depth crossing 100/1,000/10,000,")
		fmt.Fprintln(s.err, "CRL number, GPS and system clock disagreeing; --all-status: every status), every refused message")
		fmt.Fprintln(s.err, "with its reason, and each newer fleet CRL from the broker (applied at once: what it revokes is")
		fmt.Fprintln(s.err, "refused from then on). Times are UTC with the date. Every fix, event and status is committed to")
		fmt.Fprintln(s.err, "the archive (DATA/archive.db) before it is acknowledged and shown, and receipted to the truck,")
		fmt.Fprintln(s.err, "which then deletes it. The MQTT session is persistent: what trucks sent while neither watch nor")
		fmt.Fprintln(s.err, "an order command ran arrives at the next start. It also sends the outbox's unconfirmed orders until")
		fmt.Fprintln(s.err, "the trucks confirm them. Stop it with Ctrl-C.")
		fmt.Fprintln(s.err)
		fmt.Fprintln(s.err, "One process sends for a data directory: a second watch on the same --data waits --lock-wait for")
		fmt.Fprintln(s.err, "the lock (DATA/sender.lock), then says which process holds it.")
		fmt.Fprintln(s.err)
		fmt.Fprintln(s.err, "A recording watch receipts what it stores, and trucks delete what is receipted: beside the office")
		fmt.Fprintln(s.err, "(or another watch with its own --data), use --passive, so that only one record of the fleet")
		fmt.Fprintln(s.err, "receipts, and an identity of its own (--cert/--key: with the office's it would take over its")
		fmt.Fprintln(s.err, "session). A passive watch sees only what arrives while it runs.")
		fmt.Fprintln(s.err)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	}
	// Everything the command line says is checked before waiting for anything.
	if err := d.checkBroker(); err != nil {
		return err
	}
	if *passive {
		if *share != "" {
			return usageError{"--passive with --share: a passive view in a share group would take its share of the " +
				"fleet's messages away from the processes that record them; a passive watch sees everything without one"}
		}
		return watchPassive(ctx, s, &d, &printer{w: s.out, json: *asJSON, all: *allStatus})
	}
	id, log, ob, err := d.open(s.err)
	if err != nil {
		return err
	}

	// Only one process sends for a data directory; an order command holds the lock for its --wait at most.
	lock, err := waitLock(ctx, s, d.data, *lockWait)
	if err != nil || lock == nil {
		return err
	}
	defer lock.release()

	a, err := d.openArchive()
	if err != nil {
		return err
	}
	defer a.Close()
	p := &printer{w: s.out, json: *asJSON, all: *allStatus}
	c, err := d.client(id, ob, a, log, *share, p.update)
	if err != nil {
		return err
	}
	pending, _ := ob.Pending(ctx)
	p.line(fmt.Sprintf("watching as %s on %s; %d order(s) waiting for confirmation in %s; archive %s", id.name, d.broker,
		pending, d.data, a.Path()), map[string]any{"type": "start", "identity": id.name, "broker": d.broker,
		"pending_orders": pending, "archive": a.Path()})
	err = runShowingLink(ctx, c, p)
	st := c.Consumer().Stats()
	fmt.Fprintf(s.err, "waybill watch: %d fixes (%d duplicates dropped), %d events (%d duplicates), %d statuses, %d refused, "+
		"%d receipts sent\n", st.Fixes, st.DuplicateFixes, st.Events, st.DuplicateEvents, st.Statuses, sum(st.Rejected),
		c.ReceiptsSent())
	return err
}

// runShowingLink runs c until ctx ends, printing the link's changes for people.
func runShowingLink(ctx context.Context, c *dispatch.Client, p *printer) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case st, ok := <-c.Conn().States():
				if !ok || st.Closed {
					return
				}
				if st.Connected {
					p.line("connected to "+st.Info.Broker, map[string]any{"type": "link", "connected": true, "broker": st.Info.Broker})
				} else if st.Err != nil {
					p.line("link down: "+st.Err.Error(), map[string]any{"type": "link", "connected": false, "error": st.Err.Error()})
				}
			}
		}
	}()
	err := c.Run(ctx)
	wg.Wait()
	return err
}

// watchPassive shows the fleet without recording anything: no Record (so no receipts and no dispatch status),
// no outbox, and a session that ends with the connection, so the broker queues nothing for it while it is away.
func watchPassive(ctx context.Context, s streams, d *dispatchFlags, p *printer) error {
	id, err := d.identity()
	if err != nil {
		return err
	}
	c, err := d.client(id, nil, nil, d.logger(s.err), "", p.update)
	if err != nil {
		return err
	}
	p.line(fmt.Sprintf("watching passively as %s on %s: nothing is stored or receipted", id.name, d.broker),
		map[string]any{"type": "start", "identity": id.name, "broker": d.broker, "passive": true})
	err = runShowingLink(ctx, c, p)
	st := c.Consumer().Stats()
	fmt.Fprintf(s.err, "waybill watch: %d fixes (%d duplicates dropped), %d events (%d duplicates), %d statuses, %d refused, "+
		"nothing stored or receipted (passive)\n", st.Fixes, st.DuplicateFixes, st.Events, st.DuplicateEvents, st.Statuses,
		sum(st.Rejected))
	return err
}

func sum(m map[sdk.Reason]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// waitLock takes DATA/sender.lock, waiting at most wait (saying so once) for the process holding it. nil
// lock and nil error: ctx ended.
func waitLock(ctx context.Context, s streams, data string, wait time.Duration) (*lockFile, error) {
	deadline := time.Now().Add(wait)
	for said := false; ; {
		l, got, holder, err := tryLock(data, "waybill watch")
		if err != nil {
			return nil, err
		}
		if got {
			return l, nil
		}
		path := filepath.Join(data, senderLock)
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("another waybill process%s holds %s: stop it (an order command ends after its --wait), "+
				"or use --data DIR for another data directory", holder, path)
		}
		if !said {
			fmt.Fprintf(s.err, "waybill watch: another waybill process%s holds %s; waiting up to %s\n", holder, path, wait)
			said = true
		}
		sleep(ctx, 200*time.Millisecond)
		if ctx.Err() != nil {
			return nil, nil
		}
	}
}

// printer writes one line per update.
type printer struct {
	json, all bool // all: every status, not only changes

	mu   sync.Mutex // guards the fields below
	w    io.Writer
	last map[string]statusKey // truck -> what the last printed status said
}

// timeFormat is how watch shows every time: UTC with the date, because a truck's records can be days old
// (a unit offline over a weekend) and a GPS with a wrong date must be visible as such.
const timeFormat = "2006-01-02T15:04:05Z"

func utc(t time.Time) string { return t.UTC().Format(timeFormat) }

func (p *printer) line(text string, obj map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		obj["time"] = time.Now().UTC().Format(time.RFC3339Nano)
		b, _ := json.Marshal(obj)
		fmt.Fprintln(p.w, string(b))
		return
	}
	fmt.Fprintf(p.w, "%s  %s\n", utc(time.Now()), text)
}

// statusKey is what an operator cares about in a status: a status line is printed when it changes.
type statusKey struct {
	state      sdk.State
	epoch      sdk.Epoch
	origin     string
	queueLevel int // queueLevel(QueueDepth)
	crl        string
	skew       bool
}

// queueLevel buckets a queue depth so that a status is printed when the backlog crosses 100, 1,000 or
// 10,000 records, not on every change of a few records.
func queueLevel(n int) int {
	switch {
	case n >= 10000:
		return 3
	case n >= 1000:
		return 2
	case n >= 100:
		return 1
	}
	return 0
}

func keyOf(st sdk.Status) statusKey {
	k := statusKey{state: st.State}
	if h := st.Health; h != nil {
		k.epoch, k.origin, k.queueLevel, k.skew = h.StoreEpoch, h.StoreOrigin, queueLevel(h.QueueDepth), h.ClockSkew != 0
		if h.CRL != nil {
			k.crl = "none"
			if h.CRL.Loaded {
				k.crl = fmt.Sprint(h.CRL.Number)
			}
		}
	}
	return k
}

// statusChanged records st for its truck and reports whether it differs from the last one printed.
func (p *printer) statusChanged(truck string, st sdk.Status) bool {
	k := keyOf(st)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil {
		p.last = map[string]statusKey{}
	}
	prev, seen := p.last[truck]
	if st.Health == nil && seen { // a status without a summary (the will) keeps the last known health
		k.epoch, k.origin, k.queueLevel, k.crl, k.skew = prev.epoch, prev.origin, prev.queueLevel, prev.crl, prev.skew
	}
	p.last[truck] = k
	return !seen || k != prev
}

func (p *printer) update(_ context.Context, u dispatch.Update) error {
	switch {
	case len(u.Fixes) > 0:
		for _, f := range u.Fixes {
			p.line(describeFix(f), map[string]any{"type": "fix", "truck": f.Truck, "epoch": f.Epoch, "seq": f.Seq, "fix": f.Fix})
		}
	case u.Event != nil:
		p.line(describeEvent(u.Event), map[string]any{"type": "event", "truck": u.Event.Truck, "id": u.Event.ID,
			"sent": u.Event.Sent, "event": u.Event.Event})
	case u.Status != nil:
		st := u.Status
		if ch := st.NewStore; ch != nil {
			p.line(describeNewStore(ch), map[string]any{"type": "new_store", "truck": ch.Truck, "epoch": ch.Epoch,
				"previous": ch.Previous, "origin": ch.Origin, "since": ch.Since, "reopened": ch.Reopened})
		}
		if !p.statusChanged(st.Truck, st.Status) && !p.all {
			return nil
		}
		obj := map[string]any{"type": "status", "truck": st.Truck, "status": st.Status, "changed": st.Changed,
			"retained": st.Retained}
		if h := st.Status.Health; h != nil {
			if h.ClockSkew != 0 {
				obj["clock_skew_s"] = h.ClockSkew.Seconds()
			}
			if h.Odometer != 0 {
				obj["odometer_km"] = float64(h.Odometer) / 1000
			}
		}
		p.line(describeStatus(st), obj)
		if h := st.Status.Health; h != nil && h.ClockSkew != 0 && !p.json {
			p.line(fmt.Sprintf("%-16s WARNING clock: GPS and system clock disagree by %s (GPS %s the system clock): "+
				"a dead clock battery or a receiver with a wrong date; check the unit (waybill-agent check)",
				st.Truck, h.ClockSkew.Abs().Round(time.Second), aheadBehind(h.ClockSkew)), nil)
		}
	case u.CRL != nil:
		p.line(fmt.Sprintf("fleet CRL %s applied: whatever it revokes is refused from now on", u.CRL),
			map[string]any{"type": "crl", "crl": u.CRL})
	case u.Rejection != nil:
		r := u.Rejection
		p.line(fmt.Sprintf("REFUSED on %s: %s: %v", r.Topic, r.Reason, r.Err), map[string]any{"type": "rejected",
			"topic": r.Topic, "sender": r.Sender, "reason": r.Reason, "error": fmt.Sprint(r.Err)})
	}
	return nil
}

func aheadBehind(d time.Duration) string {
	if d > 0 {
		return "ahead of"
	}
	return "behind"
}

// describeStatus is one status line: the state and the health summary an operator reads.
func describeStatus(st *dispatch.Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-16s status %s", st.Truck, st.Status.State)
	if st.Retained {
		fmt.Fprintf(&b, " (since %s)", utc(st.Status.Time))
	}
	h := st.Status.Health
	if h == nil {
		return b.String()
	}
	fmt.Fprintf(&b, " queue %d, sats %d", h.QueueDepth, h.Sats)
	if h.Odometer != 0 {
		fmt.Fprintf(&b, ", odometer %.1f km", float64(h.Odometer)/1000)
	}
	if h.StoreEpoch != (sdk.Epoch{}) {
		fmt.Fprintf(&b, ", store %x", h.StoreEpoch[:4])
		if h.StoreOrigin != "" {
			fmt.Fprintf(&b, " (%s)", h.StoreOrigin)
		}
	}
	if h.CRL != nil {
		if h.CRL.Loaded {
			fmt.Fprintf(&b, ", CRL %v", h.CRL.Number)
		} else {
			b.WriteString(", NO CRL")
		}
	}
	if h.ClockSkew != 0 {
		fmt.Fprintf(&b, ", clock skew %s", h.ClockSkew.Round(time.Second))
	}
	return b.String()
}

// describeNewStore says that a truck's store is new, so an operator knows the unit lost data.
func describeNewStore(ch *dispatch.StoreChange) string {
	origin := ch.Origin
	if origin == "" {
		origin = "new"
	}
	if !ch.Since.IsZero() {
		origin += " since " + utc(ch.Since)
	}
	return fmt.Sprintf("%-16s store is NEW (%s; epoch %x, was %x): it lost data; %d open order(s) sent again",
		ch.Truck, origin, ch.Epoch[:], ch.Previous[:], ch.Reopened)
}

func describeFix(f dispatch.Fix) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-16s fix %.6f,%.6f", f.Truck, f.Fix.Lat, f.Fix.Lon)
	if f.Fix.Has&sdk.FixSpeed != 0 {
		fmt.Fprintf(&b, " %.1f km/h", f.Fix.Speed*3.6)
	}
	if f.Fix.Has&sdk.FixCourse != 0 {
		fmt.Fprintf(&b, " %.0f°", f.Fix.Course)
	}
	if f.Fix.Has&sdk.FixSats != 0 {
		fmt.Fprintf(&b, " %d sats", f.Fix.Sats)
	}
	fmt.Fprintf(&b, " at %s (seq %d)", utc(f.Fix.Time), f.Seq)
	return b.String()
}

func describeEvent(e *dispatch.Event) string {
	ev := e.Event
	var b strings.Builder
	if ev.Kind.IsTrip() {
		fmt.Fprintf(&b, "%-16s %s", e.Truck, strings.ToUpper(ev.Kind.String()))
		switch ev.Kind {
		case sdk.EventTripEnd:
			fmt.Fprintf(&b, " %.1f km in %s (idle %s)", float64(ev.Distance)/1000, ev.Duration.Round(time.Second), ev.Idle.Round(time.Second))
		case sdk.EventStop:
			fmt.Fprintf(&b, " %s", ev.Duration.Round(time.Second))
		}
		if ev.Odometer != 0 {
			fmt.Fprintf(&b, ", odometer %.1f km", float64(ev.Odometer)/1000)
		}
		if ev.Fix != nil {
			fmt.Fprintf(&b, " at %.6f,%.6f", ev.Fix.Lat, ev.Fix.Lon)
		}
		fmt.Fprintf(&b, " (%s)", utc(ev.Time))
		return b.String()
	}
	fmt.Fprintf(&b, "%-16s %s order %s rev %d", e.Truck, strings.ToUpper(ev.Kind.String()), ev.OrderID, ev.Revision)
	if ev.Kind != sdk.EventReceived {
		fmt.Fprintf(&b, " via %s", ev.Via)
	}
	if ev.Reason != "" {
		fmt.Fprintf(&b, ": %s", ev.Reason)
	}
	if ev.OffSite {
		b.WriteString(" (OFF SITE)")
	}
	if ev.Conflict {
		b.WriteString(" CONFLICT: the order was already closed on the truck")
	}
	if ev.Fix != nil {
		fmt.Fprintf(&b, " at %.6f,%.6f", ev.Fix.Lat, ev.Fix.Lon)
	}
	fmt.Fprintf(&b, " (%s)", utc(ev.Time))
	return b.String()
}
