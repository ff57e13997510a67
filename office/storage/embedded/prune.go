package embedded

import (
	"context"
	"fmt"
	"time"

	"github.com/waybill-iot/waybill/office/storage"
)

// fixPruner is the archive's retention method (sdk/dispatch/archive Archive.PruneFixes): the archive's
// layout is that package's, so the deleting is done there.
type fixPruner interface {
	PruneFixes(ctx context.Context, before time.Time, limit int) (int, error)
}

// PruneFixes deletes at most limit fixes older than before from the archive, in one bbolt transaction.
// The archive scans on where its last call stopped, so a pass reads each fix once; fewer than limit: the
// scan reached the end (the next call starts a new pass).
func (s *Store) PruneFixes(ctx context.Context, before time.Time, limit int) (int, error) {
	p, ok := any(s.arc).(fixPruner)
	if !ok {
		return 0, fmt.Errorf("embedded: %w: this build's sdk/dispatch/archive has no Archive.PruneFixes", storage.ErrNoPruning)
	}
	return p.PruneFixes(ctx, before, limit)
}
