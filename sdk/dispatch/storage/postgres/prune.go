package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// PruneFixes deletes at most limit fixes older than before in one statement. The rows are found store by
// store through the primary key (store, time, seq), the oldest first, so a store with nothing to prune
// costs one index probe; rows another process is deleting are skipped (FOR UPDATE SKIP LOCKED), so
// several processes prune at once without waiting for each other or deleting a row twice.
func (s *Store) PruneFixes(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, errors.New("postgres: PruneFixes: limit must be positive")
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM fixes WHERE ctid = ANY(ARRAY(
		SELECT f.ctid FROM stores s CROSS JOIN LATERAL (
			SELECT ctid FROM fixes WHERE store_id = s.id AND t < $1 ORDER BY t LIMIT $2 FOR UPDATE SKIP LOCKED) f
		LIMIT $2))`, before.UTC(), limit)
	if err != nil {
		return 0, fmt.Errorf("postgres: pruning fixes: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
