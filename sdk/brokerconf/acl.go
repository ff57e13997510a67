package brokerconf

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// DefaultPrefix is the topic prefix when ACL.Prefix is empty (design.md).
const DefaultPrefix = "fleet"

// ControlTopics is the filter of Mosquitto's dynamic security control topics: only the administrator
// (pki.AdminName) may write or read there.
const ControlTopics = "$CONTROL/dynamic-security/#"

// ACL is the fleet's topic access rules (design.md), as one Go value that both renders Mosquitto's dynamic
// security configuration (Dynsec, DynsecRole) and decides for the development broker (Allowed), so the two
// brokers enforce the same rules.
//
// The rules, with P the prefix and N the identity's name:
//
//	role truck     write P/trucks/N/telemetry, P/trucks/N/events, P/trucks/N/status
//	               read  P/trucks/N/orders/#, P/trucks/N/receipts, P/dispatch/+/status, P/crl
//	role dispatch  write P/trucks/+/orders/#, P/trucks/+/receipts, P/dispatch/N/status
//	               read  P/trucks/#, P/dispatch/+/status, P/crl
//	               share $share/GROUP/P/trucks/# (only dispatch joins share groups)
//	admin          write $CONTROL/dynamic-security/#, P/crl
//	               read  $CONTROL/dynamic-security/#
//
// Receipts (P/trucks/T/receipts) are dispatch's signed word that it committed a truck's records: any
// dispatch may send them to any truck, a truck reads only its own. P/dispatch/N/status is each dispatch
// process's retained online/offline status (also its will): only dispatch N writes it. P/crl is the fleet
// CRL, retained: only the administrator writes it, everybody reads it. A read right is both the right to
// subscribe and the right to receive: Mosquitto's dynamic security plugin checks both, so a truck that
// subscribes to another truck's orders, or to any share group, gets SUBACK 135. Identities the broker has
// not been told about (Dynsec, or the admin client at run time) may do nothing at all.
type ACL struct {
	Prefix string // topic prefix; "" means DefaultPrefix
}

type rule struct {
	filter string // an MQTT filter under the prefix (or absolute if abs); "%u" stands for the identity's name
	write  bool   // write if true, read if false
	shared bool   // a read rule that may also be subscribed through $share/GROUP/
	abs    bool   // filter is not under the prefix
}

var truckRules = []rule{
	{filter: "trucks/%u/telemetry", write: true},
	{filter: "trucks/%u/events", write: true},
	{filter: "trucks/%u/status", write: true},
	{filter: "trucks/%u/orders/#"},
	{filter: "trucks/%u/receipts"},
	{filter: "dispatch/+/status"},
	{filter: "crl"},
}

var dispatchRules = []rule{
	{filter: "trucks/+/orders/#", write: true},
	{filter: "trucks/+/receipts", write: true},
	{filter: "dispatch/%u/status", write: true},
	{filter: "trucks/#", shared: true},
	{filter: "dispatch/+/status"},
	{filter: "crl"},
}

var adminRules = []rule{
	{filter: ControlTopics, write: true, abs: true},
	{filter: "crl", write: true},
	{filter: ControlTopics, abs: true},
}

func rulesOf(id pki.Identity) []rule {
	switch {
	case id.Role == pki.RoleTruck && pki.ValidateName(id.Name) == nil:
		return truckRules
	case id.Role == pki.RoleDispatch && pki.ValidateName(id.Name) == nil:
		return dispatchRules
	case id.Role == pki.RoleAdmin && id.Name == pki.AdminName:
		return adminRules
	}
	return nil // brokers and invalid identities: nothing
}

func (a ACL) prefix() string {
	if a.Prefix == "" {
		return DefaultPrefix
	}
	return strings.TrimSuffix(a.Prefix, "/")
}

// CRLTopic is where the fleet CRL travels, retained: P/crl.
func (a ACL) CRLTopic() string { return a.prefix() + "/crl" }

// Validate checks the prefix: no wildcards, not empty levels, no leading '$'.
func (a ACL) Validate() error {
	p := a.prefix()
	if strings.ContainsAny(p, "+#%\x00 \t\n") || strings.HasPrefix(p, "$") || strings.HasPrefix(p, "/") ||
		strings.Contains(p, "//") {
		return fmt.Errorf("brokerconf: bad topic prefix %q: use plain topic levels such as \"fleet\" or \"acme/fleet\"", a.Prefix)
	}
	return nil
}

func (a ACL) expand(r rule, name string) string {
	f := strings.ReplaceAll(r.filter, "%u", name)
	if r.abs {
		return f
	}
	return a.prefix() + "/" + f
}

