package brokerconf

import (
	"strings"
	"testing"

	"github.com/waybill-iot/waybill/sdk/pki"
)

var (
	truckA   = pki.Identity{Name: "truck-a", Role: pki.RoleTruck}
	office   = pki.Identity{Name: "office-1", Role: pki.RoleDispatch}
	brokerID = pki.Identity{Name: "mqtt", Role: pki.RoleBroker}
)

func TestAllowed(t *testing.T) {
	acl := ACL{}
	cases := []struct {
		id    pki.Identity
		topic string
		write bool
		want  bool
	}{
		// A truck writes only its own telemetry, events, status.
		{truckA, "fleet/trucks/truck-a/telemetry", true, true},
		{truckA, "fleet/trucks/truck-a/events", true, true},
		{truckA, "fleet/trucks/truck-a/status", true, true},
		{truckA, "fleet/trucks/truck-b/telemetry", true, false},
		{truckA, "fleet/trucks/truck-b/status", true, false},
		{truckA, "fleet/trucks/truck-a/orders/o1", true, false},
		{truckA, "fleet/trucks/truck-a/telemetry/x", true, false},
		{truckA, "fleet/trucks/truck-a/+", true, false},
		{truckA, "fleet/trucks/truck-a/#", true, false},
		{truckA, "other/trucks/truck-a/telemetry", true, false},
		// and reads only its own orders.
		{truckA, "fleet/trucks/truck-a/orders/o1", false, true},
		{truckA, "fleet/trucks/truck-a/orders/#", false, true},
		{truckA, "fleet/trucks/truck-a/orders/+", false, true},
		{truckA, "fleet/trucks/truck-a/orders", false, true},
		{truckA, "$share/g/fleet/trucks/truck-a/orders/#", false, true},
		{truckA, "fleet/trucks/truck-b/orders/o1", false, false},
		{truckA, "fleet/trucks/+/orders/#", false, false},
		{truckA, "fleet/trucks/truck-a/telemetry", false, false},
		{truckA, "fleet/#", false, false},
		{truckA, "#", false, false},
		{truckA, "$SYS/broker/uptime", false, false},
		// Dispatch writes orders for any truck and reads the fleet.
		{office, "fleet/trucks/truck-a/orders/o1", true, true},
		{office, "fleet/trucks/truck-zz/orders/o1/rev", true, true},
		{office, "fleet/trucks/truck-a/telemetry", true, false},
		{office, "fleet/trucks/truck-a/status", true, false},
		{office, "fleet/trucks/truck-a/telemetry", false, true},
		{office, "fleet/trucks/#", false, true},
		{office, "fleet/trucks/+/events", false, true},
		{office, "$share/dispatch/fleet/trucks/+/telemetry", false, true},
		{office, "fleet/#", false, false},
		{office, "#", false, false},
		{office, "$share/x", false, false},
		// Receipts: any dispatch writes them for any truck, a truck reads only its own.
		{office, "fleet/trucks/truck-a/receipts", true, true},
		{office, "fleet/trucks/truck-zz/receipts", true, true},
		{office, "fleet/trucks/+/receipts", true, false},
		{office, "fleet/trucks/truck-a/receipts/x", true, false},
		{truckA, "fleet/trucks/truck-a/receipts", false, true},
		{truckA, "fleet/trucks/truck-a/receipts", true, false},
		{truckA, "fleet/trucks/truck-b/receipts", true, false},
		{truckA, "fleet/trucks/truck-b/receipts", false, false},
		{truckA, "fleet/trucks/+/receipts", false, false},
		// Dispatch status: a dispatch writes only its own, trucks and dispatch read all.
		{office, "fleet/dispatch/office-1/status", true, true},
		{office, "fleet/dispatch/office-2/status", true, false},
		{office, "fleet/dispatch/office-1/other", true, false},
		{office, "fleet/dispatch/+/status", false, true},
		{office, "fleet/dispatch/office-2/status", false, true},
		{truckA, "fleet/dispatch/+/status", false, true},
		{truckA, "fleet/dispatch/office-1/status", false, true},
		{truckA, "$share/g/fleet/dispatch/+/status", false, true},
		{truckA, "fleet/dispatch/#", false, false},
		{truckA, "fleet/dispatch/truck-a/status", true, false},
		{truckA, "fleet/dispatch/office-1/status", true, false},
		{truckA, "fleet/dispatch/truck-a/x", true, false},
		// A broker identity is nobody special as a client.
		{brokerID, "fleet/trucks/truck-a/orders/o1", true, false},
		{brokerID, "fleet/trucks/#", false, false},
		// Bad identities get nothing.
		{pki.Identity{Name: "a/b", Role: pki.RoleDispatch}, "fleet/trucks/a/orders/x", true, false},
		{pki.Identity{Name: "+", Role: pki.RoleTruck}, "fleet/trucks/+/telemetry", true, false},
		{truckA, "", true, false},
	}
	for _, tc := range cases {
		if got := acl.Allowed(tc.id, tc.topic, tc.write); got != tc.want {
			t.Errorf("%s %s write=%v: %v, want %v", tc.id.Name, tc.topic, tc.write, got, tc.want)
		}
	}
	custom := ACL{Prefix: "acme/fleet"}
	if !custom.Allowed(truckA, "acme/fleet/trucks/truck-a/telemetry", true) || custom.Allowed(truckA, "fleet/trucks/truck-a/telemetry", true) {
		t.Error("custom prefix not honoured")
	}
}

