package sdk

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// DefaultPrefix is the topic prefix when Topics.Prefix is empty.
const DefaultPrefix = "fleet"

// Kind is the last fixed level of a truck topic: what flows on it.
type Kind uint8

const (
	_             Kind = iota
	KindTelemetry      // <prefix>/trucks/<truck>/telemetry: batches of fixes, truck -> dispatch
	KindEvents         // <prefix>/trucks/<truck>/events: delivery events, truck -> dispatch
	KindStatus         // <prefix>/trucks/<truck>/status: retained online/offline and health, truck -> dispatch
	KindOrders         // <prefix>/trucks/<truck>/orders/<order>: orders and revisions, dispatch -> truck
	KindReceipts       // <prefix>/trucks/<truck>/receipts: what dispatch has committed, dispatch -> truck
	// KindDispatchStatus is <prefix>/dispatch/<name>/status: a dispatch process's retained online/offline
	// status (also its MQTT will), dispatch -> trucks. Its Topic names the dispatch identity, not a truck.
	KindDispatchStatus
)

var kindNames = [...]string{KindTelemetry: "telemetry", KindEvents: "events", KindStatus: "status",
	KindOrders: "orders", KindReceipts: "receipts", KindDispatchStatus: "dispatch status"}

func (k Kind) String() string {
	if k >= KindTelemetry && k <= KindDispatchStatus {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// MsgType is the envelope type that a topic of this kind carries.
func (k Kind) MsgType() MsgType {
	switch k {
	case KindTelemetry:
		return MsgTelemetry
	case KindEvents:
		return MsgEvent
	case KindStatus, KindDispatchStatus:
		return MsgStatus
	case KindOrders:
		return MsgOrder
	case KindReceipts:
		return MsgReceipt
	}
	return 0
}

// Topic is a parsed topic.
type Topic struct {
	Truck    string // the truck, for every kind but KindDispatchStatus
	Kind     Kind
	Order    string // the order id, for KindOrders only
	Dispatch string // the dispatch identity, for KindDispatchStatus only
}

// ErrBadTopic is wrapped by every topic building and parsing error.
var ErrBadTopic = errors.New("sdk: bad topic")

// orderIDPattern keeps order ids safe as one topic level: no '/', '+', '#', no spaces, no "." or "..", and
// no leading '$' (broker-internal topics). 64 characters leave room for UUIDs and ERP numbers.
var orderIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`)

// prefixLevel is one level of a topic prefix.
var prefixLevel = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)

// ValidateOrderID checks an order id: 1-64 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-', starting with
// a letter or digit.
func ValidateOrderID(id string) error {
	if !orderIDPattern.MatchString(id) {
		return fmt.Errorf("sdk: invalid order id %q: use 1-64 characters of A-Z, a-z, 0-9, '.', '_', ':', '-', "+
			"starting with a letter or digit", id)
	}
	return nil
}

// Topics builds and parses design.md's topics under a prefix.
type Topics struct {
	// Prefix is the first level(s) of every topic, e.g. "fleet" or "acme/fleet". Empty = DefaultPrefix.
	Prefix string
}

func (t Topics) prefix() string {
	if t.Prefix == "" {
		return DefaultPrefix
	}
	return t.Prefix
}

// Validate checks the prefix: 1-8 levels of A-Z, a-z, 0-9, '_', '.', '-', no wildcards, no empty level.
func (t Topics) Validate() error {
	levels := strings.Split(t.prefix(), "/")
	if len(levels) > 8 {
		return fmt.Errorf("%w: prefix %q has more than 8 levels", ErrBadTopic, t.Prefix)
	}
	for _, l := range levels {
		if !prefixLevel.MatchString(l) {
			return fmt.Errorf("%w: prefix %q: level %q must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'",
				ErrBadTopic, t.Prefix, l)
		}
	}
	return nil
}

// Build returns the topic for tp, checking every part.
func (t Topics) Build(tp Topic) (string, error) {
	if err := t.Validate(); err != nil {
		return "", err
	}
	if tp.Kind == KindDispatchStatus {
		if tp.Truck != "" || tp.Order != "" {
			return "", fmt.Errorf("%w: a dispatch status topic names no truck or order", ErrBadTopic)
		}
		if err := pki.ValidateName(tp.Dispatch); err != nil {
			return "", fmt.Errorf("%w: %w", ErrBadTopic, err)
		}
		return t.prefix() + "/dispatch/" + tp.Dispatch + "/status", nil
	}
	if tp.Dispatch != "" {
		return "", fmt.Errorf("%w: a %s topic names no dispatch identity", ErrBadTopic, tp.Kind)
	}
	if err := pki.ValidateName(tp.Truck); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadTopic, err)
	}
	base := t.prefix() + "/trucks/" + tp.Truck + "/"
	switch tp.Kind {
	case KindTelemetry, KindEvents, KindStatus, KindReceipts:
		if tp.Order != "" {
			return "", fmt.Errorf("%w: a %s topic has no order id", ErrBadTopic, tp.Kind)
		}
		return base + tp.Kind.String(), nil
	case KindOrders:
		if err := ValidateOrderID(tp.Order); err != nil {
			return "", fmt.Errorf("%w: %w", ErrBadTopic, err)
		}
		return base + "orders/" + tp.Order, nil
	}
	return "", fmt.Errorf("%w: unknown kind %v", ErrBadTopic, tp.Kind)
}

// Telemetry returns <prefix>/trucks/<truck>/telemetry.
func (t Topics) Telemetry(truck string) (string, error) {
	return t.Build(Topic{Truck: truck, Kind: KindTelemetry})
}

// Events returns <prefix>/trucks/<truck>/events.
func (t Topics) Events(truck string) (string, error) {
	return t.Build(Topic{Truck: truck, Kind: KindEvents})
}

// Status returns <prefix>/trucks/<truck>/status.
func (t Topics) Status(truck string) (string, error) {
	return t.Build(Topic{Truck: truck, Kind: KindStatus})
}

// Receipts returns <prefix>/trucks/<truck>/receipts.
func (t Topics) Receipts(truck string) (string, error) {
	return t.Build(Topic{Truck: truck, Kind: KindReceipts})
}

// DispatchStatus returns <prefix>/dispatch/<name>/status.
func (t Topics) DispatchStatus(name string) (string, error) {
	return t.Build(Topic{Kind: KindDispatchStatus, Dispatch: name})
}

// DispatchStatusFilter is the subscription filter for every dispatch process's status:
// <prefix>/dispatch/+/status.
func (t Topics) DispatchStatusFilter() string { return t.prefix() + "/dispatch/+/status" }

// CRL returns <prefix>/crl: the fleet CRL (DER), retained, published by the broker administrator and read by
// trucks and dispatch (Verifier.UpdateCRL). It is not an envelope topic: Parse refuses it. It must stay
// the topic the broker's ACL lets everyone read, brokerconf.ACL.CRLTopic (TestCRLTopicMatchesBrokerACL).
func (t Topics) CRL() string { return t.prefix() + "/crl" }

// Order returns <prefix>/trucks/<truck>/orders/<order>.
func (t Topics) Order(truck, order string) (string, error) {
	return t.Build(Topic{Truck: truck, Kind: KindOrders, Order: order})
}

// TruckOrdersFilter is the subscription filter for all of one truck's orders: <prefix>/trucks/<truck>/orders/+.
func (t Topics) TruckOrdersFilter(truck string) (string, error) {
	if err := t.Validate(); err != nil {
		return "", err
	}
	if err := pki.ValidateName(truck); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadTopic, err)
	}
	return t.prefix() + "/trucks/" + truck + "/orders/+", nil
}

// FleetFilter is the subscription filter for one kind from every truck, e.g. <prefix>/trucks/+/telemetry
// (orders: <prefix>/trucks/+/orders/+). Prefix it with "$share/<group>/" to split a fleet between several
// dispatch processes.
func (t Topics) FleetFilter(k Kind) string {
	if k == KindDispatchStatus {
		return t.DispatchStatusFilter()
	}
	if k == KindOrders {
		return t.prefix() + "/trucks/+/orders/+"
	}
	return t.prefix() + "/trucks/+/" + k.String()
}

// Parse splits a topic into truck, kind and order id (or dispatch identity), and refuses anything that is not
// exactly one of design.md's topics under this prefix with valid names.
func (t Topics) Parse(topic string) (Topic, error) {
	if rest, ok := strings.CutPrefix(topic, t.prefix()+"/dispatch/"); ok {
		name, ok := strings.CutSuffix(rest, "/status")
		if !ok || strings.Contains(name, "/") {
			return Topic{}, fmt.Errorf("%w: %q is not a %s/dispatch/<name>/status topic", ErrBadTopic, topic, t.prefix())
		}
		if err := pki.ValidateName(name); err != nil {
			return Topic{}, fmt.Errorf("%w: %q: %w", ErrBadTopic, topic, err)
		}
		return Topic{Kind: KindDispatchStatus, Dispatch: name}, nil
	}
	p := t.prefix() + "/trucks/"
	rest, ok := strings.CutPrefix(topic, p)
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q is not under %q", ErrBadTopic, topic, p)
	}
	parts := strings.Split(rest, "/")
	if err := pki.ValidateName(parts[0]); err != nil {
		return Topic{}, fmt.Errorf("%w: %q: %w", ErrBadTopic, topic, err)
	}
	tp := Topic{Truck: parts[0]}
	switch {
	case len(parts) == 2 && parts[1] == "telemetry":
		tp.Kind = KindTelemetry
	case len(parts) == 2 && parts[1] == "events":
		tp.Kind = KindEvents
	case len(parts) == 2 && parts[1] == "status":
		tp.Kind = KindStatus
	case len(parts) == 2 && parts[1] == "receipts":
		tp.Kind = KindReceipts
	case len(parts) == 3 && parts[1] == "orders":
		if err := ValidateOrderID(parts[2]); err != nil {
			return Topic{}, fmt.Errorf("%w: %q: %w", ErrBadTopic, topic, err)
		}
		tp.Kind, tp.Order = KindOrders, parts[2]
	default:
		return Topic{}, fmt.Errorf("%w: %q is not a telemetry, events, status, receipts or orders/<order> topic",
			ErrBadTopic, topic)
	}
	return tp, nil
}
