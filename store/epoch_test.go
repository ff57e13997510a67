package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/sdktest"
	bolt "go.etcd.io/bbolt"
)

// fixEntries makes n normal entries whose data starts with prefix-%05d, long enough to fill many pages.
func fixEntries(prefix string, n int) []Entry {
	var entries []Entry
	for i := range n {
		entries = append(entries, entry(Normal, fmt.Sprintf("%s-%05d-%s", prefix, i, strings.Repeat("x", 40))))
	}
	return entries
}

// openSalvaged opens a file with a damaged page and checks that it was salvaged into a new epoch.
func openSalvaged(t *testing.T, path string, oldEpoch uint64) *Store {
	t.Helper()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	o := s.Origin()
	if o.Kind != OriginSalvaged || o.PreviousEpoch != oldEpoch || o.Reopened || o.At.IsZero() {
		t.Fatalf("origin after salvage = %+v, want salvaged from %016x", o, oldEpoch)
	}
	if s.Epoch() == oldEpoch || s.Epoch() == 0 {
		t.Fatalf("salvaged store kept epoch %016x", s.Epoch())
	}
	if st := s.Stats(); st.Origin != o {
		t.Fatalf("Stats().Origin = %+v, Origin() = %+v", st.Origin, o)
	}
	return s
}

// checkSalvagedFixes checks records named prefix-i: seq want(i), the given origin epoch, in order.
func checkSalvagedFixes(t *testing.T, recs []Record, prefix string, seqOf func(i int) uint64, epoch uint64) int {
	t.Helper()
	n := 0
	for _, r := range recs {
		var i int
		if _, err := fmt.Sscanf(string(r.Data), prefix+"-%05d-", &i); err != nil {
			continue
		}
		n++
		if r.Seq != seqOf(i) || r.Epoch != epoch {
			t.Fatalf("salvaged %q has (epoch %016x, seq %d), want (%016x, %d)", r.Data[:len(prefix)+6], r.Epoch,
				r.Seq, epoch, seqOf(i))
		}
	}
	return n
}

// TestSalvageStartsNewEpoch: a salvaged file gets a new epoch; its records keep their seqs and report the old
// epoch; new records get seqs above every seq the old file handed out (acked ones included) and the new
// epoch; the quarantine and the state come along; and all of it holds after a reopen.
func TestSalvageStartsNewEpoch(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t, Options{})
	e1 := s.Epoch()
	if _, err := s.Append(ctx, fixEntries("fix", 3000)...); err != nil { // seqs 1..3000
		t.Fatal(err)
	}
	// Ack the oldest 2000 and the newest 100: the highest surviving seq (2900) is below the highest handed out.
	var ack []uint64
	for seq := uint64(1); seq <= 3000; seq++ {
		if seq <= 2000 || seq > 2900 {
			ack = append(ack, seq)
		}
	}
	if err := s.Ack(ctx, ack...); err != nil {
		t.Fatal(err)
	}
	if err := s.Quarantine(ctx, 2010, "cannot encode: test"); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "orders", []byte("o1"), []byte("rev1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sdktest.DamagePages(t, path, []byte("fix-02500-"), false)
	// A flipped byte in a record on another page: salvage quarantines it rather than drop it.
	b, _ := os.ReadFile(path)
	i := bytes.Index(b, []byte("fix-02800-"))
	b[i+4] ^= 0x01
	os.WriteFile(path, b, 0o600)

	s = openSalvaged(t, path, e1)
	e2 := s.Epoch()
	recs, err := s.Peek(ctx, 10000)
	if err != nil {
		t.Fatal(err)
	}
	seqOf := func(i int) uint64 { return uint64(i + 1) }
	if n := checkSalvagedFixes(t, recs, "fix", seqOf, e1); n < 800 || n != len(recs) {
		t.Fatalf("%d records salvaged (%d peeked) of 899", n, len(recs))
	}
	q, err := s.Quarantined()
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, r := range q {
		reasons = append(reasons, fmt.Sprintf("%d: %s", r.Seq, r.Reason))
	}
	if len(q) != 2 || q[0].Seq != 2010 || q[0].Reason != "cannot encode: test" || q[1].Seq != 2801 ||
		!strings.Contains(q[1].Reason, "checksum") {
		t.Fatalf("quarantine after salvage = %v, want 2010 (cannot encode) and 2801 (checksum)", reasons)
	}
	if v, err := s.Get("orders", []byte("o1")); err != nil || string(v) != "rev1" {
		t.Fatalf("state after salvage = %q, %v", v, err)
	}
	st := s.Stats()
	if st.Quarantined != 2 || st.QuarantinedRecords != 2 || st.Recovered != 1 {
		t.Fatalf("counters after salvage: quarantined %d (%d now), recovered %d", st.Quarantined,
			st.QuarantinedRecords, st.Recovered)
	}

	newSeqs, err := s.Append(ctx, entry(Critical, "after"), entry(Normal, "after"))
	if err != nil {
		t.Fatal(err)
	}
	if newSeqs[0] <= 3000 || newSeqs[1] <= 3000 {
		t.Fatalf("new seqs %v reuse seqs the old file handed out (up to 3000)", newSeqs)
	}
	after, _ := s.Peek(ctx, 10)
	if len(after) != 2 || after[0].Epoch != e2 || after[1].Epoch != e2 || after[0].Seq != newSeqs[0] {
		t.Fatalf("new records = %+v, want seqs %v in epoch %016x", after, newSeqs, e2)
	}

	// After a restart: same epoch, same origin (now Reopened), records keep their origin epoch.
	at := s.Origin().At
	s = reopen(t, s, Options{})
	if o := s.Origin(); s.Epoch() != e2 || o.Kind != OriginSalvaged || o.PreviousEpoch != e1 || !o.Reopened ||
		!o.At.Equal(at) {
		t.Fatalf("after reopen: epoch %016x (want %016x), origin %+v", s.Epoch(), e2, o)
	}
	all, _ := s.Peek(ctx, 10000)
	if n := checkSalvagedFixes(t, all, "fix", seqOf, e1); n != len(recs) {
		t.Fatalf("%d salvaged records after reopen, want %d", n, len(recs))
	}
	for _, r := range all {
		if string(r.Data) == "after" && r.Epoch != e2 {
			t.Fatalf("record appended after salvage has epoch %016x, want %016x", r.Epoch, e2)
		}
	}
	if q2, _ := s.Quarantined(); len(q2) != 2 {
		t.Fatalf("quarantine after reopen: %d records", len(q2))
	}
}

