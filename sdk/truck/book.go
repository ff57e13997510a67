package truck

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"time"

	"github.com/waybill-iot/waybill/store"
)

// The order book keeps two indexes beside the entries (bucket orders), written in the same transaction as
// every entry, so that what runs per GPS fix and per page never reads the whole history:
//
//	orders-open    key order id, value the FNV-64a hash of the entry as stored: the orders waiting for
//	               the driver (state active)
//	orders-closed  key closed time (8 bytes, big-endian Unix nanoseconds) + order id,
//	               value closedValue: state, flags, expiry; oldest closed first
//	orders-meta    "index" = indexVersion once both indexes were built from the entries
//
// A book from before the indexes (or from a salvaged store, whose pages may be missing from one index but
// not the other) is indexed once at NewBook from a full read of the entries.
const (
	openBucket   = "orders-open"
	closedBucket = "orders-closed"
	metaBucket   = "orders-meta"
	indexVersion = "1"
)

var keyIndex = []byte("index")

const (
	// DefaultKeepClosed is how long a closed order stays in the book when BookConfig.KeepClosed is zero.
	DefaultKeepClosed = 30 * 24 * time.Hour
	// DefaultPruneInterval is how often Run prunes when BookConfig.PruneInterval is zero.
	DefaultPruneInterval = time.Hour
	// DefaultPageSize is the page of Closed when ClosedQuery.Limit is zero.
	DefaultPageSize = 50
	// MaxPageSize is the largest page of Closed: a page is decoded whole.
	MaxPageSize = 1000

	// pruneBatch bounds the orders one Prune removes, in one transaction: a few hundred kilobytes of pages,
	// and a store that other writers (fixes, actions) wait on for tens of milliseconds at most on an ARM
	// board.
	pruneBatch = 500
	// expiryMargin is how long after its expiry a closed order is still kept. What stops a re-sent revision
	// of a pruned order from coming back as a new one is the verifier, which refuses an order past its
	// Expires (by the truck's clock); the margin covers a truck clock stepped back after the pruning (a GPS
	// receiver's first fixes, a unit without a real-time clock), up to a day.
	expiryMargin = 24 * time.Hour
)

// ErrBadCursor is a ClosedQuery.Cursor that no Closed page returned.
var ErrBadCursor = errors.New("truck: bad order book cursor")

// errStop ends a store walk early.
var errStop = errors.New("stop")

// isOpen reports whether e waits for the driver.
func (e *Entry) isOpen() bool { return e.State == StateActive && !e.Unseen }

// closedAt is when e closed on this truck. Entries written before Closed existed have none: their last
// change (the driver's action, or the revision that cancelled it) stands in.
func (e *Entry) closedAt() time.Time {
	if !e.Closed.IsZero() {
		return e.Closed
	}
	t := e.Received
	if e.Action != nil && e.Action.Time.After(t) {
		t = e.Action.Time
	}
	return t
}

// entryVersion is the open index's value for an entry stored as raw: it changes with every change of the
// entry, so Active can keep decoded entries between calls and decode only what changed.
func entryVersion(raw []byte) []byte {
	h := fnv.New64a()
	h.Write(raw)
	return h.Sum(nil)
}

func closedKey(t time.Time, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(max(t.UnixNano(), 0)))
	return append(k, id...)
}

func parseClosedKey(k []byte) (time.Time, string, bool) {
	if len(k) <= 8 {
		return time.Time{}, "", false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))).UTC(), string(k[8:]), true
}

// closedValue layout: [0] version (1), [1] state code, [2] flags (bit 0: unseen), [3:11] the order's
// expiry, Unix nanoseconds. Enough to prune, count and page without decoding entries.
const closedValueLen = 11

var stateCodes = []State{"", StateActive, StateDelivered, StateFailed, StateCancelled}

