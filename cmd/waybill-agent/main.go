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
	"syscall"

	"github.com/waybill-iot/waybill/agent"
)

// version is set by the Makefile with -ldflags "-X main.version=...".
var version = "dev"

const usage = `waybill-agent: the in-truck telematics daemon.

Usage:
  waybill-agent run --config FILE               run the daemon
  waybill-agent check --config FILE [--offline] validate the configuration and its environment
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
	case "run", "check":
	default:
		fmt.Fprintf(stderr, "waybill-agent: unknown command %q\n\n%s", args[0], usage)
		return 2
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
