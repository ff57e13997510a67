package sdk

import (
	"errors"
	"strings"
	"testing"

	"github.com/waybill-iot/waybill/sdk/brokerconf"
)

func TestTopicsBuildAndParse(t *testing.T) {
	for _, prefix := range []string{"", "fleet", "acme/fleet-eu"} {
		tp := Topics{Prefix: prefix}
		want := prefix
		if want == "" {
			want = "fleet"
		}
		for _, c := range []struct {
			topic Topic
			s     string
		}{
			{Topic{Truck: "truck-0001", Kind: KindTelemetry}, want + "/trucks/truck-0001/telemetry"},
			{Topic{Truck: "truck-0001", Kind: KindEvents}, want + "/trucks/truck-0001/events"},
			{Topic{Truck: "t", Kind: KindStatus}, want + "/trucks/t/status"},
			{Topic{Truck: "truck-0001", Kind: KindOrders, Order: "ORD-2026:00042.a_b"}, want + "/trucks/truck-0001/orders/ORD-2026:00042.a_b"},
		} {
			s, err := tp.Build(c.topic)
			if err != nil || s != c.s {
				t.Fatalf("Build(%+v) = %q, %v; want %q", c.topic, s, err, c.s)
			}
			got, err := tp.Parse(s)
			if err != nil || got != c.topic {
				t.Fatalf("Parse(%q) = %+v, %v", s, got, err)
			}
		}
	}
	if f := (Topics{}).FleetFilter(KindTelemetry); f != "fleet/trucks/+/telemetry" {
		t.Fatal(f)
	}
	if f := (Topics{}).FleetFilter(KindOrders); f != "fleet/trucks/+/orders/+" {
		t.Fatal(f)
	}
	if f, err := (Topics{}).TruckOrdersFilter("truck-0001"); err != nil || f != "fleet/trucks/truck-0001/orders/+" {
		t.Fatal(f, err)
	}
}

func TestTopicsRefuse(t *testing.T) {
	tp := Topics{}
	for _, s := range []string{
		"", "fleet", "fleet/trucks", "fleet/trucks/", "fleet/trucks/truck-0001", "fleet/trucks/truck-0001/",
		"fleet/trucks/truck-0001/telemetry/", "fleet/trucks/truck-0001/telemetry/x", "fleet/trucks/+/telemetry",
		"fleet/trucks/#", "fleet/trucks/Truck-1/telemetry", "fleet/trucks/dispatch/telemetry",
		"fleet/trucks/truck-0001/orders", "fleet/trucks/truck-0001/orders/", "fleet/trucks/truck-0001/orders/a/b",
		"fleet/trucks/truck-0001/orders/+", "fleet/trucks/truck-0001/orders/#", "fleet/trucks/truck-0001/orders/..",
		"fleet/trucks/truck-0001/orders/-x", "fleet/trucks/truck-0001/orders/a b",
		"fleet/trucks/truck-0001/orders/" + strings.Repeat("a", 65), "fleet/trucks/truck-0001/Telemetry",
		"fleetx/trucks/truck-0001/status", "$share/g/fleet/trucks/truck-0001/status", "/fleet/trucks/truck-0001/status",
	} {
		if got, err := tp.Parse(s); err == nil || !errors.Is(err, ErrBadTopic) {
			t.Errorf("Parse(%q) = %+v, %v; want ErrBadTopic", s, got, err)
		}
	}
	for _, c := range []Topic{
		{Truck: "a/b", Kind: KindTelemetry}, {Truck: "truck+", Kind: KindStatus}, {Truck: "", Kind: KindEvents},
		{Truck: "truck-0001", Kind: KindOrders}, {Truck: "truck-0001", Kind: KindOrders, Order: "a/b"},
		{Truck: "truck-0001", Kind: KindTelemetry, Order: "x"}, {Truck: "truck-0001"},
	} {
		if s, err := tp.Build(c); err == nil {
			t.Errorf("Build(%+v) = %q", c, s)
		}
	}
	for _, p := range []string{"a/", "/a", "a//b", "a/+", "#", "$SYS", "a b", "1/2/3/4/5/6/7/8/9"} {
		if err := (Topics{Prefix: p}).Validate(); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
}

// TestCRLTopicMatchesBrokerACL: trucks and dispatch subscribe to Topics.CRL; the broker lets them read, and
// the administrator write, brokerconf.ACL.CRLTopic. The two must name the same topic for every prefix.
func TestCRLTopicMatchesBrokerACL(t *testing.T) {
	for _, prefix := range []string{"", "fleet", "acme/fleet-eu", "a/b/c"} {
		got, want := Topics{Prefix: prefix}.CRL(), brokerconf.ACL{Prefix: prefix}.CRLTopic()
		if got != want {
			t.Errorf("prefix %q: sdk.Topics.CRL = %q, brokerconf.ACL.CRLTopic = %q", prefix, got, want)
		}
		if _, err := (Topics{Prefix: prefix}).Parse(got); err == nil {
			t.Errorf("prefix %q: Parse accepted the CRL topic %q as an envelope topic", prefix, got)
		}
	}
}