func closedValue(e *Entry) []byte {
	v := make([]byte, closedValueLen)
	v[0] = 1
	v[1] = byte(max(slices.Index(stateCodes, e.State), 0))
	if e.Unseen {
		v[2] = 1
	}
	binary.BigEndian.PutUint64(v[3:], uint64(max(e.Order.Expires.UnixNano(), 0)))
	return v
}

type closedInfo struct {
	state   State
	unseen  bool
	expires time.Time
}

func parseClosedValue(v []byte) (closedInfo, bool) {
	if len(v) < closedValueLen || v[0] != 1 || int(v[1]) >= len(stateCodes) {
		return closedInfo{}, false
	}
	return closedInfo{state: stateCodes[v[1]], unseen: v[2]&1 != 0,
		expires: time.Unix(0, int64(binary.BigEndian.Uint64(v[3:11]))).UTC()}, true
}

// putEntry stores e and keeps both indexes in step, in tx. prev is the entry as it was before this change
// (nil for a new order). An entry closing now gets Closed = now; one already closed keeps its closed time.
func putEntry(tx *store.Tx, prev, e *Entry, now time.Time) error {
	prevClosed := prev != nil && prev.State != StateActive
	switch {
	case e.State == StateActive:
		e.Closed = time.Time{}
	case e.Closed.IsZero() && prevClosed:
		e.Closed = prev.closedAt()
	case e.Closed.IsZero():
		e.Closed = now
	}
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	id := []byte(e.Order.ID)
	if err := tx.Put(orderBucket, id, raw); err != nil {
		return err
	}
	if e.isOpen() {
		err = tx.Put(openBucket, id, entryVersion(raw))
	} else {
		err = tx.Delete(openBucket, id)
	}
	if err != nil {
		return err
	}
	var newKey []byte
	if e.State != StateActive {
		newKey = closedKey(e.Closed, e.Order.ID)
	}
	if prevClosed {
		if old := closedKey(prev.closedAt(), e.Order.ID); !bytes.Equal(old, newKey) {
			if err := tx.Delete(closedBucket, old); err != nil {
				return err
			}
		}
	}
	if newKey != nil {
		return tx.Put(closedBucket, newKey, closedValue(e))
	}
	return nil
}

// activeEntry is a decoded active order and the version (entryVersion) it was decoded from.
type activeEntry struct {
	version string
	e       Entry
}

// Active returns the orders waiting for the driver (state active), newest received first. It reads the
// open-order index (one small read) and decodes only the orders that changed since the last call, so its
// cost does not grow with the closed history: it is what runs for every GPS fix. The index and each entry
// change in one transaction, so a kept entry is never stale: its version is read from the index each time.
func (b *Book) Active() ([]Entry, error) {
	if !b.indexed.Load() {
		return b.activeByScan()
	}
	b.amu.Lock()
	defer b.amu.Unlock()
	type indexed struct{ id, version []byte }
	var ids []indexed
	if err := b.cfg.Store.ForEach(openBucket, func(k, v []byte) error {
		ids = append(ids, indexed{k, v})
		return nil
	}); err != nil {
		return nil, fmt.Errorf("truck: open orders: %w", err)
	}
	out := make([]Entry, 0, len(ids))
	kept := make(map[string]activeEntry, len(ids))
	for _, x := range ids {
		if c, ok := b.active[string(x.id)]; ok && c.version == string(x.version) {
			out = append(out, c.e)
			kept[string(x.id)] = c
			continue
		}
		e, raw, found, err := b.get(x.id)
		if err != nil {
			return nil, err
		}
		// Closed between the two reads, or an index entry a salvage left behind: not waiting.
		if found && e.isOpen() {
			out = append(out, e)
			kept[string(x.id)] = activeEntry{string(entryVersion(raw)), e}
		}
	}
	b.active = kept
	sortNewest(out)
	return out, nil
}

// activeByScan is Active from a full read, for a book whose index could not be built.
func (b *Book) activeByScan() ([]Entry, error) {
	all, err := b.Orders()
	out := all[:0]
	for _, e := range all {
		if e.isOpen() {
			out = append(out, e)
		}
	}
	return out, err
}

