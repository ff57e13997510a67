package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild()
		return
	}
	goleak.VerifyTestMain(m)
}

func openTemp(t testing.TB, o Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "queue.db")
	s, err := Open(path, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func reopen(t testing.TB, s *Store, o Options) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s2, err := Open(s.Path(), o)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { s2.Close() })
	return s2
}

func entry(l Lane, s string) Entry { return Entry{Lane: l, Kind: 7, Data: []byte(s)} }

func appendN(t testing.TB, s *Store, l Lane, prefix string, n int) []uint64 {
	t.Helper()
	var seqs []uint64
	for i := range n {
		got, err := s.Append(context.Background(), entry(l, fmt.Sprintf("%s%03d", prefix, i)))
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		seqs = append(seqs, got...)
	}
	return seqs
}

func data(recs []Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Data))
	}
	return out
}

func seqs(recs []Record) []uint64 {
	var out []uint64
	for _, r := range recs {
		out = append(out, r.Seq)
	}
	return out
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOrderAndAckAcrossReopen(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, Options{})
	epoch := s.Epoch()
	appendN(t, s, Normal, "n", 5)
	appendN(t, s, Critical, "c", 2)

	got, err := s.Peek(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"c000", "c001", "n000"}; !equal(data(got), want) {
		t.Fatalf("first peek = %v, want %v", data(got), want)
	}
	for _, r := range got {
		if r.Kind != 7 || r.Time.IsZero() {
			t.Fatalf("record %+v lost its kind or time", r)
		}
	}
	// Handed out records are not handed out again.
	next, _ := s.Peek(ctx, 2)
	if want := []string{"n001", "n002"}; !equal(data(next), want) {
		t.Fatalf("second peek = %v, want %v", data(next), want)
	}
	if err := s.Ack(ctx, got[0].Seq, got[2].Seq); err != nil {
		t.Fatal(err)
	}

	// After a reopen every unacked record comes back, in order, with the same seqs and epoch.
	s = reopen(t, s, Options{})
	if s.Epoch() != epoch {
		t.Fatalf("epoch changed across reopen: %x -> %x", epoch, s.Epoch())
	}
	all, err := s.Peek(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"c001", "n001", "n002", "n003", "n004"}; !equal(data(all), want) {
		t.Fatalf("after reopen = %v, want %v", data(all), want)
	}
	if want := []uint64{got[1].Seq, next[0].Seq, next[1].Seq}; !equal(seqs(all[:3]), want) {
		t.Fatalf("seqs changed across reopen: %v, want %v", seqs(all[:3]), want)
	}
	// New records get higher seqs than any before the reopen.
	n := appendN(t, s, Normal, "late", 1)
	if n[0] <= all[len(all)-1].Seq {
		t.Fatalf("seq after reopen %d not above %d", n[0], all[len(all)-1].Seq)
	}
	st := s.Stats()
	if st.Critical.Records != 1 || st.Normal.Records != 5 || st.Critical.InFlight != 1 || st.Normal.InFlight != 4 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestLanePriorityAppliesToLaterCriticalRecords(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, Options{})
	appendN(t, s, Normal, "n", 3)
	first, _ := s.Peek(ctx, 1)
	appendN(t, s, Critical, "c", 1)
	got, _ := s.Peek(ctx, 10)
	if want := []string{"c000", "n001", "n002"}; !equal(data(got), want) {
		t.Fatalf("peek = %v, want %v (first was %v)", data(got), want, data(first))
	}
}

func TestReleaseHandsOutAgainInOrder(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, Options{})
	appendN(t, s, Normal, "n", 6)
	a, _ := s.Peek(ctx, 2)
	b, _ := s.Peek(ctx, 2)
	s.Release(a[1].Seq, b[0].Seq)
	got, _ := s.Peek(ctx, 10)
	if want := []string{"n001", "n002", "n004", "n005"}; !equal(data(got), want) {
		t.Fatalf("after release = %v, want %v", data(got), want)
	}
}

