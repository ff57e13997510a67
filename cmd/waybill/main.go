// Command waybill is the dispatch and operator tool: PKI, broker configuration, orders, live view,
// decoding, GPS tools and store inspection. Each subcommand lives in its own file.
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
)

// command is one top-level subcommand; run gets the arguments after its name.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, s streams, args []string) error
}

// streams are the command's standard streams, passed in so tests can run commands in-process.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

func commands() []command {
	return []command{
		{"pki", "fleet CA and certificates: init, issue, revoke", runPKI},
		{"broker", "broker configuration and a development broker: config, run", runBroker},
		{"order", "create, cancel and list orders", runOrder},
		{"watch", "live, verified view of the fleet", runWatch},
		{"dispatch", "the dispatch office: run --config FILE (consumer, order sender, HTTP API, console); migrate --config FILE --from DIR", runDispatch},
		{"decode", "show any Waybill message as JSON", runDecode},
		{"gps", "GPS tools: decode, sim, sky", runGPS},
		{"store", "inspect a store: inspect DIR", runStore},
		{"fleet", "fleet simulator: sim (N real truck clients, faults, a JSON summary)", runFleet},
		{"demo", "run the whole system on this machine (make demo)", runDemo},
		{"version", "print the version", runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "waybill: the Waybill dispatch and operator tool.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: waybill COMMAND [ARGS]   (waybill COMMAND --help for details)")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, streams{os.Stdin, os.Stdout, os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit code.
func run(ctx context.Context, s streams, args []string) int {
	if len(args) == 0 {
		usage(s.err)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(s.out)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, s, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, new(exitError)):
			var e exitError
			errors.As(err, &e)
			if e.msg != "" {
				fmt.Fprintf(s.err, "waybill %s: %s\n", c.name, e.msg)
			}
			return e.code
		case errors.As(err, new(usageError)):
			fmt.Fprintf(s.err, "waybill %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(s.err, "waybill %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(s.err, "waybill: unknown command %q\n\n", args[0])
	usage(s.err)
	return 2
}

// usageError marks a mistake in the command line (exit code 2) rather than a failure (exit code 1).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitError ends a command with a specific exit code (documented in the command's --help) after it said
// what happened on standard output; msg, if any, goes to standard error.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return fmt.Sprintf("exit status %d: %s", e.code, e.msg) }

// notBuilt is returned by subcommands whose issue has not landed yet.
func notBuilt(what, issue string) error {
	return fmt.Errorf("%s is not built yet (%s)", what, issue)
}
