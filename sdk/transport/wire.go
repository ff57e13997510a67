package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
)

// countingConn counts the bytes that cross the TCP socket, so TLS records, handshakes and MQTT framing all
// count: what a metered cellular plan bills.
type countingConn struct {
	net.Conn
	read, written *atomic.Uint64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(uint64(n))
	return n, err
}

// maxCoalesce bounds the buffer of one packet; a larger packet is written in pieces of this size (TLS splits
// records at 16 KiB anyway, so nothing is lost).
const maxCoalesce = 64 << 10

// link is one network connection as paho sees it: the TLS (or plain) connection, made safe for paho's
// concurrent writers, with one packet's writes coalesced into one write to TLS.
//
// paho writes a packet with ControlPacket.WriteTo: it locks the connection if it is a sync.Locker, then calls
// Write once per part (fixed header, variable header, payload: net.Buffers.WriteTo only uses writev on a raw
// socket). Over TLS each Write is one record with 22-29 bytes of overhead. link buffers the parts and
// writes them at the end of the packet, which it finds by parsing the MQTT fixed header (type byte and
// remaining length) of the bytes going through, so the flush happens inside the Write that completes the
// packet and its error reaches paho. Nothing waits for a timer: every packet leaves as soon as it is complete.
type link struct {
	net.Conn // the TLS connection (or the counted TCP connection when plaintext)

	// Mutex is paho's packet lock: packets.ControlPacket.WriteTo holds it for all writes of one packet.
	sync.Mutex
	coalesce bool
	// Guarded by Mutex (paho writes only while holding it):
	buf []byte
	fr  framer
	// rfr follows the packets paho reads (only paho's reader goroutine calls Read), to catch the reason code
	// of a DISCONNECT from the broker.
	rfr framer

	info ConnectInfo // set by dial before the link is handed to paho; read-only afterwards
	// published, if set, is called when a first-time PUBLISH packet has been written: Conn.Submit waits for
	// it to keep publishes in order on the wire. Set by dial before the link is handed to paho.
	published func()

	ctx    context.Context // ends when the link is closed
	cancel context.CancelCauseFunc
	reason atomic.Pointer[error] // first read/write error or close reason
}

func newLink(parent context.Context, c net.Conn, coalesce bool) *link {
	l := &link{Conn: c, coalesce: coalesce}
	l.ctx, l.cancel = context.WithCancelCause(parent)
	l.rfr.onDisconnect = func(code byte) {
		l.note(fmt.Errorf("broker sent DISCONNECT with reason code %d (%s)", code, disconnectReason(code)))
	}
	return l
}

// note records err as the reason the link ended, if it is the first.
func (l *link) note(err error) {
	if err != nil {
		l.reason.CompareAndSwap(nil, &err)
	}
}

// Reason is why the link ended (nil while it is up and no error was seen).
func (l *link) Reason() error {
	if p := l.reason.Load(); p != nil {
		return *p
	}
	return nil
}

func (l *link) Read(p []byte) (int, error) {
	n, err := l.Conn.Read(p)
	for rest := p[:n]; len(rest) > 0; {
		k, _ := l.rfr.advance(rest)
		rest = rest[k:]
	}
	l.note(err)
	return n, err
}

func (l *link) Write(p []byte) (int, error) {
	if !l.coalesce {
		n, err := l.Conn.Write(p)
		l.note(err)
		for rest := p[:n]; len(rest) > 0; {
			k, end := l.fr.advance(rest)
			rest = rest[k:]
			if end {
				l.packetWritten()
			}
		}
		return n, err
	}
	total := len(p)
	for len(p) > 0 {
		n, end := l.fr.advance(p)
		if len(l.buf)+n > maxCoalesce {
			if err := l.flush(); err != nil {
				return total - len(p), err
			}
			if n > maxCoalesce { // a large payload: write it straight through
				if _, err := l.Conn.Write(p[:n]); err != nil {
					l.note(err)
					return total - len(p), err
				}
				p = p[n:]
				if end {
					l.packetWritten()
				}
				continue
			}
		}
		l.buf = append(l.buf, p[:n]...)
		p = p[n:]
		if end {
			if err := l.flush(); err != nil {
				return total - len(p), err
			}
			l.packetWritten()
		}
	}
	return total, nil
}

// packetWritten is called at the end of every packet written.
func (l *link) packetWritten() {
	if l.published != nil && l.fr.firstPublish() {
		l.published()
	}
}

func (l *link) flush() error {
	if len(l.buf) == 0 {
		return nil
	}
	_, err := l.Conn.Write(l.buf)
	l.buf = l.buf[:0]
	if cap(l.buf) > 4*maxCoalesce {
		l.buf = nil
	}
	l.note(err)
	return err
}

// Unlock ends paho's packet. Everything should have been flushed at the packet boundary already; anything
// left (a writer that did not frame whole packets) is written now so the stream stays intact.
func (l *link) Unlock() {
	if len(l.buf) > 0 {
		if err := l.flush(); err != nil {
			_ = l.closeWith(err)
		}
	}
	l.Mutex.Unlock()
}

func (l *link) Close() error {
	return l.closeWith(errors.New("connection closed"))
}

// closeWith closes the link, recording why (if nothing went wrong earlier).
func (l *link) closeWith(reason error) error {
	l.note(reason)
	l.cancel(l.Reason())
	return l.Conn.Close()
}

// framer follows MQTT packet boundaries in a byte stream from the fixed header: one type byte, a variable
// byte integer of 1-4 bytes giving the remaining length, then that many bytes.
type framer struct {
	state     uint8 // 0: expecting the type byte; 1: in the length; 2: in the body
	typ       byte  // packet type of the current packet
	flags     byte  // the low four bits of its first byte (for PUBLISH: DUP, QoS, RETAIN)
	remaining int
	mul       int
	lenBytes  int
	// onDisconnect, if set, gets the reason code of each DISCONNECT packet passing through.
	onDisconnect func(code byte)
	wantReason   bool
}

const (
	packetPublish    = 3
	packetDisconnect = 14
	publishDUP       = 0x08
)

// firstPublish reports whether the packet that just ended is a PUBLISH sent for the first time (not a
// retransmission with DUP set after a reconnect).
func (f *framer) firstPublish() bool { return f.typ == packetPublish && f.flags&publishDUP == 0 }

// advance consumes p up to and including the end of the current packet. It returns how many bytes it
// consumed and whether a packet ended there.
func (f *framer) advance(p []byte) (int, bool) {
	i := 0
	for i < len(p) {
		switch f.state {
		case 0:
			f.typ, f.flags = p[i]>>4, p[i]&0x0f
			i++
			f.state, f.remaining, f.mul, f.lenBytes = 1, 0, 1, 0
		case 1:
			b := p[i]
			i++
			f.remaining += int(b&0x7f) * f.mul
			f.mul *= 128
			f.lenBytes++
			if b&0x80 == 0 || f.lenBytes == 4 {
				isDisconnect := f.typ == packetDisconnect && f.onDisconnect != nil
				if f.remaining == 0 {
					if isDisconnect {
						f.onDisconnect(0) // no reason code: normal disconnection
					}
					f.state = 0
					return i, true
				}
				f.state, f.wantReason = 2, isDisconnect
			}
		case 2:
			if f.wantReason {
				f.wantReason = false
				f.onDisconnect(p[i])
			}
			k := min(f.remaining, len(p)-i)
			i += k
			f.remaining -= k
			if f.remaining == 0 {
				f.state = 0
				return i, true
			}
		}
	}
	return i, false
}
