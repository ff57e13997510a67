// Command waybill-agent is the daemon that runs on a truck's telematics unit.
package main

import (
	"fmt"
	"os"
)

// version is set by the Makefile with -ldflags "-X main.version=...".
var version = "dev"

const usage = `waybill-agent: the in-truck telematics daemon.

Usage:
  waybill-agent run --config FILE     run the daemon
  waybill-agent check --config FILE   validate the configuration and its environment
  waybill-agent version               print the version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "version", "--version":
		fmt.Println("waybill-agent", version)
	case "-h", "--help", "help":
		fmt.Print(usage)
	case "run", "check":
		fmt.Fprintf(os.Stderr, "waybill-agent %s: not built yet (issue 5: the in-truck daemon)\n", os.Args[1])
		os.Exit(1)
	default:
		fmt.Fprintf(os.Stderr, "waybill-agent: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
}
