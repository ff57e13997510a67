package dispatch

import (
	"context"

	"github.com/waybill-iot/waybill/sdk"
)

// Record is dispatch's own durable record of what the trucks sent: the last hop of the end-to-end promise
// (see doc.go). The consumer commits every verified update to it before Handle and before the PUBLISH is
// acknowledged to the broker, and a Client receipts to the truck only records whose Commit returned nil.
// The subpackage archive is the embedded default (bbolt).
type Record interface {
	// Commit returns nil only once u is durably stored (on disk, fsync'd). It must be idempotent: the
	// same fix or event (by truck, epoch and record seq) committed again is harmless, because the consumer
	// commits duplicates too (they may have been dropped from its lossy duplicate memory, and a duplicate
	// is receipted again). u holds fixes, an event or a status; never a rejection.
	Commit(ctx context.Context, u Update) error
}

// committedFunc learns the record sequence numbers of one truck and epoch that are in the Record and were
// handled: the receipts a Client sends.
type committedFunc func(truck string, epoch sdk.Epoch, seqs []uint64)