func TestMosquittoACL(t *testing.T) {
	out, err := ACL{}.Mosquitto([]string{"office-1", "office-2"})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{
		"pattern write fleet/trucks/%u/telemetry\n",
		"pattern write fleet/trucks/%u/events\n",
		"pattern write fleet/trucks/%u/status\n",
		"pattern read fleet/trucks/%u/orders/#\n",
		"pattern read fleet/trucks/%u/receipts\n",
		"pattern read fleet/dispatch/+/status\n",
		"user office-1\ntopic write fleet/trucks/+/orders/#\ntopic write fleet/trucks/+/receipts\n" +
			"topic write fleet/dispatch/office-1/status\ntopic read fleet/trucks/#\n",
		"user office-2\n",
		"topic write fleet/dispatch/office-2/status\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("ACL lacks %q:\n%s", want, s)
		}
	}
	// Patterns come before any user block: Mosquitto reads topic lines before the first user as anonymous.
	if strings.Index(s, "pattern") > strings.Index(s, "user ") {
		t.Error("pattern lines after user blocks")
	}
	// No pattern lets anybody write under dispatch/: a truck would get its own "dispatch status".
	if strings.Contains(s, "pattern write fleet/dispatch") {
		t.Error("a pattern grants writes under fleet/dispatch/")
	}
	if _, err := (ACL{}).Mosquitto([]string{"bad/name"}); err == nil {
		t.Error("bad dispatch name rendered")
	}
	for _, p := range []string{"fl+eet", "#", "$SYS", "/fleet", "a//b", "a b"} {
		if _, err := (ACL{Prefix: p}).Mosquitto(nil); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
}

func TestCovers(t *testing.T) {
	cases := []struct {
		rule, sub string
		want      bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/+", "a/#", false},
		{"a/+", "a", false},
		{"a/+", "a/b/c", false},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"a/#", "a/#", true},
		{"a/#", "a/+/c", true},
		{"a/b/#", "a/+/c", false},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
	}
	for _, tc := range cases {
		if got := covers(tc.rule, tc.sub); got != tc.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tc.rule, tc.sub, got, tc.want)
		}
	}
}

// FuzzAllowed checks invariants for any topic: no panic, writes only to concrete topics under the
// identity's own truck or, for dispatch, orders, receipts and its own status.
func FuzzAllowed(f *testing.F) {
	for _, s := range []string{"fleet/trucks/truck-a/telemetry", "fleet/trucks/truck-a/orders/#", "#", "+/+/+/+",
		"$share/g/fleet/trucks/#", "fleet//trucks", "fleet/trucks/truck-b/receipts", "fleet/dispatch/office-1/status",
		"fleet/dispatch/truck-a/status", "", "/", "fleet/trucks/truck-a/orders/\x00"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	acl := ACL{}
	f.Fuzz(func(t *testing.T, topic string, write bool) {
		for _, id := range []pki.Identity{truckA, office} {
			if !acl.Allowed(id, topic, write) || !write {
				continue
			}
			if strings.ContainsAny(topic, "+#") {
				t.Fatalf("%s may write wildcard topic %q", id.Name, topic)
			}
			own := strings.HasPrefix(topic, "fleet/trucks/"+id.Name+"/")
			dispatch := id.Role == pki.RoleDispatch && (strings.Contains(topic, "/orders") ||
				strings.HasSuffix(topic, "/receipts") || topic == "fleet/dispatch/"+id.Name+"/status")
			if !own && !dispatch {
				t.Fatalf("%s may write %q", id.Name, topic)
			}
		}
	})
}
