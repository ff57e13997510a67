package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/waybill-iot/waybill/agent"
	"github.com/waybill-iot/waybill/sdk/truck"
	"github.com/waybill-iot/waybill/store"
)

const storeUsage = `Usage: waybill store inspect [--config AGENT.TOML] [--limit N] [--json] [DIR|FILE]

Shows what a truck's store holds: how its epoch began (created, recreated or salvaged, when, and what
happened), records per lane, oldest first, each with its origin epoch where it is not the store's (records
salvaged from an older file keep theirs), the quarantine, the counters and the order book (orders by state,
and the open ones). DIR is the agent's data directory (it reads DIR/queue.db). Read-only and safe while the
agent runs: it reads a copy.

The queue's size limit is the agent's store.max_mb, which the file does not record: give the agent's
config with --config (e.g. /etc/waybill/agent.toml) to see it; its data_dir is then the default DIR.
`

func runStore(ctx context.Context, s streams, args []string) error {
	if len(args) == 0 || args[0] != "inspect" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(s.out, storeUsage)
			return nil
		}
		return usageError{"want: waybill store inspect DIR (see --help)"}
	}
	fs := pkiFlagSet("store inspect")
	limit := fs.Int("limit", 20, "records shown per lane (0: all)")
	asJSON := fs.Bool("json", false, "one JSON document instead of text")
	configFile := fs.String("config", "", "the agent's config file, for the queue limit (store.max_mb) and the data directory")
	pos, err := parseSubcommandFlags(s, fs, storeUsage, args[1:])
	if err != nil {
		return err
	}
	lim := limitInfo{Source: "not recorded in the file: set by the agent's store.max_mb (default 64 MiB); give --config AGENT.TOML to show it"}
	var path string
	if *configFile != "" {
		f, err := os.Open(*configFile)
		if err != nil {
			return err
		}
		cfg, err := agent.ParseConfig(f)
		f.Close()
		if err == nil {
			err = cfg.Defaults()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", *configFile, err)
		}
		lim = limitInfo{Bytes: int64(cfg.Store.MaxMB) << 20, Source: fmt.Sprintf("store.max_mb = %d in %s", cfg.Store.MaxMB, *configFile)}
		path = cfg.DataDir
	}
	switch {
	case len(pos) == 1:
		path = pos[0]
	case len(pos) > 1 || path == "":
		return usageError{"want exactly one DIR or FILE, or --config AGENT.TOML (see --help)"}
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, "queue.db")
	}
	st, cleanup, err := openCopy(path)
	if err != nil {
		return err
	}
	defer cleanup()
	report, err := inspect(ctx, st, *limit)
	if err != nil {
		return err
	}
	report.Limit, report.Stats.MaxBytes = lim, lim.Bytes // the copy was opened with a 1 TiB limit, which means nothing
	if *asJSON {
		enc := json.NewEncoder(s.out)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	printInspect(s.out, path, report)
	return nil
}

