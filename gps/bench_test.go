package gps

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/adrianmo/go-nmea"
)

// benchInput is every capture concatenated, and its sentence lines for the baseline.
func benchInput(b *testing.B) ([]byte, []string) {
	logs, err := filepath.Glob(filepath.Join("testdata", "nmea", "*.log"))
	if err != nil || len(logs) == 0 {
		b.Fatal("no captures")
	}
	var all bytes.Buffer
	var lines []string
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err != nil {
			b.Fatal(err)
		}
		all.Write(data)
		all.WriteString("\r\n")
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if t := bytes.TrimSpace(sc.Bytes()); len(t) > 0 && (t[0] == '$' || t[0] == '!') {
				lines = append(lines, string(t))
			}
		}
	}
	return all.Bytes(), lines
}

// BenchmarkDecode is our whole pipeline: framing, checksums, decoding, epochs, checks, fixes.
func BenchmarkDecode(b *testing.B) {
	data, lines := benchInput(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ResetTimer()
	for b.Loop() {
		r := NewReader(bytes.NewReader(data), Config{})
		for {
			if _, err := r.Next(); err != nil {
				break
			}
		}
	}
	reportPerSentence(b, len(lines), &ms)
}

// BenchmarkNMEAParseBaseline is the plain loop the issue compares against: nmea.Parse on every
// sentence line of the same captures, nothing else.
func BenchmarkNMEAParseBaseline(b *testing.B) {
	data, lines := benchInput(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ResetTimer()
	for b.Loop() {
		for _, l := range lines {
			nmea.Parse(l)
		}
	}
	reportPerSentence(b, len(lines), &ms)
}

// reportPerSentence adds sentences/s and allocs/sentence, the numbers the issue asks for.
func reportPerSentence(b *testing.B, lines int, before *runtime.MemStats) {
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	n := float64(lines) * float64(b.N)
	b.ReportMetric(n/b.Elapsed().Seconds(), "sentences/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/n, "allocs/sentence")
}
