package truck

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/store"
)

// sequencerBucket holds, per message type, the highest sequence number reserved.
const sequencerBucket = "sdk-sequencer"

// reserveBlock is how many sequence numbers one durable write reserves: a restart skips at most this many,
// and signing costs one fsync per this many messages.
const reserveBlock = 1000

// StoreSequencer is an sdk.Sequencer kept in the truck's store, so envelope sequence numbers keep increasing
// across restarts and receivers' replay windows accept them.
type StoreSequencer struct {
	st *store.Store

	mu       sync.Mutex
	next     map[sdk.MsgType]uint64 // guarded by mu
	reserved map[sdk.MsgType]uint64 // guarded by mu
}

var _ sdk.Sequencer = (*StoreSequencer)(nil)

// NewStoreSequencer loads the reservations from st.
func NewStoreSequencer(ctx context.Context, st *store.Store) (*StoreSequencer, error) {
	s := &StoreSequencer{st: st, next: map[sdk.MsgType]uint64{}, reserved: map[sdk.MsgType]uint64{}}
	err := st.ForEach(sequencerBucket, func(k, v []byte) error {
		if len(k) != 1 || len(v) != 8 {
			return fmt.Errorf("truck: sequencer entry %x: bad size", k)
		}
		t := sdk.MsgType(k[0])
		s.reserved[t] = binary.BigEndian.Uint64(v)
		s.next[t] = s.reserved[t] // numbers up to the old reservation may have been used
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Next returns the next sequence number for t, reserving a new block durably when the last one is used up.
func (s *StoreSequencer) Next(t sdk.MsgType) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.next[t] + 1
	if n > s.reserved[t] {
		r := s.reserved[t] + reserveBlock
		if err := s.st.Put(context.Background(), sequencerBucket, []byte{byte(t)}, binary.BigEndian.AppendUint64(nil, r)); err != nil {
			return 0, fmt.Errorf("truck: reserve sequence numbers: %w", err)
		}
		s.reserved[t] = r
	}
	s.next[t] = n
	return n, nil
}