func TestPeekNewestThenBacklogOldestFirst(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, Options{})
	appendN(t, s, Normal, "n", 4)
	newest, err := s.PeekNewest(ctx, Normal)
	if err != nil || newest == nil || string(newest.Data) != "n003" {
		t.Fatalf("PeekNewest = %v, %v; want n003", newest, err)
	}
	again, _ := s.PeekNewest(ctx, Normal)
	if again == nil || string(again.Data) != "n002" {
		t.Fatalf("second PeekNewest = %v, want n002 (n003 is in flight)", again)
	}
	rest, _ := s.Peek(ctx, 10)
	if want := []string{"n000", "n001"}; !equal(data(rest), want) {
		t.Fatalf("backlog = %v, want %v", data(rest), want)
	}
	none, err := s.PeekNewest(ctx, Critical)
	if err != nil || none != nil {
		t.Fatalf("PeekNewest on empty lane = %v, %v", none, err)
	}
}

func TestConcurrentAppendersShareCommits(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, Options{})
	const writers, each = 64, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := s.Append(ctx, entry(Normal, fmt.Sprintf("w%02d-%03d", w, i))); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Appended != writers*each || st.Normal.Records != writers*each {
		t.Fatalf("appended %d, stored %d, want %d", st.Appended, st.Normal.Records, writers*each)
	}
	if st.Commits >= st.Appended {
		t.Fatalf("%d commits for %d appends from %d writers: group commit did not share any", st.Commits, st.Appended, writers)
	}
	t.Logf("%d appends in %d commits (%.1f records per commit)", st.Appended, st.Commits, st.RecordsPerCmt)

	// Each writer's records come out in its own order.
	recs, _ := s.Peek(ctx, writers*each)
	last := map[string]string{}
	for _, d := range data(recs) {
		w := d[:3]
		if prev, ok := last[w]; ok && prev >= d {
			t.Fatalf("writer %s out of order: %s after %s", w, d, prev)
		}
		last[w] = d
	}
}

