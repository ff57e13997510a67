package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
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
	share := fs.String("share", "", "shared subscription group: processes with the same group split telemetry and events; "+
		"Mosquitto lets anyone who can name a group join it: use an unguessable name, e.g. dispatch-$(openssl rand -hex 12)")
	fs.Usage = func() {
		fmt.Fprintln(s.err, "Usage: waybill watch [--data DIR] [--json] [--share GROUP] --pki DIR|--cert/--key/--ca --broker URL")
		fmt.Fprintln(s.err)
		fmt.Fprintln(s.err, "Live, verified view of the fleet: one line per fix, delivery event and status change, every")
		fmt.Fprintln(s.err, "refused message with its reason, and each newer fleet CRL from the broker (applied at once: what")
		fmt.Fprintln(s.err, "it revokes is refused from then on). Every fix, event and status is committed to the archive")
		fmt.Fprintln(s.err, "(DATA/archive.db) before it is acknowledged and shown, and receipted to the truck, which then")
		fmt.Fprintln(s.err, "deletes it. The MQTT session is persistent: what trucks sent while neither watch nor an order")
		fmt.Fprintln(s.err, "command ran arrives at the next start. It also sends the outbox's unconfirmed orders until the")
		fmt.Fprintln(s.err, "trucks confirm them. Stop it with Ctrl-C.")
		fmt.Fprintln(s.err)
		fmt.Fprintln(s.err, "A passive view that must not receipt (trucks would delete what the office has not stored) needs")
		fmt.Fprintln(s.err, "an identity of its own: with this one it would take over the office's session.")
		fmt.Fprintln(s.err)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	}
	id, log, ob, err := d.open(s.err)
	if err != nil {
		return err
	}
	if d.broker == "" {
		return usageError{"no broker: give --broker mqtts://HOST:PORT (or set WAYBILL_BROKER)"}
	}

	// Only one process sends for a data directory; an order command holds the lock for seconds at most.
	var lock *lockFile
	for said := false; ; {
		l, got, err := tryLock(d.data)
		if err != nil {
			return err
		}
		if got {
			lock = l
			break
		}
		if !said {
			fmt.Fprintln(s.err, "waybill watch: another process is sending for", d.data, "(an order command, or another watch); waiting")
			said = true
		}
		sleep(ctx, 500*time.Millisecond)
		if ctx.Err() != nil {
			return nil
		}
	}
	defer lock.release()

	a, err := d.openArchive()
	if err != nil {
		return err
	}
	defer a.Close()
	p := &printer{w: s.out, json: *asJSON}
	c, err := d.client(id, ob, a, log, *share, p.update)
	if err != nil {
		return err
	}
	pending, _ := ob.Pending(ctx)
	p.line(fmt.Sprintf("watching as %s on %s; %d order(s) waiting for confirmation in %s; archive %s", id.name, d.broker,
		pending, d.data, a.Path()), map[string]any{"type": "start", "identity": id.name, "broker": d.broker,
		"pending_orders": pending, "archive": a.Path()})
	wg := sync.WaitGroup{}
	wg.Add(1)
	go func() { // link states, for people
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
	err = c.Run(ctx)
	wg.Wait()
	st := c.Consumer().Stats()
	fmt.Fprintf(s.err, "waybill watch: %d fixes (%d duplicates dropped), %d events (%d duplicates), %d statuses, %d refused, "+
		"%d receipts sent\n", st.Fixes, st.DuplicateFixes, st.Events, st.DuplicateEvents, st.Statuses, sum(st.Rejected),
		c.ReceiptsSent())
	return err
}

func sum(m map[sdk.Reason]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// printer writes one line per update.
type printer struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
}

func (p *printer) line(text string, obj map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		obj["time"] = time.Now().UTC().Format(time.RFC3339Nano)
		b, _ := json.Marshal(obj)
		fmt.Fprintln(p.w, string(b))
		return
	}
	fmt.Fprintf(p.w, "%s  %s\n", time.Now().Format("15:04:05"), text)
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
		if !st.Changed && st.Status.Health == nil {
			return nil
		}
		text := fmt.Sprintf("%-16s status %s", st.Truck, st.Status.State)
		if st.Retained {
			text += fmt.Sprintf(" (since %s)", st.Status.Time.Local().Format(time.DateTime))
		}
		if h := st.Status.Health; h != nil {
			text += fmt.Sprintf(" queue %d, sats %d", h.QueueDepth, h.Sats)
		}
		p.line(text, map[string]any{"type": "status", "truck": st.Truck, "status": st.Status, "changed": st.Changed,
			"retained": st.Retained})
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

// describeNewStore says that a truck's store is new, so an operator knows the unit lost data.
func describeNewStore(ch *dispatch.StoreChange) string {
	origin := ch.Origin
	if origin == "" {
		origin = "new"
	}
	if !ch.Since.IsZero() {
		origin += " since " + ch.Since.Local().Format(time.DateTime)
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
	fmt.Fprintf(&b, " at %s (seq %d)", f.Fix.Time.Local().Format("15:04:05"), f.Seq)
	return b.String()
}

func describeEvent(e *dispatch.Event) string {
	ev := e.Event
	var b strings.Builder
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
	fmt.Fprintf(&b, " (%s)", ev.Time.Local().Format("15:04:05"))
	return b.String()
}
