package sdk

import (
	"context"
	"sync"
)

// StreamKey names one sequence-number stream: a sender's messages of one type. Each type has its own
// counter, so a day of telemetry does not push the truck's pre-signed MQTT will (a status message) out of
// the replay window.
type StreamKey struct {
	Sender string
	Type   MsgType
	// Offline separates offline statuses (the MQTT will, signed when the connection was made, and a clean
	// shutdown's status) from the online refreshes signed after them, so no number of refreshes pushes the
	// will out of the window. Sequence numbers still come from one counter per type.
	Offline bool
}

// ReplayVerdict is what a ReplayState says about a message.
type ReplayVerdict uint8

const (
	ReplayNew       ReplayVerdict = iota // not seen: recorded now
	ReplayDuplicate                      // its message id was seen on this stream: the same message again
	ReplayReused                         // its sequence number was seen, with another message id
	ReplayTooOld                         // its sequence number is behind the window
)

// ReplayState remembers which messages each sender has already delivered. Check is called only for messages
// whose signature verified and that passed every other check, and must decide and record in one step
// (concurrent calls for the same stream may race otherwise). A truck persists it in its store so that a
// restart does not reopen the window; MemoryReplay keeps it in memory.
type ReplayState interface {
	Check(ctx context.Context, k StreamKey, seq uint64, id MsgID) (ReplayVerdict, error)
}

// Defaults for MemoryReplay.
const (
	DefaultReplayWindow = 1024 // sequence numbers per stream
	DefaultReplayIDs    = 128  // recent message ids per stream
)

// MemoryReplay is a ReplayState in memory. Per stream it keeps a sliding window of sequence numbers (a
// bitmap, as IPsec and DTLS do: numbers within Window of the newest are accepted once, older ones are
// refused) and the most recent message ids, so a re-delivered message is told apart from a replay. It is
// safe for concurrent use. Memory: about Window/8 + 16*IDs bytes per stream; streams are only created for
// messages with verified signatures, so their number is bounded by the fleet's identities.
type MemoryReplay struct {
	window, ids int

	mu      sync.Mutex
	streams map[StreamKey]*replayStream // guarded by mu
}

type replayStream struct {
	max  uint64   // highest sequence number accepted
	bits []uint64 // bit (seq % window) set: seq accepted, for seq in (max-window, max]
	ids  []MsgID  // ring of recent ids
	next int      // next ring slot
}

// NewMemoryReplay returns an empty replay state. window is rounded up to a multiple of 64; zero values
// take DefaultReplayWindow and DefaultReplayIDs.
func NewMemoryReplay(window, ids int) *MemoryReplay {
	if window <= 0 {
		window = DefaultReplayWindow
	}
	window = (window + 63) &^ 63
	if ids <= 0 {
		ids = DefaultReplayIDs
	}
	return &MemoryReplay{window: window, ids: ids, streams: make(map[StreamKey]*replayStream)}
}

// Check implements ReplayState.
func (m *MemoryReplay) Check(_ context.Context, k StreamKey, seq uint64, id MsgID) (ReplayVerdict, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[k]
	if s == nil {
		s = &replayStream{bits: make([]uint64, m.window/64), ids: make([]MsgID, 0, m.ids)}
		m.streams[k] = s
	}
	for _, seen := range s.ids {
		if seen == id {
			return ReplayDuplicate, nil
		}
	}
	w := uint64(m.window)
	switch {
	case seq > s.max:
		// Slide: clear the bits of the numbers between the old and the new maximum.
		if seq-s.max >= w {
			clear(s.bits)
		} else {
			for n := s.max + 1; n < seq; n++ {
				s.bits[(n%w)/64] &^= 1 << (n % 64)
			}
		}
		s.max = seq
	case s.max-seq >= w:
		return ReplayTooOld, nil
	case s.bits[(seq%w)/64]&(1<<(seq%64)) != 0:
		return ReplayReused, nil
	}
	s.bits[(seq%w)/64] |= 1 << (seq % 64)
	if len(s.ids) < m.ids {
		s.ids = append(s.ids, id)
	} else {
		s.ids[s.next] = id
		s.next = (s.next + 1) % m.ids
	}
	return ReplayNew, nil
}
