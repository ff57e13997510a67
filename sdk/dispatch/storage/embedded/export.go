package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch/archive"
	"github.com/waybill-iot/waybill/store"
)

// What Export reads of the outbox's store: the buckets dispatch.Outbox keeps (sdk/dispatch outbox.go and
// storeepoch.go), which it does not export. TestExport fails if they move.
const (
	outboxEpochs = "dispatch-epochs" // truck -> the 8 bytes of its last store epoch
	outboxMeta   = "dispatch-meta"
)

var outboxSeqKey = []byte("order-seq") // the last envelope sequence number reserved for orders

// Archive is the wrapped archive (for tools that copy it).
func (s *Store) Archive() *archive.Archive { return s.arc }

// StoredTrackingToken returns the order's tracking token without creating one; ok is false when the
// order has none.
func (s *Store) StoredTrackingToken(truck, id string) (tok string, ok bool, err error) {
	err = s.trk.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketByOrder).Get(orderKey(truck, id)); v != nil {
			tok, ok = string(v), true
		}
		return nil
	})
	return tok, ok, err
}

// OutboxState is what the outbox keeps besides its orders.
type OutboxState struct {
	// Epochs is the last store epoch seen per truck (dispatch.Outbox.NoteStore).
	Epochs map[string]sdk.Epoch
	// Seq is the last envelope sequence number reserved for orders of the outbox's identity; 0: none.
	Seq uint64
	// Identity is the name orders were signed with.
	Identity string
}

// Export reads the outbox's store epochs and order sequence number.
func (s *Store) Export() (OutboxState, error) {
	out := OutboxState{Epochs: map[string]sdk.Epoch{}, Identity: s.ob.Signer().Identity().Name}
	st := s.oc.Store
	if st == nil {
		var err error
		if st, err = store.Open(s.oc.Path, s.oc.StoreOptions); err != nil {
			return out, fmt.Errorf("embedded: outbox: %w", err)
		}
		defer st.Close()
	}
	err := st.ForEach(outboxEpochs, func(k, v []byte) error {
		if len(v) != len(sdk.Epoch{}) {
			return fmt.Errorf("store epoch of %s has %d bytes", k, len(v))
		}
		out.Epochs[string(k)] = sdk.Epoch(v)
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("embedded: outbox: %w", err)
	}
	raw, err := st.Get(outboxMeta, outboxSeqKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return out, fmt.Errorf("embedded: outbox: %w", err)
	case len(raw) != 8:
		return out, fmt.Errorf("embedded: outbox: the order sequence number has %d bytes", len(raw))
	default:
		out.Seq = binary.BigEndian.Uint64(raw)
	}
	return out, nil
}