// TestSecondSalvageKeepsFirstOrigin: records salvaged twice still report the epoch that first accepted
// them; records appended in between report the middle epoch.
func TestSecondSalvageKeepsFirstOrigin(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t, Options{})
	e1 := s.Epoch()
	if _, err := s.Append(ctx, fixEntries("one", 2000)...); err != nil { // seqs 1..2000
		t.Fatal(err)
	}
	s.Close()
	sdktest.DamagePages(t, path, []byte("one-01000-"), false)
	s = openSalvaged(t, path, e1)
	e2 := s.Epoch()
	second, err := s.Append(ctx, fixEntries("two", 1000)...)
	if err != nil {
		t.Fatal(err)
	}
	if second[0] <= 2000 {
		t.Fatalf("first seq after salvage %d, want above 2000", second[0])
	}
	s.Close()
	sdktest.DamagePages(t, path, []byte("one-00500-"), false)
	s = openSalvaged(t, path, e2)
	e3 := s.Epoch()
	if e3 == e1 {
		t.Fatal("second salvage went back to the first epoch")
	}
	recs, err := s.Peek(ctx, 10000)
	if err != nil {
		t.Fatal(err)
	}
	ones := checkSalvagedFixes(t, recs, "one", func(i int) uint64 { return uint64(i + 1) }, e1)
	twos := checkSalvagedFixes(t, recs, "two", func(i int) uint64 { return second[i] }, e2)
	if ones < 1800 || twos != 1000 || ones+twos != len(recs) {
		t.Fatalf("after two salvages: %d of 2000 first records, %d of 1000 second, %d in all", ones, twos, len(recs))
	}
	third, err := s.Append(ctx, entry(Normal, "three"))
	if err != nil {
		t.Fatal(err)
	}
	if third[0] <= second[len(second)-1] {
		t.Fatalf("seq %d after the second salvage, want above %d", third[0], second[len(second)-1])
	}
	if st := s.Stats(); st.Recovered != 2 {
		t.Fatalf("recovered = %d, want 2", st.Recovered)
	}
}

