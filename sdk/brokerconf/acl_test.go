package brokerconf

import (
	"encoding/json"
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
		{truckA, "$share/g/fleet/trucks/truck-a/orders/#", false, false}, // only dispatch joins share groups
		{truckA, "$share/g/fleet/trucks/+/events", false, false},
		{truckA, "fleet/crl", false, true},
		{truckA, "fleet/crl", true, false},
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
		{truckA, "$share/g/fleet/dispatch/+/status", false, false},
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

func TestDynsec(t *testing.T) {
	admin := pki.Identity{Name: pki.AdminName, Role: pki.RoleAdmin}
	out, err := ACL{}.Dynsec([]pki.Identity{truckA, office, admin})
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Default map[string]bool `json:"defaultACLAccess"`
		Clients []struct {
			Username string `json:"username"`
			Roles    []struct {
				Name string `json:"rolename"`
			} `json:"roles"`
		} `json:"clients"`
		Roles []struct {
			Name string      `json:"rolename"`
			ACLs []DynsecACL `json:"acls"`
		} `json:"roles"`
	}
	if err := json.Unmarshal(out, &conf); err != nil {
		t.Fatal(err)
	}
	if conf.Default["publishClientSend"] || conf.Default["publishClientReceive"] || conf.Default["subscribe"] {
		t.Errorf("default access grants something: %v", conf.Default)
	}
	if len(conf.Clients) != 3 || len(conf.Roles) != 3 {
		t.Fatalf("want 3 clients and 3 roles, got %d and %d", len(conf.Clients), len(conf.Roles))
	}
	for i, c := range conf.Clients {
		if len(c.Roles) != 1 || c.Roles[0].Name != c.Username || conf.Roles[i].Name != c.Username {
			t.Errorf("client %s: want one role of its own name", c.Username)
		}
	}
	has := func(role int, typ, topic string) bool {
		for _, a := range conf.Roles[role].ACLs {
			if a.Type == typ && a.Topic == topic && a.Allow {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		role       int
		typ, topic string
		want       bool
	}{
		{0, "publishClientSend", "fleet/trucks/truck-a/telemetry", true},
		{0, "subscribePattern", "fleet/trucks/truck-a/orders/#", true},
		{0, "publishClientReceive", "fleet/trucks/truck-a/orders/#", true},
		{0, "subscribePattern", "fleet/crl", true},
		{0, "subscribePattern", "$share/+/fleet/trucks/#", false},
		{0, "publishClientSend", "fleet/crl", false},
		{1, "subscribePattern", "$share/+/fleet/trucks/#", true},
		{1, "publishClientSend", "fleet/dispatch/office-1/status", true},
		{1, "publishClientSend", "fleet/crl", false},
		{2, "publishClientSend", "fleet/crl", true},
		{2, "publishClientSend", ControlTopics, true},
		{2, "subscribePattern", ControlTopics, true},
	} {
		if has(c.role, c.typ, c.topic) != c.want {
			t.Errorf("role %s: %s %s: want %v", conf.Roles[c.role].Name, c.typ, c.topic, c.want)
		}
	}
	// A role is never a wildcard write under dispatch/ (a truck would get its own "dispatch status").
	for _, r := range conf.Roles {
		for _, a := range r.ACLs {
			if a.Type == "publishClientSend" && strings.Contains(a.Topic, "dispatch/+") {
				t.Errorf("role %s writes %s", r.Name, a.Topic)
			}
		}
	}
	if _, err := (ACL{}).Dynsec([]pki.Identity{{Name: "bad/name", Role: pki.RoleTruck}}); err == nil {
		t.Error("bad name rendered")
	}
	if _, err := (ACL{}).Dynsec([]pki.Identity{brokerID}); err == nil {
		t.Error("a broker identity rendered as a client")
	}
	if _, err := (ACL{}).Dynsec([]pki.Identity{truckA, truckA}); err == nil {
		t.Error("duplicate identity rendered")
	}
	for _, p := range []string{"fl+eet", "#", "$SYS", "/fleet", "a//b", "a b"} {
		if _, err := (ACL{Prefix: p}).Dynsec([]pki.Identity{truckA}); err == nil {
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
