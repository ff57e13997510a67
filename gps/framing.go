package gps

import (
	"errors"
	"io"
)

// DefaultMaxLine bounds one sentence. NMEA 0183 allows 82 characters; real receivers exceed it a little
// (long proprietary sentences, NMEA 4.x GSA), never by this much.
const DefaultMaxLine = 256

// FrameStats counts what the framer threw away.
type FrameStats struct {
	Sentences   uint64 // sentences with a valid or absent checksum, handed on
	BadChecksum uint64 // sentences whose checksum did not match
	NoChecksum  uint64 // sentences without a checksum (accepted, as gpsd does; NMEA 0183 v1 made it optional)
	Overlong    uint64 // lines longer than the bound, discarded
	Garbage     uint64 // bytes outside any sentence or in a sentence cut by a control byte
}

// Framer cuts a byte stream into NMEA sentences: it resynchronises on '$' or '!', drops everything between
// sentences (NUL bytes, binary protocol packets, a receiver at the wrong baud rate), bounds the line length
// and verifies checksums. It keeps at most MaxLine bytes plus one read buffer in memory, whatever the input.
type Framer struct {
	r       io.Reader
	maxLine int
	buf     []byte // read buffer
	pos     int    // next unread byte in buf[:n]
	n       int
	line    []byte // the sentence being collected, starting with '$' or '!'
	inLine  bool
	skip    bool // an overlong line is being skipped until the next start byte
	stats   FrameStats
	err     error
}

// NewFramer reads sentences from r. maxLine <= 0 means DefaultMaxLine.
func NewFramer(r io.Reader, maxLine int) *Framer {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return &Framer{r: r, maxLine: maxLine, buf: make([]byte, 4096), line: make([]byte, 0, maxLine)}
}

// Stats returns the counters so far.
func (f *Framer) Stats() FrameStats { return f.stats }

// Next returns the next sentence without its line ending, checksum verified (the "*hh" stays in the returned
// bytes when present). The slice is valid until the next call. At the end of the input it returns the error
// of the underlying reader (io.EOF for a clean end); a partial last line is discarded.
func (f *Framer) Next() ([]byte, error) {
	for {
		if f.pos >= f.n {
			if f.err != nil {
				return nil, f.err
			}
			n, err := f.r.Read(f.buf)
			f.pos, f.n = 0, n
			if err != nil {
				f.err = err
				if n == 0 {
					if f.inLine {
						f.stats.Garbage += uint64(len(f.line))
						f.inLine = false
					}
					return nil, err
				}
			}
			if n == 0 {
				// A reader that returns 0, nil (a serial port read timeout) must not spin us forever.
				return nil, errNoProgress
			}
		}
		for f.pos < f.n {
			c := f.buf[f.pos]
			f.pos++
			switch {
			case c == '$' || c == '!':
				if f.inLine {
					f.stats.Garbage += uint64(len(f.line)) // a sentence cut short by the next one
				}
				f.line = append(f.line[:0], c)
				f.inLine, f.skip = true, false
			case !f.inLine:
				if !f.skip {
					f.stats.Garbage++
				}
			case c == '\r' || c == '\n':
				f.inLine = false
				if s, ok := f.check(f.line); ok {
					return s, nil
				}
			case c < 0x20 || c > 0x7e:
				// NUL or binary in the middle of a sentence: it is corrupt; wait for the next start.
				f.stats.Garbage += uint64(len(f.line)) + 1
				f.inLine = false
			case len(f.line) >= f.maxLine:
				f.stats.Overlong++
				f.inLine, f.skip = false, true
			default:
				f.line = append(f.line, c)
			}
		}
	}
}

// errNoProgress is returned by Next when the reader returned no bytes and no error; callers that poll
// (serial with a read timeout) call Next again.
var errNoProgress = errors.New("gps: no data")

// check verifies the checksum of a collected line and returns it trimmed of trailing junk.
func (f *Framer) check(line []byte) ([]byte, bool) {
	if len(line) < 6 { // "$GPxxx" is the shortest useful sentence
		f.stats.Garbage += uint64(len(line))
		return nil, false
	}
	star := -1
	for i := len(line) - 1; i > 0; i-- {
		if line[i] == '*' {
			star = i
			break
		}
	}
	if star < 0 {
		f.stats.NoChecksum++
		f.stats.Sentences++
		return line, true
	}
	if star+3 > len(line) {
		f.stats.BadChecksum++
		return nil, false
	}
	want, ok := hexByte(line[star+1], line[star+2])
	var sum byte
	for _, c := range line[1:star] {
		sum ^= c
	}
	if !ok || sum != want {
		f.stats.BadChecksum++
		return nil, false
	}
	f.stats.Sentences++
	return line[:star+3], true
}

func hexByte(a, b byte) (byte, bool) {
	h, ok1 := hexNibble(a)
	l, ok2 := hexNibble(b)
	return h<<4 | l, ok1 && ok2
}

func hexNibble(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