// TestOrigin: Origin tells how the epoch began, and still tells it after a restart.
func TestOrigin(t *testing.T) {
	ctx := context.Background()
	reopened := func(t *testing.T, s *Store, want Origin) *Store {
		t.Helper()
		epoch := s.Epoch()
		s = reopen(t, s, Options{})
		o := s.Origin()
		if s.Epoch() != epoch || o.Kind != want.Kind || !o.Reopened || !o.At.Equal(want.At) ||
			o.PreviousEpoch != want.PreviousEpoch || o.Detail != want.Detail {
			t.Fatalf("after reopen: epoch %016x (was %016x), origin %+v, want %+v reopened", s.Epoch(), epoch, o, want)
		}
		return s
	}

	t.Run("created", func(t *testing.T) {
		before := time.Now()
		s, path := openTemp(t, Options{})
		o := s.Origin()
		if o.Kind != OriginCreated || o.Reopened || o.PreviousEpoch != 0 || o.At.Before(before.Add(-time.Second)) {
			t.Fatalf("new store: origin %+v", o)
		}
		s = reopened(t, s, o)
		appendN(t, s, Normal, "n", 3)

		// The file deleted (or the SD card swapped): a new file, a new epoch, created again.
		e1 := s.Epoch()
		s.Close()
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		s2, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if o := s2.Origin(); s2.Epoch() == e1 || o.Kind != OriginCreated || o.Reopened {
			t.Fatalf("after deleting the file: epoch %016x (was %016x), origin %+v", s2.Epoch(), e1, o)
		}
	})

	t.Run("recreated", func(t *testing.T) {
		for name, damage := range map[string]func(path string){
			"garbage": func(path string) { os.WriteFile(path, bytes.Repeat([]byte("not a database "), 2000), 0o600) },
			"zero length": func(path string) {
				os.WriteFile(path, nil, 0o600)
				old := time.Now().Add(-time.Minute)
				os.Chtimes(path, old, old)
			},
			"truncated to one page": func(path string) {
				b, _ := os.ReadFile(fillStore(t, 100))
				os.WriteFile(path, b[:4096], 0o600)
			},
		} {
			t.Run(name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "queue.db")
				damage(path)
				s, err := Open(path, Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				o := s.Origin()
				if o.Kind != OriginRecreated || o.Reopened || !strings.Contains(o.Detail, "moved to") {
					t.Fatalf("origin %+v", o)
				}
				reopened(t, s, o)
			})
		}
	})

	t.Run("salvaged truncated file", func(t *testing.T) {
		s, src := openTemp(t, Options{})
		e1 := s.Epoch()
		if _, err := s.Append(ctx, fixEntries("fix", 2000)...); err != nil { // seqs 1..2000
			t.Fatal(err)
		}
		appendN(t, s, Critical, "c", 5) // seqs 2001..2005, in later commits
		s.Close()
		// Cut off the last page the meta page counts: the lanes' pages are all before it.
		need, _ := checkTruncation(src)
		b, _ := os.ReadFile(src)
		path := filepath.Join(t.TempDir(), "queue.db")
		os.WriteFile(path, b[:need-4096], 0o600)
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		o := s.Origin()
		if o.Kind != OriginSalvaged || o.Reopened || s.Epoch() == e1 || o.PreviousEpoch != e1 ||
			!strings.Contains(o.Detail, "truncated") {
			t.Fatalf("epoch %016x (was %016x), origin %+v", s.Epoch(), e1, o)
		}
		recs, _ := s.Peek(ctx, 10000)
		crit := 0
		for _, r := range recs {
			if r.Epoch != e1 {
				t.Fatalf("salvaged record %d has epoch %016x, want %016x", r.Seq, r.Epoch, e1)
			}
			if r.Lane == Critical {
				crit++
			}
		}
		fixes := checkSalvagedFixes(t, recs, "fix", func(i int) uint64 { return uint64(i + 1) }, e1)
		if crit != 5 || fixes+crit != len(recs) {
			t.Fatalf("salvaged %d critical (want 5), %d fixes, %d in all", crit, fixes, len(recs))
		}
		seq, err := s.Append(ctx, entry(Normal, "after"))
		if err != nil || seq[0] <= 2005 {
			t.Fatalf("append after salvage: seq %v, %v; want above 2005", seq, err)
		}
		t.Logf("salvaged %d fixes and %d critical records from the truncated file", fixes, crit)
		reopened(t, s, o)
	})

	t.Run("quarantine only", func(t *testing.T) {
		// A record failing its checksum is quarantined; the file, its epoch and its origin stay.
		s, path := openTemp(t, Options{})
		appendN(t, s, Normal, "payload-", 3)
		e, o := s.Epoch(), s.Origin()
		s.Close()
		b, _ := os.ReadFile(path)
		i := bytes.Index(b, []byte("payload-001"))
		b[i] ^= 0x01
		os.WriteFile(path, b, 0o600)
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if st := s.Stats(); st.Quarantined != 1 || s.Epoch() != e || st.Origin.Kind != o.Kind ||
			!st.Origin.Reopened || !st.Origin.At.Equal(o.At) {
			t.Fatalf("after a quarantine: epoch %016x (was %016x), quarantined %d, origin %+v (was %+v)",
				s.Epoch(), e, st.Quarantined, st.Origin, o)
		}
	})

	t.Run("existing", func(t *testing.T) {
		// A file from before origins were recorded.
		s, path := openTemp(t, Options{})
		e := s.Epoch()
		s.Close()
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyOrigin) })
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		s, err = Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if o := s.Origin(); s.Epoch() != e || o.Kind != OriginExisting || !o.Reopened || !o.At.IsZero() {
			t.Fatalf("epoch %016x (was %016x), origin %+v", s.Epoch(), e, o)
		}
		reopened(t, s, s.Origin())
	})
}

func TestOriginKindText(t *testing.T) {
	for k, want := range map[OriginKind]string{OriginExisting: "existing", OriginCreated: "created",
		OriginRecreated: "recreated", OriginSalvaged: "salvaged", 9: "origin(9)"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q, want %q", k, k, want)
		}
	}
	j, err := json.Marshal(Origin{Kind: OriginSalvaged})
	if err != nil || !strings.Contains(string(j), `"Kind":"salvaged"`) {
		t.Fatalf("JSON = %s, %v", j, err)
	}
	var back Origin
	if err := json.Unmarshal(j, &back); err != nil || back.Kind != OriginSalvaged {
		t.Fatalf("JSON does not read back: %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"Kind":"lost"}`), &back); err == nil {
		t.Fatal("an unknown origin read back")
	}
}