func TestFailedOperationDoesNotSpoilItsGroupCommit(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, Options{})
	var wg sync.WaitGroup
	boom := errors.New("boom")
	results := make([]error, 20)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.Update(ctx, func(tx *Tx) error {
				if _, err := tx.Append(entry(Critical, fmt.Sprint(i))); err != nil {
					return err
				}
				if i%4 == 0 {
					return boom
				}
				return tx.Put("orders", []byte(fmt.Sprint(i)), []byte("x"))
			})
		}()
	}
	wg.Wait()
	for i, err := range results {
		if (i%4 == 0) != errors.Is(err, boom) {
			t.Fatalf("op %d: err = %v", i, err)
		}
	}
	st := s.Stats()
	if st.Critical.Records != 15 {
		t.Fatalf("stored %d critical records, want 15 (failed ops must leave nothing)", st.Critical.Records)
	}
	n := 0
	if err := s.ForEach("orders", func(k, v []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 15 {
		t.Fatalf("%d state keys, want 15", n)
	}
}

func TestStateRoundTripAndAtomicReceipt(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, Options{})
	if _, err := s.Get("orders", []byte("o1")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get missing = %v, want ErrNotFound", err)
	}
	err := s.Update(ctx, func(tx *Tx) error {
		if err := tx.Put("orders", []byte("o1"), []byte("rev1")); err != nil {
			return err
		}
		v, err := tx.Get("orders", []byte("o1"))
		if err != nil || string(v) != "rev1" {
			return fmt.Errorf("read own write: %q, %v", v, err)
		}
		_, err = tx.Append(entry(Critical, "received o1"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, Options{})
	v, err := s.Get("orders", []byte("o1"))
	if err != nil || string(v) != "rev1" {
		t.Fatalf("Get after reopen = %q, %v", v, err)
	}
	recs, _ := s.Peek(ctx, 10)
	if want := []string{"received o1"}; !equal(data(recs), want) {
		t.Fatalf("queue = %v, want %v", data(recs), want)
	}
	err = s.Update(ctx, func(tx *Tx) error {
		if err := tx.Ack(recs[0].Seq); err != nil {
			return err
		}
		return tx.Delete("orders", []byte("o1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("orders", []byte("o1")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after delete = %v", err)
	}
	if st := s.Stats(); st.Critical.Records != 0 || st.Critical.InFlight != 0 {
		t.Fatalf("stats after ack = %+v", st.Critical)
	}
}

func TestLimitThinsOldFixesThenDropsButNeverCritical(t *testing.T) {
	ctx := context.Background()
	const limit = 8 << 10
	s, _ := openTemp(t, Options{MaxBytes: limit})
	appendN(t, s, Critical, "event", 10)
	appendN(t, s, Normal, "fix", 400) // about 25 bytes each: 10 KiB, over the limit
	st := s.Stats()
	if st.Bytes > limit {
		t.Fatalf("stored %d bytes, limit %d", st.Bytes, limit)
	}
	if st.Thinned == 0 {
		t.Fatalf("nothing thinned: %+v", st)
	}
	if st.Critical.Records != 10 {
		t.Fatalf("critical records = %d, want all 10", st.Critical.Records)
	}
	recs, _ := s.Peek(ctx, 1000)
	fixes := data(recs)[10:]
	if int64(len(fixes)) != st.Normal.Records || uint64(len(fixes))+st.Thinned+st.Dropped != 400 {
		t.Fatalf("%d fixes left + %d thinned + %d dropped != 400", len(fixes), st.Thinned, st.Dropped)
	}
	// The newest fixes are all there, the oldest are sparse.
	if fixes[len(fixes)-1] != "fix399" || fixes[len(fixes)-2] != "fix398" {
		t.Fatalf("newest fixes lost: ...%v", fixes[len(fixes)-3:])
	}
	t.Logf("kept %d of 400 fixes (%d thinned, %d dropped); oldest kept: %v", len(fixes), st.Thinned, st.Dropped, fixes[:5])

	// A store full of critical records refuses another one, clearly, and keeps what it has.
	s2, _ := openTemp(t, Options{MaxBytes: 2 << 10})
	var err error
	n := 0
	for err == nil && n < 1000 {
		_, err = s2.Append(ctx, entry(Critical, fmt.Sprintf("event%03d-with-a-longer-body", n)))
		n++
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("appending critical records past the limit: err = %v after %d", err, n)
	}
	if got := s2.Stats().Critical.Records; got != int64(n-1) {
		t.Fatalf("%d critical records kept, want %d", got, n-1)
	}
	// Normal records cannot push critical ones out either.
	if _, err := s2.Append(ctx, entry(Normal, fmt.Sprintf("normal%03d-with-a-longer-body", n))); !errors.Is(err, ErrFull) {
		t.Fatalf("normal append into a store full of critical records: %v", err)
	}
	t.Logf("ErrFull: %v", err)
}

func TestLimitCountsPersist(t *testing.T) {
	s, _ := openTemp(t, Options{MaxBytes: 4 << 10})
	appendN(t, s, Normal, "fix", 400)
	before := s.Stats()
	s = reopen(t, s, Options{MaxBytes: 4 << 10})
	after := s.Stats()
	if before.Thinned == 0 || after.Thinned != before.Thinned || after.Dropped != before.Dropped {
		t.Fatalf("counters not persisted: before %d/%d, after %d/%d", before.Thinned, before.Dropped, after.Thinned, after.Dropped)
	}
}

func TestWaitWakesOnAppendAndRelease(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, _ := openTemp(t, Options{})
	done := make(chan error, 1)
	go func() { done <- s.Wait(ctx) }()
	appendN(t, s, Normal, "n", 1)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	recs, _ := s.Peek(ctx, 1)
	go func() { done <- s.Wait(ctx) }()
	s.Release(recs[0].Seq)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelShort()
	s.Peek(ctx, 1)
	if err := s.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with nothing available = %v", err)
	}
	go func() { done <- s.Wait(ctx) }()
	s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait across Close = %v", err)
	}
	if _, err := s.Append(ctx, entry(Normal, "x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
}

func TestQuarantineKeepsRecordAndReason(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, Options{})
	seq := appendN(t, s, Critical, "undeliverable", 1)[0]
	if err := s.Quarantine(ctx, seq, "cannot encode: field too long"); err != nil {
		t.Fatal(err)
	}
	if recs, _ := s.Peek(ctx, 10); len(recs) != 0 {
		t.Fatalf("quarantined record handed out: %v", data(recs))
	}
	q, err := s.Quarantined()
	if err != nil || len(q) != 1 || q[0].Seq != seq || q[0].Reason != "cannot encode: field too long" || q[0].Lane != Critical {
		t.Fatalf("Quarantined = %+v, %v", q, err)
	}
	if st := s.Stats(); st.Quarantined != 1 || st.QuarantinedRecords != 1 || st.Critical.Records != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestBadInputIsRefused(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, Options{})
	if _, err := s.Append(ctx, Entry{Lane: 9, Data: []byte("x")}); err == nil {
		t.Fatal("unknown lane accepted")
	}
	if _, err := s.Append(ctx, Entry{Lane: Normal, Data: make([]byte, MaxRecordBytes+1)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized record: %v", err)
	}
	if err := s.Put(ctx, "", []byte("k"), nil); err == nil {
		t.Fatal("empty bucket name accepted")
	}
	if err := s.Put(ctx, "b", nil, nil); err == nil {
		t.Fatal("empty key accepted")
	}
}

// TestReleaseDuringPeekIsNotLost: releases racing with peeks (the uploader's publish goroutines release
// while its loop peeks) never strand a record: every record is handed out again until acked.
func TestReleaseDuringPeekIsNotLost(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, Options{})
	const n = 2000
	var entries []Entry
	for i := range n {
		entries = append(entries, entry(Normal, fmt.Sprint(i)))
	}
	if _, err := s.Append(ctx, entries...); err != nil {
		t.Fatal(err)
	}
	acked := 0
	var wg sync.WaitGroup
	release := make(chan []uint64, 64)
	wg.Add(1)
	go func() { // releases every other batch, concurrently with the peeks
		defer wg.Done()
		for seqs := range release {
			s.Release(seqs...)
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; acked < n; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("stranded: %d of %d acked, stats %+v", acked, n, s.Stats().Normal)
		}
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		err := s.Wait(wctx)
		cancel()
		if err != nil {
			continue // records still in flight at the releaser
		}
		recs, err := s.Peek(ctx, 50)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			release <- seqs(recs)
			continue
		}
		if err := s.Ack(ctx, seqs(recs)...); err != nil {
			t.Fatal(err)
		}
		acked += len(recs)
	}
	close(release)
	wg.Wait()
}

func TestAckCountCountsOnlyStoredRecords(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "q.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	seqs, err := s.Append(ctx, Entry{Lane: Normal, Data: []byte("a")}, Entry{Lane: Critical, Data: []byte("b")}, Entry{Lane: Normal, Data: []byte("c")})
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.AckCount(ctx, seqs[0], seqs[1], 999)
	if err != nil || n != 2 {
		t.Fatalf("AckCount = %d, %v; want 2 (the third seq was never stored)", n, err)
	}
	if n, err := s.AckCount(ctx, seqs[0], seqs[2]); err != nil || n != 1 {
		t.Fatalf("AckCount again = %d, %v; want 1", n, err)
	}
	if st := s.Stats(); st.Normal.Records != 0 || st.Critical.Records != 0 {
		t.Fatalf("store not empty: %+v", st)
	}
}
