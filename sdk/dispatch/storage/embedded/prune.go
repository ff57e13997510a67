package embedded

import (
	"context"
	"time"
)

// PruneFixes deletes at most limit fixes older than before from the archive, in one bbolt transaction
// (sdk/dispatch/archive Archive.PruneFixes: the archive's layout is that package's, so the deleting is done
// there). The archive scans on where its last call stopped, so a pass reads each fix once; fewer than limit:
// the scan reached the end (the next call starts a new pass).
func (s *Store) PruneFixes(ctx context.Context, before time.Time, limit int) (int, error) {
	return s.arc.PruneFixes(ctx, before, limit)
}
