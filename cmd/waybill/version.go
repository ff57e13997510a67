package main

import (
	"context"
	"fmt"
)

// version is set by the Makefile with -ldflags "-X main.version=...".
var version = "dev"

func runVersion(_ context.Context, s streams, _ []string) error {
	fmt.Fprintln(s.out, "waybill", version)
	return nil
}
