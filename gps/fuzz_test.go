package gps

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func addCaptureSeeds(f *testing.F) {
	logs, _ := filepath.Glob(filepath.Join("testdata", "nmea", "*.log"))
	for _, l := range logs[:8] {
		b, err := os.ReadFile(l)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 2048)])
	}
	f.Add([]byte("$GPGGA,123519,4807.038,N,01131.000,E,8,08,0.9,545.4,M,46.9,M,,*4C\r\n"))
	f.Add([]byte("\x00\x00$$$$*\r\n$GPRMC,,,,,,,,,,,*\n!AIVDM,1,1,,B,,0*00\n"))
	f.Add(bytes.Repeat([]byte{'A'}, 5000))
}

// FuzzReader: any bytes through framing, decoding and assembly: no panic, every fix sane, and the
// framer's buffer never grows past its bound.
func FuzzReader(f *testing.F) {
	addCaptureSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), Config{})
		for {
			fix, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if fix.Mode < Mode2D || fix.Lat < -90 || fix.Lat > 90 || fix.Lon < -180 || fix.Lon > 180 || fix.Time.IsZero() {
				t.Fatalf("insane fix %+v", fix)
			}
			if _, err := fix.MarshalJSON(); err != nil {
				t.Fatal(err)
			}
			if cap(r.fr.line) > DefaultMaxLine {
				t.Fatalf("line buffer grew to %d", cap(r.fr.line))
			}
		}
	})
}

// FuzzSentence: one sentence straight to the decoder (past the checksum), the part go-nmea and our
// tolerant parsers see.
func FuzzSentence(f *testing.F) {
	for _, s := range []string{
		"$GPRMC,212607.891,V,,,,,,,181207,0,N*5C",
		"$GNGGA,083559.00,4717.11437,N,00833.91522,E,8,08,1.01,499.6,M,48.0,M,,*7B",
		"$GPGGA,030130",
		"$GPGSA,A,3,09,05,14,26,,,,,,,,,2.9,2.2,1.9*3C",
		"$GPVTG,74.45,T,89.09,M,0.00,N,0.00,K,A*29",
		"$GNGNS,014035.00,4332.69262,S,17235.48549,E,RR,13,0.9,25.63,11.24,,*70",
		"$GPGLL,3348.605,N,11821.126,W,230149,A*34",
		"$GPZDA,094818,20,08,2018,-01,00*69",
	} {
		f.Add(s)
	}
	d := newSentenceDecoder()
	f.Fuzz(func(t *testing.T, s string) {
		o, err := d.decode([]byte(s))
		if err == nil && o.hasPos && (o.lat < -90 || o.lat > 90 || o.lon < -180 || o.lon > 180) {
			t.Fatalf("%q: position %v,%v out of range", s, o.lat, o.lon)
		}
	})
}