// openCopy opens a private copy of the store: bbolt locks the agent's file exclusively, and a copy cannot
// disturb it. A copy taken mid-commit may miss the newest records; the store's own checks repair a torn copy.
func openCopy(path string) (*store.Store, func(), error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer src.Close()
	dir, err := os.MkdirTemp("", "waybill-inspect-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	dst, err := os.Create(filepath.Join(dir, "queue.db"))
	if err == nil {
		_, err = io.Copy(dst, src)
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("copy %s: %w", path, err)
	}
	st, err := store.Open(dst.Name(), store.Options{MaxBytes: 1 << 40})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return st, func() { st.Close(); cleanup() }, nil
}

type inspectRecord struct {
	Seq uint64 `json:"seq"`
	// Epoch is the record's origin epoch: the store's own, or an older file's for a salvaged record. A
	// record is known to dispatch by (Epoch, Seq).
	Epoch   string    `json:"epoch"`
	Lane    string    `json:"lane"`
	Kind    string    `json:"kind"`
	Time    time.Time `json:"time"`
	Bytes   int       `json:"bytes"`
	Summary string    `json:"summary"`
}

// inspectOrigin is store.Origin for people and JSON: the kind by name.
type inspectOrigin struct {
	Kind          string    `json:"kind"` // existing, created, recreated or salvaged
	Since         time.Time `json:"since,omitzero"`
	PreviousEpoch string    `json:"previous_epoch,omitempty"`
	Detail        string    `json:"detail,omitempty"`
}

// inspectStats is store.Stats without its Origin (the report has its own, readable back from JSON:
// store.OriginKind marshals as a name but does not unmarshal from one). The shallower field hides the
// embedded one; it is always nil, so omitted.
type inspectStats struct {
	store.Stats
	Origin *struct{} `json:"Origin,omitempty"`
}

// limitInfo is the queue's size limit and where it comes from: the agent's config, or nowhere.
type limitInfo struct {
	Bytes  int64  `json:"bytes,omitempty"` // zero: not known
	Source string `json:"source"`
}

// inspectOrder is an order in the truck's order book, for people.
type inspectOrder struct {
	ID        string    `json:"id"`
	Revision  uint32    `json:"revision"`
	State     string    `json:"state"`
	Received  time.Time `json:"received"`
	Expires   time.Time `json:"expires"`
	Recipient string    `json:"recipient,omitempty"`
	Address   string    `json:"address,omitempty"`
	Arrived   bool      `json:"arrived,omitempty"`
	Problems  int       `json:"problems,omitempty"`
}

// inspectBook is the order book: how many orders in each state, and the open ones.
type inspectBook struct {
	Counts map[string]int `json:"counts"`
	Open   []inspectOrder `json:"open"`
	Error  string         `json:"error,omitempty"` // the book could not be read
}

type inspectReport struct {
	Limit       limitInfo       `json:"limit"`
	Book        inspectBook     `json:"order_book"`
	Epoch       string          `json:"epoch"`
	Origin      inspectOrigin   `json:"origin"`
	Stats       inspectStats    `json:"stats"`
	Records     []inspectRecord `json:"records"`
	Quarantined []struct {
		Seq    uint64 `json:"seq"`
		Lane   string `json:"lane"`
		Reason string `json:"reason"`
	} `json:"quarantined"`
}

func inspect(ctx context.Context, st *store.Store, limit int) (inspectReport, error) {
	o := st.Origin()
	r := inspectReport{Epoch: fmt.Sprintf("%016x", st.Epoch()), Stats: inspectStats{Stats: st.Stats()},
		Origin: inspectOrigin{Kind: o.Kind.String(), Since: o.At, Detail: o.Detail}}
	if o.PreviousEpoch != 0 {
		r.Origin.PreviousEpoch = fmt.Sprintf("%016x", o.PreviousEpoch)
	}
	recs, err := st.Peek(ctx, math.MaxInt32)
	if err != nil {
		return r, err
	}
	shown := map[store.Lane]int{}
	for _, rec := range recs {
		if limit > 0 && shown[rec.Lane] >= limit {
			continue
		}
		shown[rec.Lane]++
		epoch := rec.Epoch
		if epoch == 0 {
			epoch = st.Epoch()
		}
		ir := inspectRecord{Seq: rec.Seq, Epoch: fmt.Sprintf("%016x", epoch), Lane: rec.Lane.String(), Kind: strconv.Itoa(int(rec.Kind)), Time: rec.Time, Bytes: len(rec.Data)}
		switch rec.Kind {
		case truck.KindFix:
			ir.Kind = "fix"
			if f, err := truck.DecodeFix(rec.Data); err == nil {
				ir.Summary = fmt.Sprintf("%.6f,%.6f mode %d", f.Lat, f.Lon, f.Mode)
			} else {
				ir.Summary = "undecodable: " + err.Error()
			}
		case truck.KindEvent:
			ir.Kind = "event"
			if e, err := truck.DecodeEvent(rec.Data, epoch, rec.Seq); err == nil {
				ir.Summary = fmt.Sprintf("%s order %s rev %d via %s", e.Kind, e.OrderID, e.Revision, e.Via)
			} else {
				ir.Summary = "undecodable: " + err.Error()
			}
		}
		r.Records = append(r.Records, ir)
	}
	r.Book = readBook(st)
	q, err := st.Quarantined()
	if err != nil {
		return r, err
	}
	for _, x := range q {
		r.Quarantined = append(r.Quarantined, struct {
			Seq    uint64 `json:"seq"`
			Lane   string `json:"lane"`
			Reason string `json:"reason"`
		}{x.Seq, x.Lane.String(), x.Reason})
	}
	return r, nil
}

// bookBucket is sdk/truck's order book bucket: key order id, value the JSON truck.Entry (truck.Book.Orders
// reads it the same way; a Book needs a verifier and the truck's identity, which inspect has not).
const bookBucket = "orders"

// readBook reads the truck's order book from st. A book that does not decode is reported, not fatal: the
// queue is what inspect is mostly for.
func readBook(st *store.Store) inspectBook {
	b := inspectBook{Counts: map[string]int{}}
	err := st.ForEach(bookBucket, func(k, v []byte) error {
		var e truck.Entry
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("order %q: %w", k, err)
		}
		if e.Unseen {
			return nil // a cancellation of an order this truck never held
		}
		b.Counts[string(e.State)]++
		if e.State == truck.StateActive {
			b.Open = append(b.Open, inspectOrder{ID: e.Order.ID, Revision: e.Order.Revision, State: string(e.State),
				Received: e.Received, Expires: e.Order.Expires, Recipient: e.Order.Recipient, Address: e.Order.Address,
				Arrived: e.Arrived, Problems: e.Problems})
		}
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		b.Error = err.Error()
	}
	sort.Slice(b.Open, func(i, j int) bool { return b.Open[i].Received.Before(b.Open[j].Received) })
	return b
}

func printInspect(w io.Writer, path string, r inspectReport) {
	s := r.Stats
	now := time.Now()
	limit := "limit " + r.Limit.Source
	if r.Limit.Bytes > 0 {
		limit = fmt.Sprintf("limit %d MiB (%s)", r.Limit.Bytes>>20, r.Limit.Source)
	}
	fmt.Fprintf(w, "%s  epoch %s  %d bytes queued, file %d bytes\n", path, r.Epoch, s.Bytes, s.FileBytes)
	fmt.Fprintf(w, "%s\n", limit)
	fmt.Fprintf(w, "origin: %s\n", originLine(r.Origin))
	fmt.Fprintf(w, "critical: %d records, oldest %s\n", s.Critical.Records, age(s.Critical.OldestAge(now)))
	fmt.Fprintf(w, "normal:   %d records, oldest %s\n", s.Normal.Records, age(s.Normal.OldestAge(now)))
	fmt.Fprintf(w, "thinned %d, dropped %d, quarantined %d, recovered %d\n", s.Thinned, s.Dropped, s.Quarantined, s.Recovered)
	for _, rec := range r.Records {
		from := ""
		if rec.Epoch != r.Epoch {
			from = "  (epoch " + rec.Epoch + ")" // salvaged from an older file: dispatch knows it by that epoch
		}
		fmt.Fprintf(w, "  %-8s %8d  %s  %-5s %4dB  %s%s\n", rec.Lane, rec.Seq, rec.Time.UTC().Format(time.RFC3339), rec.Kind,
			rec.Bytes, rec.Summary, from)
	}
	for _, q := range r.Quarantined {
		fmt.Fprintf(w, "  QUARANTINED %d (%s): %s\n", q.Seq, q.Lane, q.Reason)
	}
	b := r.Book
	fmt.Fprintf(w, "order book: %d active, %d delivered, %d failed, %d cancelled\n", b.Counts[string(truck.StateActive)],
		b.Counts[string(truck.StateDelivered)], b.Counts[string(truck.StateFailed)], b.Counts[string(truck.StateCancelled)])
	if b.Error != "" {
		fmt.Fprintf(w, "  order book unreadable: %s\n", b.Error)
	}
	for _, o := range b.Open {
		extra := ""
		if o.Arrived {
			extra += ", arrived"
		}
		if o.Problems > 0 {
			extra += fmt.Sprintf(", %d problem(s)", o.Problems)
		}
		fmt.Fprintf(w, "  open %-20s rev %d  received %s  expires %s  %s, %s%s\n", o.ID, o.Revision,
			o.Received.UTC().Format(time.RFC3339), o.Expires.UTC().Format(time.RFC3339), o.Recipient, o.Address, extra)
	}
}

// originLine says how the store's epoch began: "salvaged since 2026-...Z (previous epoch ...): detail".
func originLine(o inspectOrigin) string {
	line := o.Kind
	if !o.Since.IsZero() {
		line += " since " + o.Since.UTC().Format(time.RFC3339)
	}
	if o.PreviousEpoch != "" {
		line += " (previous epoch " + o.PreviousEpoch + ")"
	}
	if o.Detail != "" {
		line += ": " + o.Detail
	}
	return line
}

func age(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.Round(time.Second).String() + " ago"
}
