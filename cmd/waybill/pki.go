package main

import "context"

func runPKI(_ context.Context, _ streams, _ []string) error {
	return notBuilt("waybill pki", "issue 4")
}
