package main

import "context"

func runWatch(_ context.Context, _ streams, _ []string) error {
	return notBuilt("waybill watch", "issue 4")
}
