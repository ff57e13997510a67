package main

import "context"

func runDecode(_ context.Context, _ streams, _ []string) error {
	return notBuilt("waybill decode", "issue 4")
}
