package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pahofile "github.com/eclipse/paho.golang/autopaho/queue/file"
	bolt "go.etcd.io/bbolt"
)

// fixRecord is a 40-byte record, the size of one encoded GPS fix.
var fixRecord = bytes.Repeat([]byte{0xA5}, 40)

// writeBytes reads this process's bytes sent to the storage layer (/proc/self/io write_bytes).
func writeBytes(b *testing.B) int64 {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Fatalf("read /proc/self/io: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no write_bytes in /proc/self/io")
	return 0
}

// measure runs fn (which performs records appends), and reports appends/s and bytes written per record.
func measure(b *testing.B, records int, fn func()) {
	b.Helper()
	before := writeBytes(b)
	start := time.Now()
	b.ResetTimer()
	fn()
	b.StopTimer()
	elapsed := time.Since(start)
	b.ReportMetric(float64(records)/elapsed.Seconds(), "appends/s")
	b.ReportMetric(float64(writeBytes(b)-before)/float64(records), "disk-B/record")
}

// BenchmarkDurableAppend compares, on the same disk in the same run, (a) one bbolt transaction per record,
// (b) paho.golang's autopaho/queue/file (which does not fsync: not durable), and (c) this store with 1, 8
// and 64 concurrent appenders, each Append one fsync'd record.
func BenchmarkDurableAppend(b *testing.B) {
	const records = 2000
	b.Run("a-bbolt-tx-per-record", func(b *testing.B) {
		for range b.N {
			db, err := bolt.Open(b.TempDir()+"/a.db", 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			measure(b, records, func() {
				for i := range records {
					err := db.Update(func(tx *bolt.Tx) error {
						bk, err := tx.CreateBucketIfNotExists([]byte("q"))
						if err != nil {
							return err
						}
						return bk.Put(binary.BigEndian.AppendUint64(nil, uint64(i)), fixRecord)
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			})
			db.Close()
		}
	})
	b.Run("b-paho-file-queue-no-fsync", func(b *testing.B) {
		for range b.N {
			q, err := pahofile.New(b.TempDir(), "q", ".msg")
			if err != nil {
				b.Fatal(err)
			}
			measure(b, records, func() {
				for range records {
					if err := q.Enqueue(bytes.NewReader(fixRecord)); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})
	for _, writers := range []int{1, 8, 64} {
		b.Run("c-waybill-appenders-"+strconv.Itoa(writers), func(b *testing.B) {
			for range b.N {
				s, err := Open(b.TempDir()+"/c.db", Options{})
				if err != nil {
					b.Fatal(err)
				}
				measure(b, records, func() { concurrentAppend(b, s, writers, records) })
				st := s.Stats()
				b.ReportMetric(st.RecordsPerCmt, "records/commit")
				s.Close()
			}
		})
	}
}

func concurrentAppend(b *testing.B, s *Store, writers, records int) {
	var wg sync.WaitGroup
	per := records / writers
	for w := range writers {
		n := per
		if w == writers-1 {
			n = records - per*(writers-1)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				if _, err := s.Append(context.Background(), Entry{Lane: Normal, Data: fixRecord}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkFlashWear reports bytes written to disk per 40-byte fix record for each batching policy: how
// many fixes one commit carries (1 = a commit per fix; 5 = a 1 Hz receiver waiting up to 5 s; 60 = a
// minute). Compare disk-B/record with a-bbolt-tx-per-record above.
func BenchmarkFlashWear(b *testing.B) {
	const records = 3000
	for _, batch := range []int{1, 5, 10, 30, 60} {
		b.Run("fixes-per-commit-"+strconv.Itoa(batch), func(b *testing.B) {
			for range b.N {
				s, err := Open(b.TempDir()+"/w.db", Options{})
				if err != nil {
					b.Fatal(err)
				}
				entries := make([]Entry, batch)
				for i := range entries {
					entries[i] = Entry{Lane: Normal, Data: fixRecord}
				}
				measure(b, records, func() {
					for n := 0; n < records; n += batch {
						if _, err := s.Append(context.Background(), entries...); err != nil {
							b.Fatal(err)
						}
					}
				})
				s.Close()
			}
		})
	}
}

// BenchmarkDrain measures the reader side: Peek a batch, Ack it, until the queue is empty.
func BenchmarkDrain(b *testing.B) {
	const records = 100000
	for _, batch := range []int{100, 1000} {
		b.Run("batch-"+strconv.Itoa(batch), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				s, err := Open(b.TempDir()+"/d.db", Options{MaxBytes: 1 << 30})
				if err != nil {
					b.Fatal(err)
				}
				entries := make([]Entry, 1000)
				for i := range entries {
					entries[i] = Entry{Lane: Normal, Data: fixRecord}
				}
				for n := 0; n < records; n += len(entries) {
					if _, err := s.Append(context.Background(), entries...); err != nil {
						b.Fatal(err)
					}
				}
				ctx := context.Background()
				start := time.Now()
				b.StartTimer()
				drained := 0
				for {
					recs, err := s.Peek(ctx, batch)
					if err != nil {
						b.Fatal(err)
					}
					if len(recs) == 0 {
						break
					}
					seqs := make([]uint64, len(recs))
					for i, r := range recs {
						seqs[i] = r.Seq
					}
					if err := s.Ack(ctx, seqs...); err != nil {
						b.Fatal(err)
					}
					drained += len(recs)
				}
				b.StopTimer()
				if drained != records {
					b.Fatalf("drained %d of %d", drained, records)
				}
				b.ReportMetric(float64(records)/time.Since(start).Seconds(), "records/s")
				s.Close()
			}
		})
	}
}
