package office

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
)

const (
	// MinKeepFixes is the shortest Config.KeepFixes: a slip like "30m" for 30 months must not erase the
	// fleet's history.
	MinKeepFixes = 7 * 24 * time.Hour
	// DefaultPruneEvery is the time between pruning passes when Config.PruneEvery is zero.
	DefaultPruneEvery = time.Hour
	// DefaultPruneBatch is the most fixes one transaction deletes when Config.PruneBatch is zero (the
	// embedded engine: about 10 ms, commits wait that long at most; PostgreSQL: 10-300 ms, locking only
	// the deleted rows).
	DefaultPruneBatch = 5000
)

// ParseRetention reads a retention period: whole days like "400d", or a duration with a unit like "720h".
// "0" or "0d" is zero: keep for ever.
func ParseRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("retention %q: want whole days like \"400d\"", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("retention %q: want days like \"400d\" (or a duration like \"720h\"; \"0\": for ever)", s)
	}
	return d, nil
}

// checkRetention validates the retention settings and fills in their defaults.
func (c *Config) checkRetention() error {
	if c.KeepFixes != 0 && c.KeepFixes < MinKeepFixes {
		return fmt.Errorf("office: Config.KeepFixes %v: want 0 (keep for ever) or at least %v (%d days)",
			c.KeepFixes, MinKeepFixes, MinKeepFixes/(24*time.Hour))
	}
	if c.PruneEvery < 0 || c.PruneBatch < 0 {
		return errors.New("office: Config.PruneEvery and PruneBatch cannot be negative")
	}
	if c.PruneEvery == 0 {
		c.PruneEvery = DefaultPruneEvery
	}
	if c.PruneBatch == 0 {
		c.PruneBatch = DefaultPruneBatch
	}
	return nil
}

// runPruner prunes every PruneEvery, the first time a minute after the start (the start's backlog first),
// until ctx ends or the storage cannot prune.
func (s *Service) runPruner(ctx context.Context) {
	t := time.NewTimer(min(time.Minute, s.cfg.PruneEvery))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.prune(ctx); errors.Is(err, storage.ErrNoPruning) {
			s.log.Error("retention: this storage cannot prune fixes: keep_fixes is not applied", "err", err)
			return
		}
		t.Reset(s.cfg.PruneEvery)
	}
}

// prune deletes the fixes older than KeepFixes, batch after batch, until a batch comes back short.
func (s *Service) prune(ctx context.Context) error {
	before := s.cfg.Clock().Add(-s.cfg.KeepFixes)
	start, total := time.Now(), 0
	for {
		n, err := s.cfg.Store.PruneFixes(ctx, before, s.cfg.PruneBatch)
		total += n
		s.fixesPruned.Add(uint64(n))
		if ctx.Err() != nil {
			return nil // stopping: the next start goes on
		}
		if err != nil {
			s.pruneErrors.Add(1)
			if !errors.Is(err, storage.ErrNoPruning) { // that one the caller logs, once
				s.log.Error("retention: pruning fixes failed (tried again at the next pass)", "older_than", before,
					"pruned", total, "err", err)
			}
			return err
		}
		if n < s.cfg.PruneBatch {
			break
		}
	}
	s.prunePass.Store(time.Now().Unix())
	if total == 0 {
		s.log.Debug("retention: no fixes to prune", "older_than", before)
		return nil
	}
	s.log.Info("retention: fixes pruned", "fixes", total, "older_than", before, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// keepText is KeepFixes for the log.
func keepText(d time.Duration) string {
	switch {
	case d == 0:
		return "for ever"
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
