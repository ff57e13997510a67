package sdk

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// OrderStatus is active, or cancelled (a cancellation is a newer revision with status cancelled).
type OrderStatus uint8

const (
	OrderActive    OrderStatus = 0
	OrderCancelled OrderStatus = 1
)

func (s OrderStatus) String() string {
	switch s {
	case OrderActive:
		return "active"
	case OrderCancelled:
		return "cancelled"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

func (s OrderStatus) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *OrderStatus) UnmarshalText(b []byte) error {
	switch string(b) {
	case "active":
		*s = OrderActive
	case "cancelled":
		*s = OrderCancelled
	default:
		return fmt.Errorf("sdk: unknown order status %q", b)
	}
	return nil
}

// Order is a delivery order from dispatch to one truck. Each change is a new Revision of the same ID; the
// truck keeps the highest revision. Times are carried to the millisecond.
type Order struct {
	ID        string      `json:"id"`       // ValidateOrderID; also the last topic level
	Revision  uint32      `json:"revision"` // 1, 2, ...: a higher revision replaces a lower one
	Truck     string      `json:"truck"`    // the truck it is for; must equal the topic's truck
	Created   time.Time   `json:"created"`
	Expires   time.Time   `json:"expires"` // after this the truck refuses the order as expired
	Recipient string      `json:"recipient,omitempty"`
	Address   string      `json:"address,omitempty"`
	Lat       float64     `json:"lat"` // destination, degrees WGS84 (carried at 1e-7 degree)
	Lon       float64     `json:"lon"`
	RadiusM   int         `json:"radius_m"` // arrival radius in metres around the destination
	Notes     string      `json:"notes,omitempty"`
	Status    OrderStatus `json:"status"`
}

// orderWire is the CBOR form: integer keys, fixed-point coordinates, Unix milliseconds. New fields take new
// keys; decoders ignore keys they do not know.
type orderWire struct {
	ID        string `cbor:"1,keyasint"`
	Revision  uint32 `cbor:"2,keyasint"`
	Truck     string `cbor:"3,keyasint"`
	Created   int64  `cbor:"4,keyasint"`
	Expires   int64  `cbor:"5,keyasint"`
	Recipient string `cbor:"6,keyasint,omitempty"`
	Address   string `cbor:"7,keyasint,omitempty"`
	Lat       int64  `cbor:"8,keyasint"`
	Lon       int64  `cbor:"9,keyasint"`
	RadiusM   uint32 `cbor:"10,keyasint,omitempty"`
	Notes     string `cbor:"11,keyasint,omitempty"`
	Status    uint8  `cbor:"12,keyasint,omitempty"`
}

// Limits on order text fields, so one order stays a small message.
const (
	maxOrderText  = 512
	maxOrderNotes = 4096
)

// Validate checks every field.
func (o *Order) Validate() error {
	if err := ValidateOrderID(o.ID); err != nil {
		return err
	}
	if err := pki.ValidateName(o.Truck); err != nil {
		return fmt.Errorf("sdk: order %s: truck: %w", o.ID, err)
	}
	switch {
	case o.Revision == 0:
		return fmt.Errorf("sdk: order %s: revision must be at least 1", o.ID)
	case o.Created.IsZero() || o.Expires.IsZero():
		return fmt.Errorf("sdk: order %s: created and expires are required", o.ID)
	case !o.Expires.After(o.Created):
		return fmt.Errorf("sdk: order %s: expires %v is not after created %v", o.ID, o.Expires, o.Created)
	case !(o.Lat >= -90 && o.Lat <= 90) || !(o.Lon >= -180 && o.Lon <= 180):
		return fmt.Errorf("sdk: order %s: destination %v,%v out of range", o.ID, o.Lat, o.Lon)
	case o.RadiusM < 0 || o.RadiusM > 100000:
		return fmt.Errorf("sdk: order %s: arrival radius %d m out of range 0..100000", o.ID, o.RadiusM)
	case len(o.Recipient) > maxOrderText || len(o.Address) > maxOrderText || len(o.Notes) > maxOrderNotes:
		return fmt.Errorf("sdk: order %s: recipient/address over %d bytes or notes over %d bytes",
			o.ID, maxOrderText, maxOrderNotes)
	case !utf8.ValidString(o.Recipient) || !utf8.ValidString(o.Address) || !utf8.ValidString(o.Notes):
		return fmt.Errorf("sdk: order %s: recipient, address or notes is not valid UTF-8", o.ID)
	case o.Status != OrderActive && o.Status != OrderCancelled:
		return fmt.Errorf("sdk: order %s: unknown status %d", o.ID, o.Status)
	}
	return nil
}

// MarshalBody returns the order's canonical CBOR body: the bytes that are signed, and hashed for OrderHash.
func (o *Order) MarshalBody() ([]byte, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return encMode.Marshal(orderWire{
		ID: o.ID, Revision: o.Revision, Truck: o.Truck,
		Created: o.Created.UnixMilli(), Expires: o.Expires.UnixMilli(),
		Recipient: o.Recipient, Address: o.Address,
		Lat: q(o.Lat, eventScale), Lon: q(o.Lon, eventScale), RadiusM: uint32(o.RadiusM),
		Notes: o.Notes, Status: uint8(o.Status),
	})
}

// UnmarshalOrder decodes and validates an order body.
func UnmarshalOrder(body []byte) (*Order, error) {
	var w orderWire
	if err := decMode.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("sdk: order body: %w", err)
	}
	if w.RadiusM > math.MaxInt32 {
		return nil, fmt.Errorf("sdk: order body: radius %d out of range", w.RadiusM)
	}
	o := &Order{
		ID: w.ID, Revision: w.Revision, Truck: w.Truck,
		Created: time.UnixMilli(w.Created).UTC(), Expires: time.UnixMilli(w.Expires).UTC(),
		Recipient: w.Recipient, Address: w.Address,
		Lat: float64(w.Lat) / eventScale, Lon: float64(w.Lon) / eventScale, RadiusM: int(w.RadiusM),
		Notes: w.Notes, Status: OrderStatus(w.Status),
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return o, nil
}

// OrderHash is the SHA-256 of an order's body bytes exactly as signed (Envelope.Body of the order message).
// A delivery event carries it so that it answers one precise revision. Dispatch computes it with
// Order.Hash (the same canonical encoding the Signer uses), the truck from the received body; both agree
// because the signature covers these exact bytes. It does not cover the envelope, so re-sending a revision
// (a new envelope, new sequence number) keeps its hash.
type OrderHash [32]byte

// Hash returns the OrderHash of the order's canonical body.
func (o *Order) Hash() (OrderHash, error) {
	b, err := o.MarshalBody()
	if err != nil {
		return OrderHash{}, err
	}
	return sha256.Sum256(b), nil
}

func (h OrderHash) MarshalText() ([]byte, error) { return hexText(h[:]), nil }

// UnmarshalText reads the hex form MarshalText writes.
func (h *OrderHash) UnmarshalText(b []byte) error { return unhexText(h[:], b) }

// MessageID is the stable message id of one order revision: re-sending the same revision (even signed
// again with a new sequence number) is reported to the truck as a duplicate while it remembers the id.
func (o *Order) MessageID() MsgID {
	h := sha256.New()
	h.Write([]byte("waybill order id\x00"))
	h.Write([]byte(o.ID))
	var rev [5]byte
	binary.BigEndian.PutUint32(rev[1:], o.Revision)
	h.Write(rev[:])
	var id MsgID
	copy(id[:], h.Sum(nil))
	return id
}

// String gives a one-line summary for logs.
func (o *Order) String() string {
	b, _ := json.Marshal(o)
	return string(b)
}
