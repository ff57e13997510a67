package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/sdktest"
)

func loggingOptions() (Options, *sdktest.SyncBuffer) {
	lb := &sdktest.SyncBuffer{}
	return Options{Logger: slog.New(slog.NewTextHandler(lb, nil))}, lb
}

func asideFiles(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + ".corrupt-*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fillStore writes n normal records and returns the file's path after closing it.
func fillStore(t *testing.T, n int) string {
	t.Helper()
	s, path := openTemp(t, Options{})
	var entries []Entry
	for i := range n {
		entries = append(entries, entry(Normal, fmt.Sprintf("fix-%05d-%s", i, strings.Repeat("x", 40))))
	}
	if _, err := s.Append(context.Background(), entries...); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUnopenableFilesAreMovedAsideAndReplaced(t *testing.T) {
	cases := map[string]func(t *testing.T, path string){
		"zero length": func(t *testing.T, path string) {
			os.WriteFile(path, nil, 0o600)
			old := time.Now().Add(-time.Minute) // not a file another process is creating right now
			os.Chtimes(path, old, old)
		},
		"garbage": func(t *testing.T, path string) {
			os.WriteFile(path, bytes.Repeat([]byte("not a database "), 2000), 0o600)
		},
		"zeroed": func(t *testing.T, path string) {
			src := fillStore(t, 100)
			fi, _ := os.Stat(src)
			os.WriteFile(path, make([]byte, fi.Size()), 0o600)
		},
		"truncated to one page": func(t *testing.T, path string) {
			src := fillStore(t, 100)
			b, _ := os.ReadFile(src)
			os.WriteFile(path, b[:4096], 0o600)
		},
		"truncated mid-file": func(t *testing.T, path string) {
			src := fillStore(t, 2000)
			b, _ := os.ReadFile(src)
			os.WriteFile(path, b[:len(b)/2+100], 0o600)
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "queue.db")
			damage(t, path)
			o, logs := loggingOptions()
			s, err := Open(path, o)
			if err != nil {
				t.Fatalf("Open on a damaged file failed instead of recovering: %v", err)
			}
			defer s.Close()
			if got := asideFiles(t, path); len(got) != 1 {
				t.Fatalf("files moved aside: %v, want one", got)
			}
			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "moved") {
				t.Fatalf("no loud log line about the move: %q", logs.String())
			}
			st := s.Stats()
			if st.Recovered < 1 || len(st.Recovery) == 0 {
				t.Fatalf("recovery not reported in stats: %+v", st)
			}
			// The fresh store works.
			if _, err := s.Append(context.Background(), entry(Critical, "after")); err != nil {
				t.Fatal(err)
			}
			recs, err := s.Peek(context.Background(), 10000)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if !strings.HasPrefix(string(r.Data), "fix-") && string(r.Data) != "after" {
					t.Fatalf("unexpected record after recovery: %q", r.Data)
				}
			}
			t.Logf("recovered with %d records; %s", len(recs), st.Recovery)
		})
	}
}

func TestFlippedByteInValueIsQuarantined(t *testing.T) {
	path := fillStore(t, 50)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("fix-00017-"))
	if i < 0 {
		t.Fatal("record bytes not found in the file")
	}
	b[i+4] ^= 0x01 // "fix-00017" -> "fix-10017"
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	o, logs := loggingOptions()
	s, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs, _ := s.Peek(context.Background(), 100)
	if len(recs) != 49 {
		t.Fatalf("%d records handed out, want 49", len(recs))
	}
	for _, r := range recs {
		if strings.HasPrefix(string(r.Data), "fix-10017") || strings.HasPrefix(string(r.Data), "fix-00017") {
			t.Fatalf("damaged record handed out: %q", r.Data)
		}
	}
	q, _ := s.Quarantined()
	if len(q) != 1 || !strings.Contains(q[0].Reason, "checksum") {
		t.Fatalf("quarantine = %+v", q)
	}
	if st := s.Stats(); st.Quarantined != 1 || st.QuarantinedRecords != 1 {
		t.Fatalf("stats = %+v", st)
	}
	if !strings.Contains(logs.String(), "checksum") {
		t.Fatalf("no log about the checksum: %s", logs.String())
	}
}

func TestFlippedByteFoundByPeekIsQuarantined(t *testing.T) {
	// Damage that happens while the store is open (a bad sector read) is caught by Peek, not only Open.
	ctx := context.Background()
	s, path := openTemp(t, Options{})
	appendN(t, s, Normal, "payload-", 3)
	b, _ := os.ReadFile(path)
	i := bytes.Index(b, []byte("payload-001"))
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil || i < 0 {
		t.Fatal(err, i)
	}
	f.WriteAt([]byte("X"), int64(i))
	f.Close()
	recs, err := s.Peek(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"payload-000", "payload-002"}; !equal(data(recs), want) {
		t.Fatalf("peek = %v, want %v", data(recs), want)
	}
	if st := s.Stats(); st.Quarantined != 1 {
		t.Fatalf("quarantined = %d", st.Quarantined)
	}
}

func TestDamagedPageIsSalvaged(t *testing.T) {
	path := fillStore(t, 3000) // about 200 KiB: many leaf pages
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Overwrite one leaf page in the middle of the records with garbage page headers.
	i := bytes.Index(b, []byte("fix-01500-"))
	page := i / 4096 * 4096
	for j := page; j < page+4096; j++ {
		b[j] = byte(j*7 + 3)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	o, logs := loggingOptions()
	s, err := Open(path, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	recs, err := s.Peek(context.Background(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	// Most records survive, in order, and none is invented.
	if len(recs) < 2500 {
		t.Fatalf("only %d of 3000 records salvaged", len(recs))
	}
	for k := 1; k < len(recs); k++ {
		if recs[k].Seq <= recs[k-1].Seq || string(recs[k].Data) <= string(recs[k-1].Data) {
			t.Fatalf("salvaged records out of order at %d", k)
		}
	}
	if string(recs[0].Data[:9]) != "fix-00000" || string(recs[len(recs)-1].Data[:9]) != "fix-02999" {
		t.Fatalf("ends lost: %q ... %q", recs[0].Data[:9], recs[len(recs)-1].Data[:9])
	}
	t.Logf("salvaged %d of 3000 records; log: %s", len(recs), logs.String())
}

func TestLockedFileTimesOut(t *testing.T) {
	s, path := openTemp(t, Options{})
	_ = s
	start := time.Now()
	_, err := Open(path, Options{LockTimeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if time.Since(start) > 30*time.Second {
		t.Fatal("Open blocked instead of timing out")
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error does not name the file: %v", err)
	}
	if got := asideFiles(t, path); len(got) != 0 {
		t.Fatalf("a locked file was moved aside: %v", got)
	}
}

// TestConcurrentCreatorsShareOneFile: two stores opening the same new path at once (two processes creating
// it) must not take the other's brand-new, still empty file for damage.
func TestConcurrentCreatorsShareOneFile(t *testing.T) {
	for range 20 {
		path := filepath.Join(t.TempDir(), "queue.db")
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := Open(path, Options{LockTimeout: 10 * time.Second})
				if err == nil {
					_, err = s.Append(context.Background(), entry(Critical, fmt.Sprint(i)))
					s.Close()
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if aside := asideFiles(t, path); len(aside) != 0 {
			t.Fatalf("a new file was moved aside as damaged: %v", aside)
		}
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if n := s.Stats().Critical.Records; n != 2 {
			t.Fatalf("%d records, want both creators' records in one file", n)
		}
		s.Close()
	}
}
