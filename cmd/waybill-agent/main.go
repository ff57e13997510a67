// Command waybill-agent is the daemon that runs on a truck's telematics unit. main only parses the command
// line and handles signals; package agent does the work.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/waybill-iot/waybill/agent"
)

// version is set by the Makefile with -ldflags "-X main.version=...".
var version = "dev"

const usage = `waybill-agent: the in-truck telematics daemon.

Usage:
  waybill-agent run --config FILE               run the daemon
  waybill-agent check --config FILE [--offline] validate the configuration and its environment
  waybill-agent odometer show --config FILE     print the saved odometer (agent stopped)
  waybill-agent odometer set READING --config FILE
                                                set it from the vehicle's odometer, with its unit:
                                                123456.7km, 76712.4mi or 500m (agent stopped)
  waybill-agent version                         print the version
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "version", "--version":
		fmt.Fprintln(stdout, "waybill-agent", version)
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "run", "check", "odometer":
	default:
		fmt.Fprintf(stderr, "waybill-agent: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var odoArgs []string
	if args[0] == "odometer" {
		if len(args) < 2 || (args[1] != "show" && args[1] != "set") {
			fmt.Fprintf(stderr, "waybill-agent odometer: want show or set\n\n%s", usage)
			return 2
		}
		odoArgs = []string{args[1]}
		args = args[1:]
		if odoArgs[0] == "set" {
			if len(args) < 2 || strings.HasPrefix(args[1], "-") {
				fmt.Fprintln(stderr, "waybill-agent odometer set: give the reading with its unit, e.g. 123456.7km")
				return 2
			}
			odoArgs = append(odoArgs, args[1])
			args = args[1:]
		}
	}
	fs := flag.NewFlagSet("waybill-agent "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/waybill/agent.toml", "configuration file (TOML)")
	offline := fs.Bool("offline", false, "check: skip the broker and the GPS receiver")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := agent.LoadConfig(*path, os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "waybill-agent:", err)
		return 1
	}
	if odoArgs != nil {
		return odometer(ctx, cfg, odoArgs, stdout, stderr)
	}
	if args[0] == "check" {
		if !agent.FormatCheck(stdout, agent.Check(ctx, cfg, agent.CheckOptions{Offline: *offline})) {
			return 1
		}
		return 0
	}
	if err := agent.Run(ctx, cfg, agent.Options{Version: version}); err != nil {
		fmt.Fprintln(stderr, "waybill-agent:", err)
		return 1
	}
	return 0
}

// odometer shows or sets the saved odometer of a stopped agent.
func odometer(ctx context.Context, cfg agent.Config, args []string, stdout, stderr io.Writer) int {
	if args[0] == "show" {
		m, at, via, err := agent.ReadOdometer(cfg)
		if err != nil {
			fmt.Fprintln(stderr, "waybill-agent odometer:", err)
			return 1
		}
		fmt.Fprintf(stdout, "%.1f km", m/1000)
		if via != "" {
			fmt.Fprintf(stdout, " (last set by %s at %s)", via, at.Format(time.RFC3339))
		}
		fmt.Fprintln(stdout)
		return 0
	}
	m, err := agent.ParseDistance(args[1])
	if err != nil {
		fmt.Fprintln(stderr, "waybill-agent odometer set:", err)
		return 2
	}
	prev, err := agent.SetOdometer(ctx, cfg, m, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "waybill-agent odometer set:", err)
		return 1
	}
	fmt.Fprintf(stdout, "odometer set to %.1f km (was %.1f km)\n", m/1000, prev/1000)
	return 0
}
