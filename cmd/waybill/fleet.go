package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/waybill-iot/waybill/cmd/waybill/fleetsim"
)

func runFleet(ctx context.Context, s streams, args []string) error {
	if len(args) == 0 {
		fleetUsage(s.err)
		return usageError{"missing subcommand"}
	}
	switch args[0] {
	case "sim":
		return runFleetSim(ctx, s, args[1:])
	case workerCommand: // hidden: fleet sim starts this program again as its worker processes
		return fleetsim.RunWorker(ctx)
	case "-h", "--help", "help":
		fleetUsage(s.out)
		return nil
	}
	fleetUsage(s.err)
	return usageError{fmt.Sprintf("unknown subcommand %q", args[0])}
}

// workerCommand is the hidden subcommand of a fleet sim worker process (fleetsim.Config.WorkerArgs).
const workerCommand = "sim-worker"

func fleetUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: waybill fleet SUBCOMMAND [FLAGS]")
	fmt.Fprintln(w, "  sim   N simulated trucks (the real truck client each) on a Mosquitto it starts, or a running one; a JSON summary")
}

func runFleetSim(ctx context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "fleet sim", `Usage: waybill fleet sim [FLAGS]

Runs N simulated trucks, each the real truck client with its own store, certificate and mutual-TLS
connection, driving generated city loops at 1 Hz through the agent's default reporting filter and commit
policy, on a Mosquitto it configures for the fleet (waybill broker config --fleet-size N) and starts.
With --dispatch the dispatch side runs too and receipts what it committed. It ends by itself: after
--duration of driving it waits (up to --drain) for the trucks' stores to empty, then prints a JSON summary
on stdout (lost must be 0) and a progress line a second on stderr. --dir keeps the PKI between runs
(issuing 10,000 certificates takes a while); stores, broker data and the archive are fresh each run.
Many trucks need many open files: a truck holds a socket and its store file, and Mosquitto one per truck.
The soft limit is raised to the hard one (ulimit -Hn), and when one process cannot hold every truck
within it, the trucks run in worker processes (this program again), --workers of them; this process
keeps the broker, dispatch and the faults, and adds up the workers' counts.

With --broker mqtts://HOST:PORT it runs against that running broker instead, configured by waybill broker
config from the PKI in --pki DIR: it issues its trucks (--name-prefix, sim-: sim-00001 ...) and, with
--dispatch, sim-dispatch into that PKI, reuses them on later runs, and tells the broker as waybill broker
sync does. It cannot restart that broker (--restart-broker-at is refused) and does not measure it
(broker_rss and broker_cpu_s are absent). --dispatch is refused when the PKI holds trucks that are not
the simulation's: its dispatch would receipt their records.

Example: waybill fleet sim --trucks 1000 --duration 5m --dispatch --confirm --stall-dispatch 1m --restart-broker-at 3m
         waybill fleet sim --broker mqtts://127.0.0.1:8883 --pki /etc/waybill/pki --trucks 200 --dispatch

Flags:`)
	trucks := fs.Int("trucks", 100, "number of trucks")
	duration := fs.Duration("duration", fleetsim.Config{}.Duration, "how long the trucks drive (zero: 1m)")
	drain := fs.Duration("drain", 0, "longest wait after driving for the stores to empty (zero: 2m)")
	dir := fs.String("dir", "", "working directory (zero: a temporary one, removed at the end)")
	rate := fs.Int("start-rate", 0, "trucks switched on per second (zero: 500; negative: all at once)")
	window := fs.Duration("reconnect-window", 0, "after a drop, a truck reconnects within a random wait up to this (zero: 30s, the agent's default)")
	disp := fs.Bool("dispatch", false, "run the dispatch side (verified consumer, archive, receipts)")
	receiptDelay := fs.Duration("receipt-delay", 0, "dispatch's receipt delay (zero: dispatch's default, 30s)")
	confirm := fs.Bool("confirm", false, "confirm a delivery at every stop (a delivered event)")
	stall := fs.Duration("stall-dispatch", 0, "dispatch stops reading for this long (needs --dispatch)")
	stallAt := fs.Duration("stall-at", 0, "when the stall begins (zero: a quarter of --duration)")
	restartAt := fs.Duration("restart-broker-at", 0, "restart the broker at this point of the drive (zero: never)")
	drop := fs.Float64("drop-link", 0, "share of trucks whose link is cut for a while (0.1: 10 %)")
	dropAt := fs.Duration("drop-link-at", 0, "when the links are cut (zero: half of --duration)")
	dropFor := fs.Duration("drop-link-for", 0, "how long the links stay cut (zero: 1m)")
	seed := fs.Uint64("seed", 0, "route seed")
	broker := fs.String("broker", "", "run against this running broker, mqtts://HOST:PORT, instead of starting one (needs --pki)")
	pkiDir := fs.String("pki", "", "with --broker: the fleet PKI the broker was configured from; the simulation's identities are issued into it")
	namePrefix := fs.String("name-prefix", "", "the simulation's identity names: PREFIX00001 ... and PREFIXdispatch (zero: sim-); pick one no real identity's name starts with")
	topicPrefix := fs.String("prefix", "", "topic prefix of the broker's rules, as given to waybill broker config (zero: fleet)")
	workers := fs.Int("workers", 0, "worker processes for the trucks (zero: as many as the open-file limit needs; 1: all in this process)")
	verbose := fs.Bool("v", false, "log the clients' warnings and errors to stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	cfg := fleetsim.Config{Dir: *dir, Trucks: *trucks, Duration: *duration, Drain: *drain, StartRate: *rate, ReconnectWindow: *window,
		Dispatch: *disp, ReceiptDelay: *receiptDelay, Confirm: *confirm, StallDispatch: *stall, StallDispatchAt: *stallAt,
		RestartBrokerAt: *restartAt, DropLink: *drop, DropLinkAt: *dropAt, DropLinkFor: *dropFor, Seed: *seed,
		Broker: *broker, PKIDir: *pkiDir, NamePrefix: *namePrefix, Prefix: *topicPrefix,
		Workers: *workers, WorkerArgs: []string{"fleet", workerCommand}, Progress: s.err}
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if cfg.Dir == "" {
		tmp, err := os.MkdirTemp("", "waybill-fleet-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		cfg.Dir = filepath.Join(tmp, "fleet")
	}
	sum, err := fleetsim.Run(ctx, cfg)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(s.out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(sum); err != nil {
		return err
	}
	if sum.Lost != 0 {
		return fmt.Errorf("fleet sim: %d records lost (stored by a truck, never received, no longer queued)", sum.Lost)
	}
	return nil
}