// Allowed reports whether identity may publish to topic (write) or subscribe to and receive from it
// (read). For reads, topic may also be a subscription filter (with + and #): it is allowed when every topic
// it can match is readable. $share/GROUP/filter is allowed only under a shared rule (dispatch's fleet
// topics). Identities of other roles, and invalid names, are refused everything.
func (a ACL) Allowed(id pki.Identity, topic string, write bool) bool {
	rules := rulesOf(id)
	if rules == nil || topic == "" {
		return false
	}
	shared := false
	if write {
		if strings.ContainsAny(topic, "+#") {
			return false
		}
	} else if rest, ok := strings.CutPrefix(topic, "$share/"); ok {
		group, filter, found := strings.Cut(rest, "/")
		if !found || group == "" || strings.ContainsAny(group, "+#") {
			return false
		}
		topic, shared = filter, true
	}
	for _, r := range rules {
		if r.write == write && (!shared || r.shared) && covers(a.expand(r, id.Name), topic) {
			return true
		}
	}
	return false
}

// covers reports whether every topic that filter sub matches is also matched by filter rule. A plain
// topic is a filter that matches only itself, so this is also MQTT topic matching.
func covers(rule, sub string) bool {
	if strings.HasPrefix(sub, "$") != strings.HasPrefix(rule, "$") {
		return false // wildcards never match $-topics at the first level
	}
	r := strings.Split(rule, "/")
	s := strings.Split(sub, "/")
	for i, rl := range r {
		if rl == "#" {
			return true // matches the rest, including the parent level itself
		}
		if i >= len(s) {
			return false
		}
		switch sl := s[i]; {
		case sl == "#":
			return false // sub matches deeper topics than rule allows
		case rl == "+":
			// matches any single level, including a + in sub
		case sl == "+" || sl != rl:
			return false
		}
	}
	return len(s) == len(r)
}

// DynsecACL is one ACL entry of Mosquitto's dynamic security plugin, as its JSON file and its $CONTROL
// commands (createRole, addRoleACL) spell it.
type DynsecACL struct {
	Type     string `json:"acltype"` // publishClientSend, publishClientReceive, subscribePattern
	Topic    string `json:"topic"`
	Priority int    `json:"priority"`
	Allow    bool   `json:"allow"`
}

// DynsecRole returns the plugin ACLs of one identity, with its name written out: the plugin of Mosquitto
// 2.0 does not expand %u, so every identity gets a role of its own, named like the identity. A read rule
// becomes subscribePattern plus publishClientReceive; a shared rule adds subscribePattern $share/+/filter.
func (a ACL) DynsecRole(id pki.Identity) ([]DynsecACL, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	rules := rulesOf(id)
	if rules == nil {
		return nil, fmt.Errorf("brokerconf: %s %q has no rights at the broker", id.Role, id.Name)
	}
	var acls []DynsecACL
	for _, r := range rules {
		topic := a.expand(r, id.Name)
		if r.write {
			acls = append(acls, DynsecACL{Type: "publishClientSend", Topic: topic, Allow: true})
			continue
		}
		acls = append(acls, DynsecACL{Type: "subscribePattern", Topic: topic, Allow: true},
			DynsecACL{Type: "publishClientReceive", Topic: topic, Allow: true})
		if r.shared {
			acls = append(acls, DynsecACL{Type: "subscribePattern", Topic: "$share/+/" + topic, Allow: true})
		}
	}
	return acls, nil
}

// DynsecDefaultAccess is the plugin's answer for anything no role allows: nothing, except unsubscribing.
var DynsecDefaultAccess = map[string]bool{
	"publishClientSend": false, "publishClientReceive": false, "subscribe": false, "unsubscribe": true,
}

// Dynsec renders the dynamic security plugin's configuration file: a client and a role for every
// identity in ids (trucks and dispatch processes with a valid certificate, and the administrator),
// default access nothing. The plugin reads it only at start and rewrites it itself after every $CONTROL
// command; while the broker runs, changes go through $CONTROL (brokeradmin.Sync).
func (a ACL) Dynsec(ids []pki.Identity) ([]byte, error) {
	type roleRef struct {
		Name string `json:"rolename"`
	}
	type client struct {
		Username string    `json:"username"`
		TextName string    `json:"textname"`
		Roles    []roleRef `json:"roles"`
	}
	type role struct {
		Name string      `json:"rolename"`
		ACLs []DynsecACL `json:"acls"`
	}
	out := struct {
		Default map[string]bool `json:"defaultACLAccess"`
		Clients []client        `json:"clients"`
		Groups  []struct{}      `json:"groups"`
		Roles   []role          `json:"roles"`
	}{Default: DynsecDefaultAccess, Clients: []client{}, Groups: []struct{}{}, Roles: []role{}}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id.Name] {
			return nil, fmt.Errorf("brokerconf: identity %q listed twice", id.Name)
		}
		seen[id.Name] = true
		acls, err := a.DynsecRole(id)
		if err != nil {
			return nil, err
		}
		out.Clients = append(out.Clients, client{Username: id.Name, TextName: string(id.Role), Roles: []roleRef{{id.Name}}})
		out.Roles = append(out.Roles, role{Name: id.Name, ACLs: acls})
	}
	return json.MarshalIndent(out, "", " ")
}