func sortNewest(es []Entry) {
	sort.Slice(es, func(i, j int) bool { return es[i].Received.After(es[j].Received) })
}

// get reads one entry, and returns it with its stored form.
func (b *Book) get(id []byte) (Entry, []byte, bool, error) {
	raw, err := b.cfg.Store.Get(orderBucket, id)
	if errors.Is(err, store.ErrNotFound) {
		return Entry{}, nil, false, nil
	}
	if err != nil {
		return Entry{}, nil, false, fmt.Errorf("truck: order book entry %s: %w", id, err)
	}
	var e Entry
	if err := json.Unmarshal(raw, &e); err != nil {
		return Entry{}, nil, false, fmt.Errorf("%w %s: %w", errBadEntry, id, err)
	}
	return e, raw, true, nil
}

// Get returns one order of the book. A cancellation of an order this truck never held is not one (false).
func (b *Book) Get(id string) (Entry, bool, error) {
	if id == "" {
		return Entry{}, false, nil
	}
	e, _, found, err := b.get([]byte(id))
	if err != nil || !found || e.Unseen {
		return Entry{}, false, err
	}
	return e, true, nil
}

// ClosedQuery selects a page of closed orders for Closed.
type ClosedQuery struct {
	// State keeps only delivered, failed or cancelled orders. Empty: every closed state.
	State State
	// Since keeps orders closed at or after it. Zero: no bound.
	Since time.Time
	// Limit is the most orders in the page, at most MaxPageSize. Zero or less: DefaultPageSize.
	Limit int
	// Cursor continues from a previous page's Next. Empty: the newest closed orders.
	Cursor string
}

// ClosedPage is one page of closed orders, newest closed first.
type ClosedPage struct {
	Entries []Entry
	// Next is the cursor of the following (older) page; empty when this is the last.
	Next string
}

