package transport

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// recordConn is a net.Conn that records each Write separately.
type recordConn struct {
	net.Conn
	writes [][]byte
}

func (r *recordConn) Write(p []byte) (int, error) {
	r.writes = append(r.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (r *recordConn) Close() error { return nil }

// encodePacket builds an MQTT packet with the given type and body.
func encodePacket(typ byte, body []byte) []byte {
	out := []byte{typ << 4}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

// TestLinkWritesOnePacketPerWrite sends real paho packets through a link: each reaches the connection in
// exactly one Write, whatever paho's parts.
func TestLinkWritesOnePacketPerWrite(t *testing.T) {
	rc := &recordConn{}
	l := newLink(context.Background(), rc, true)
	pub := &packets.Publish{QoS: 1, PacketID: 7, Topic: "fleet/trucks/truck-1/telemetry",
		Payload: bytes.Repeat([]byte{1}, 56), Properties: &packets.Properties{}}
	puback := packets.NewControlPacket(packets.PUBACK)
	puback.Content.(*packets.Puback).PacketID = 9
	pkts := []*packets.ControlPacket{pub.ToControlPacket(), packets.NewControlPacket(packets.PINGREQ), puback}
	var want [][]byte
	for _, p := range pkts {
		var b bytes.Buffer
		if _, err := p.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		want = append(want, b.Bytes())
		if _, err := p.WriteTo(l); err != nil {
			t.Fatal(err)
		}
	}
	if len(rc.writes) != len(want) {
		t.Fatalf("%d packets arrived in %d writes, want one write each", len(want), len(rc.writes))
	}
	for i := range want {
		if !bytes.Equal(rc.writes[i], want[i]) {
			t.Fatalf("write %d = %x, want %x", i, rc.writes[i], want[i])
		}
	}
	// Uncoalesced, paho's PUBLISH takes several writes (each a TLS record over TLS).
	rc2 := &recordConn{}
	if _, err := pub.ToControlPacket().WriteTo(newLink(context.Background(), rc2, false)); err != nil {
		t.Fatal(err)
	}
	if len(rc2.writes) < 3 {
		t.Fatalf("uncoalesced PUBLISH took %d writes; the coalescer would be pointless", len(rc2.writes))
	}
}

func TestFramerSeesDisconnectReason(t *testing.T) {
	var got []byte
	f := framer{onDisconnect: func(c byte) { got = append(got, c) }}
	stream := append(encodePacket(packetDisconnect, []byte{0x8e, 0}), encodePacket(13, nil)...) // + PINGRESP
	stream = append(stream, encodePacket(packetDisconnect, nil)...)
	for _, b := range stream { // one byte at a time: the worst split
		if n, _ := f.advance([]byte{b}); n != 1 {
			t.Fatalf("advance consumed %d of 1 byte", n)
		}
	}
	if !bytes.Equal(got, []byte{0x8e, 0}) {
		t.Fatalf("disconnect reasons %x, want 8e 00", got)
	}
}

// FuzzLinkCoalescing builds a stream of packets from the input, writes it in arbitrary pieces, and checks
// that the stream is unchanged and every packet that fits the buffer left in one Write.
func FuzzLinkCoalescing(f *testing.F) {
	f.Add([]byte{3, 0, 200, 7}, []byte{1, 2, 3})
	f.Add([]byte{0, 0, 0}, []byte{0})
	f.Add([]byte{255, 255, 1}, []byte{50, 1, 1, 1, 200})
	f.Fuzz(func(t *testing.T, sizes, cuts []byte) {
		var stream []byte
		var pkts [][]byte
		for i, s := range sizes {
			if i >= 32 {
				break
			}
			body := bytes.Repeat([]byte{byte(i)}, int(s)*int(s)) // 0 .. 65025 bytes: 1-3 length bytes
			p := encodePacket(byte(i%14+1), body)
			pkts = append(pkts, p)
			stream = append(stream, p...)
		}
		rc := &recordConn{}
		l := newLink(context.Background(), rc, true)
		rest := stream
		l.Lock() // paho holds the lock for one packet; here for all of them, written in arbitrary pieces
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(cuts) > 0 {
				n = min(n, int(cuts[i%len(cuts)])+1)
			}
			if _, err := l.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		l.Unlock()
		if got := bytes.Join(rc.writes, nil); !bytes.Equal(got, stream) {
			t.Fatalf("stream changed: %d bytes in, %d out", len(stream), len(got))
		}
		big := false
		for _, p := range pkts {
			big = big || len(p) > maxCoalesce
		}
		if !big && len(rc.writes) != len(pkts) {
			t.Fatalf("%d packets left in %d writes", len(pkts), len(rc.writes))
		}
	})
}

func TestBackoffBounds(t *testing.T) {
	c := &Conn{cfg: Config{BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second}}
	if d := c.backoff(0); d != 0 {
		t.Fatalf("first connection waits %v", d)
	}
	c.everConnected.Store(true)
	for i := 0; i < 100; i++ {
		if d := c.backoff(0); d < 0 || d > 100*time.Millisecond {
			t.Fatalf("after a drop: %v, want within [0, BackoffMin]", d)
		}
		for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond,
			4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
			if d := c.backoff(attempt); d < want/2 || d > want {
				t.Fatalf("attempt %d: %v, want within [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}
