package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/archive"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/embedded"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/postgres"
)

// migrateFixBatch is how many fixes go into PostgreSQL per transaction.
const migrateFixBatch = 2000

const migrateUsage = "Usage: waybill dispatch migrate --config FILE --from DATA_DIR"

// migrateCounts is what one migration copied and found already there.
type migrateCounts struct {
	orders, ordersThere, ordersDiffer int
	tokens                            int
	fixes, fixesThere                 int
	events, eventsThere               int
	statuses, statusesThere           int
	epochs, epochsThere               int
	differ                            []string // truck/id of orders PostgreSQL holds in another version
}

// runDispatchMigrate is `waybill dispatch migrate`: it copies an embedded office's data directory into the
// PostgreSQL database of the configuration.
func runDispatchMigrate(ctx context.Context, s streams, args []string) error {
	fs := flag.NewFlagSet("dispatch migrate", flag.ContinueOnError)
	fs.SetOutput(s.err)
	cfgPath := fs.String("config", "", "the office's TOML configuration, with [storage] engine = \"postgres\" (the target)")
	from := fs.String("from", "", "the embedded office's data directory (its data_dir: archive.db, outbox.db, tracking.db)")
	fs.Usage = func() {
		fmt.Fprintln(s.err, migrateUsage)
		fmt.Fprintln(s.err)
		fmt.Fprintln(s.err, "Copies an embedded (bbolt) office into the PostgreSQL database of --config: every order with its state,")
		fmt.Fprintln(s.err, "history, sends and tracking token; every archived fix, event (proofs of delivery) and truck status; the")
		fmt.Fprintln(s.err, "trucks' store epochs and the order sequence number. What the database already holds is left as it is,")
		fmt.Fprintln(s.err, "so running it again copies nothing twice. Stop the embedded office first (it holds DATA_DIR/sender.lock);")
		fmt.Fprintln(s.err, "the source is only read. Then start `waybill dispatch run` on the PostgreSQL configuration.")
		fmt.Fprintln(s.err)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cfgPath == "" || *from == "" || fs.NArg() > 0 {
		return usageError{"give --config FILE and --from DATA_DIR and nothing else"}
	}
	cfg, err := loadDispatchConfig(*cfgPath)
	if err != nil {
		return err
	}
	if cfg.Storage.Engine != "postgres" {
		return fmt.Errorf("%s: [storage] engine is %q: migrate copies into PostgreSQL, so the configuration must be the "+
			"PostgreSQL office's (engine = \"postgres\", dsn = ...)", *cfgPath, cfg.Storage.Engine)
	}
	dir := *from
	found := false
	for _, name := range []string{archive.File, embedded.OutboxFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("%s holds no embedded office data (neither %s nor %s): give the embedded office's data_dir",
			dir, archive.File, embedded.OutboxFile)
	}
	// The lock keeps the embedded office (and `waybill order`/`watch`) from changing the data while it is
	// copied, and from starting meanwhile.
	lock, got, holder, err := tryLock(dir, "waybill dispatch migrate")
	if err != nil {
		return err
	}
	if !got {
		return fmt.Errorf("a waybill process%s holds %s: the embedded office is running on this directory. Stop it "+
			"first (systemctl stop waybill-dispatch, or Ctrl-C), then migrate, then start the PostgreSQL office",
			holder, filepath.Join(dir, senderLock))
	}
	defer lock.release()

	cert, key, err := cfg.identity()
	if err != nil {
		return err
	}
	src, err := embedded.Open(embedded.Options{Dir: dir, Outbox: dispatch.OutboxConfig{Certificate: cert, Key: key}})
	if err != nil {
		return err
	}
	defer src.Close()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	dst, err := postgres.Open(octx, postgres.Options{DSN: cfg.Storage.DSN, Certificate: cert, Key: key,
		Topics: sdk.Topics{Prefix: cfg.Broker.Prefix}})
	cancel()
	if err != nil {
		return err
	}
	defer dst.Close()
	start := time.Now()
	c, err := migrate(ctx, src, dst)
	if err != nil {
		return fmt.Errorf("migrate (what was copied stays; run it again to finish): %w", err)
	}
	fmt.Fprintf(s.out, "waybill dispatch migrate: %s -> PostgreSQL in %s\n", dir, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(s.out, "  orders:        %d copied, %d already there, %d differ (left as they are)\n", c.orders, c.ordersThere, c.ordersDiffer)
	fmt.Fprintf(s.out, "  tracking tokens: %d copied\n", c.tokens)
	fmt.Fprintf(s.out, "  fixes:         %d copied, %d already there\n", c.fixes, c.fixesThere)
	fmt.Fprintf(s.out, "  events:        %d copied, %d already there\n", c.events, c.eventsThere)
	fmt.Fprintf(s.out, "  statuses:      %d copied, %d already there or newer\n", c.statuses, c.statusesThere)
	fmt.Fprintf(s.out, "  store epochs:  %d copied, %d already there\n", c.epochs, c.epochsThere)
	for i, d := range c.differ {
		if i == 20 {
			fmt.Fprintf(s.out, "  ... and %d more\n", len(c.differ)-i)
			break
		}
		fmt.Fprintf(s.out, "  differs: %s: PostgreSQL holds another revision or content; its version is kept\n", d)
	}
	return nil
}

// migrate copies src into dst: the archive first (events are copied, not applied: the orders come with
// the state they reached), then the outbox's store epochs and sequence number, then the orders.
func migrate(ctx context.Context, src *embedded.Store, dst *postgres.Store) (migrateCounts, error) {
	var c migrateCounts
	arc := src.Archive()
	trucks, err := arc.Trucks()
	if err != nil {
		return c, err
	}
	for _, tr := range trucks {
		st, ok, err := arc.Status(tr)
		if err != nil {
			return c, err
		}
		if ok {
			added, err := dst.ImportStatus(ctx, st)
			if err != nil {
				return c, err
			}
			count(added, &c.statuses, &c.statusesThere)
		}
		// A page of fixes in memory at a time: a truck's year is millions of them.
		for after := []byte(nil); ; {
			batch, next, err := arc.FixPage(tr, after, migrateFixBatch)
			if err != nil {
				return c, err
			}
			if len(batch) > 0 {
				n, err := dst.ImportFixes(ctx, batch)
				if err != nil {
					return c, err
				}
				c.fixes += n
				c.fixesThere += len(batch) - n
			}
			if next == nil {
				break
			}
			after = next
		}
		events, err := arc.Events(tr)
		if err != nil {
			return c, err
		}
		for _, ev := range events {
			added, err := dst.ImportEvent(ctx, ev)
			if err != nil {
				return c, err
			}
			count(added, &c.events, &c.eventsThere)
		}
	}
	ob, err := src.Export()
	if err != nil {
		return c, err
	}
	for tr, ep := range ob.Epochs {
		added, err := dst.ImportEpoch(ctx, tr, ep)
		if err != nil {
			return c, err
		}
		count(added, &c.epochs, &c.epochsThere)
	}
	if err := dst.ImportSignerSeq(ctx, ob.Identity, ob.Seq); err != nil {
		return c, err
	}
	orders, err := src.Orders(ctx)
	if err != nil {
		return c, err
	}
	for _, e := range orders {
		tok, _, err := src.StoredTrackingToken(e.Order.Truck, e.Order.ID)
		if err != nil {
			return c, err
		}
		res, tokenSet, err := dst.ImportOrder(ctx, e, tok)
		if err != nil {
			return c, err
		}
		if tokenSet {
			c.tokens++
		}
		switch res {
		case postgres.Imported:
			c.orders++
		case postgres.Present:
			c.ordersThere++
		case postgres.Differs:
			c.ordersDiffer++
			c.differ = append(c.differ, e.Order.Truck+"/"+e.Order.ID)
		}
	}
	if err := ctx.Err(); err != nil {
		return c, errors.New("interrupted")
	}
	return c, nil
}

func count(added bool, copied, there *int) {
	if added {
		*copied++
	} else {
		*there++
	}
}