// Closed returns a page of closed orders (delivered, failed, cancelled), newest closed first. It walks the
// closed-order index (a few bytes per order, bounded by KeepClosed) and decodes only the page, so a driver's
// page or a status count costs the page, not the history.
func (b *Book) Closed(q ClosedQuery) (ClosedPage, error) {
	switch q.State {
	case "", StateDelivered, StateFailed, StateCancelled:
	default:
		return ClosedPage{}, fmt.Errorf("truck: %q is not a closed state (delivered, failed, cancelled)", q.State)
	}
	if q.Limit > MaxPageSize {
		return ClosedPage{}, fmt.Errorf("truck: a page of %d closed orders; at most %d", q.Limit, MaxPageSize)
	}
	if q.Limit <= 0 {
		q.Limit = DefaultPageSize
	}
	var before []byte
	if q.Cursor != "" {
		k, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		if _, _, ok := parseClosedKey(k); err != nil || !ok {
			return ClosedPage{}, fmt.Errorf("%w %q", ErrBadCursor, q.Cursor)
		}
		before = k
	}
	if !b.indexed.Load() {
		return ClosedPage{}, errors.New("truck: the order book's index is not built (see the log at start); Orders lists it")
	}
	since := uint64(max(q.Since.UnixNano(), 0))
	if q.Since.IsZero() {
		since = 0
	}
	// The walk is oldest first: keep the newest Limit+1 matches in a ring.
	ring := make([][]byte, q.Limit+1)
	n := 0
	err := b.cfg.Store.ForEach(closedBucket, func(k, v []byte) error {
		if before != nil && bytes.Compare(k, before) >= 0 {
			return errStop
		}
		info, ok := parseClosedValue(v)
		if !ok || len(k) <= 8 || info.unseen || binary.BigEndian.Uint64(k[:8]) < since ||
			(q.State != "" && info.state != q.State) {
			return nil
		}
		ring[n%len(ring)] = k
		n++
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return ClosedPage{}, fmt.Errorf("truck: closed orders: %w", err)
	}
	var page ClosedPage
	for i := n - 1; i >= max(n-q.Limit, 0); i-- {
		k := ring[i%len(ring)]
		e, _, found, err := b.get(k[8:])
		if err != nil {
			return ClosedPage{}, err
		}
		if found {
			page.Entries = append(page.Entries, e)
		}
		if n > q.Limit && i == n-q.Limit {
			page.Next = base64.RawURLEncoding.EncodeToString(k)
		}
	}
	return page, nil
}

// Counts returns how many orders the book holds in each state, from the indexes (no entry is decoded).
// Cancellations of orders this truck never held are not counted.
func (b *Book) Counts() (map[State]int, error) {
	counts := map[State]int{StateActive: 0, StateDelivered: 0, StateFailed: 0, StateCancelled: 0}
	if !b.indexed.Load() {
		all, err := b.Orders()
		for _, e := range all {
			counts[e.State]++
		}
		return counts, err
	}
	err := b.cfg.Store.ForEach(openBucket, func(_, _ []byte) error {
		counts[StateActive]++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("truck: open orders: %w", err)
	}
	err = b.cfg.Store.ForEach(closedBucket, func(_, v []byte) error {
		if info, ok := parseClosedValue(v); ok && !info.unseen {
			counts[info.state]++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("truck: closed orders: %w", err)
	}
	return counts, nil
}

// Prune removes from the book the closed orders (delivered, failed, cancelled, and cancellations of orders
// never held) that closed more than KeepClosed ago and whose expiry passed more than a day ago, at most max
// of them (zero or less: 500) in one transaction, and reports how many it removed and whether more are due.
// Active orders are never removed, however old. The proofs of delivery in the store's queue are not
// touched: they leave it on dispatch's receipt, as always.
//
// Why the expiry: a pruned order leaves no trace, so a revision of it re-sent by dispatch must be refused by
// the verifier as expired rather than taken as a new order. Orders normally expire within days, long before
// KeepClosed; one with a later expiry stays until it has passed.
func (b *Book) Prune(ctx context.Context, max int) (removed int, more bool, err error) {
	if !b.indexed.Load() {
		return 0, false, nil // nothing tells old from new without the index; NewBook logged why
	}
	if max <= 0 {
		max = pruneBatch
	}
	now := b.cfg.Clock().UTC()
	cutoff := uint64(now.Add(-b.cfg.KeepClosed).UnixNano())
	var keys [][]byte
	err = b.cfg.Store.ForEach(closedBucket, func(k, v []byte) error {
		if len(k) > 8 && binary.BigEndian.Uint64(k[:8]) > cutoff {
			return errStop
		}
		if info, ok := parseClosedValue(v); ok && now.Before(info.expires.Add(expiryMargin)) {
			return nil // not expired yet: a re-send would still verify
		}
		if len(keys) == max {
			more = true
			return errStop
		}
		keys = append(keys, k)
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return 0, false, fmt.Errorf("truck: prune the order book: %w", err)
	}
	if len(keys) == 0 {
		return 0, false, nil
	}
	var dropped []string // unreadable entries deleted; logged once committed
	err = b.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		removed, dropped = 0, nil
		for _, k := range keys {
			if err := tx.Delete(closedBucket, k); err != nil {
				return err
			}
			_, id, ok := parseClosedKey(k)
			if !ok {
				continue // not an index key: nothing to remove but itself
			}
			cur, found, err := getEntry(tx, id)
			switch {
			case errors.Is(err, store.ErrCorrupt) || errors.Is(err, errBadEntry):
				dropped = append(dropped, id) // past retention by its index key, and unreadable
			case err != nil:
				return err
			case !found:
				continue
			case cur.State == StateActive || !bytes.Equal(closedKey(cur.closedAt(), id), k):
				continue // a stale index key: the entry changed since (putEntry wrote its own key)
			}
			if err := tx.Delete(orderBucket, []byte(id)); err != nil {
				return err
			}
			if err := tx.Delete(openBucket, []byte(id)); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("truck: prune the order book: %w", err)
	}
	b.stats.pruned.Add(uint64(removed))
	for _, id := range dropped {
		b.cfg.Logger.Warn("truck: unreadable order book entry past retention removed", "order", id)
	}
	return removed, more, nil
}

// pruneAll prunes in batches until nothing is due or ctx ends. A failure is logged, and retried at the next
// round: the book only grows meanwhile.
func (b *Book) pruneAll(ctx context.Context) {
	total := 0
	start := time.Now()
	for ctx.Err() == nil {
		n, more, err := b.Prune(ctx, pruneBatch)
		total += n
		if err != nil {
			if ctx.Err() == nil {
				b.cfg.Logger.Error("truck: pruning the order book failed; retrying at the next round", "err", err)
			}
			break
		}
		if !more {
			break
		}
	}
	if total > 0 {
		b.cfg.Logger.Info("truck: closed orders past retention removed from the order book", "orders", total,
			"keep_closed", b.cfg.KeepClosed, "took", time.Since(start))
	}
}

// Run prunes the book at once and then every PruneInterval until ctx ends. It returns nil when ctx ends:
// a failed round is logged and retried, never fatal to the caller (the Client runs it).
func (b *Book) Run(ctx context.Context) error {
	t := time.NewTicker(b.cfg.PruneInterval)
	defer t.Stop()
	for {
		b.pruneAll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// checkIndex builds the indexes from the entries when the book has none yet (written before they existed)
// or the store was salvaged (a lost page may have taken index keys but not entries, or the reverse). A book
// that cannot be read whole is left unindexed: Active and Counts then read it all (as before the index),
// and nothing is pruned; the error is logged and the next start tries again.
func (b *Book) checkIndex(ctx context.Context) {
	st := b.cfg.Store
	v, err := st.Get(metaBucket, keyIndex)
	if err == nil && string(v) == indexVersion && st.Origin().Kind != store.OriginSalvaged {
		b.indexed.Store(true)
		return
	}
	start := time.Now()
	n, err := b.rebuildIndex(ctx)
	if err != nil {
		b.cfg.Logger.Error("truck: the order book could not be indexed; every fix reads it whole until a restart succeeds",
			"err", err)
		return
	}
	b.indexed.Store(true)
	b.cfg.Logger.Info("truck: order book indexed", "orders", n, "took", time.Since(start))
}

func (b *Book) rebuildIndex(ctx context.Context) (int, error) {
	st := b.cfg.Store
	var entries []Entry
	var versions [][]byte
	err := st.ForEach(orderBucket, func(k, v []byte) error {
		var e Entry
		if err := json.Unmarshal(v, &e); err != nil {
			b.cfg.Logger.Error("truck: order book entry unreadable; left out of the index", "order", string(k), "err", err)
			return nil
		}
		entries = append(entries, e)
		versions = append(versions, entryVersion(v))
		return nil
	})
	if err != nil {
		return 0, err
	}
	var stale [2][][]byte // keys of the old indexes: open, closed
	for i, bucket := range []string{openBucket, closedBucket} {
		if err := st.ForEach(bucket, func(k, _ []byte) error {
			stale[i] = append(stale[i], k)
			return nil
		}); err != nil {
			return 0, err
		}
	}
	err = st.Update(ctx, func(tx *store.Tx) error {
		for i, bucket := range []string{openBucket, closedBucket} {
			for _, k := range stale[i] {
				if err := tx.Delete(bucket, k); err != nil {
					return err
				}
			}
		}
		for i := range entries {
			e := &entries[i]
			if e.isOpen() {
				if err := tx.Put(openBucket, []byte(e.Order.ID), versions[i]); err != nil {
					return err
				}
			}
			if e.State != StateActive {
				if err := tx.Put(closedBucket, closedKey(e.closedAt(), e.Order.ID), closedValue(e)); err != nil {
					return err
				}
			}
		}
		return tx.Put(metaBucket, keyIndex, []byte(indexVersion))
	})
	return len(entries), err
}
