package brokerconf

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// DefaultPrefix is the topic prefix when ACL.Prefix is empty (design.md).
const DefaultPrefix = "fleet"

// ACL is the fleet's topic access rules (design.md), as one Go value that both renders Mosquitto's
// acl_file and decides for the development broker, so the two brokers enforce the same rules.
//
// The rules, with P the prefix:
//
//	every identity N  write P/trucks/N/telemetry, P/trucks/N/events, P/trucks/N/status
//	                  read  P/trucks/N/orders/#, P/trucks/N/receipts
//	                  read  P/dispatch/+/status
//	role dispatch     write P/trucks/+/orders/#, P/trucks/+/receipts
//	                  write P/dispatch/N/status
//	                  read  P/trucks/#
//
// Receipts (P/trucks/T/receipts) are dispatch's signed word that it committed a truck's records: any
// dispatch may send them to any truck, a truck reads only its own. P/dispatch/N/status is each dispatch
// process's retained online/offline status (also its will): only dispatch N writes it, trucks and dispatch
// read every one. Nothing else may be written under P/dispatch/, so a truck cannot pose as dispatch.
//
// The per-name rules of every identity are Mosquitto `pattern` lines (%u), which apply to every client,
// dispatch included; Allowed mirrors that exactly. It is harmless: names are unique across roles, and
// receivers accept telemetry only from a truck certificate named in the topic. The dispatch status rule is
// per name too, but in the dispatch `user` blocks with the name written out: as a pattern it would let a
// truck write P/dispatch/<truck>/status.
type ACL struct {
	Prefix string // topic prefix; "" means DefaultPrefix
}

type rule struct {
	filter string // an MQTT filter; "%u" stands for the identity's name
	write  bool   // write if true, read if false
}

// Mosquitto's `pattern` rules: they apply to every authenticated client.
var patternRules = []rule{
	{"trucks/%u/telemetry", true},
	{"trucks/%u/events", true},
	{"trucks/%u/status", true},
	{"trucks/%u/orders/#", false},
	{"trucks/%u/receipts", false},
	{"dispatch/+/status", false},
}

// Rules of role dispatch (Mosquitto `user` blocks).
var dispatchRules = []rule{
	{"trucks/+/orders/#", true},
	{"trucks/+/receipts", true},
	{"dispatch/%u/status", true},
	{"trucks/#", false},
}

func (a ACL) prefix() string {
	if a.Prefix == "" {
		return DefaultPrefix
	}
	return strings.TrimSuffix(a.Prefix, "/")
}

// Validate checks the prefix: no wildcards, not empty levels, no leading '$'.
func (a ACL) Validate() error {
	p := a.prefix()
	if strings.ContainsAny(p, "+#%\x00 \t\n") || strings.HasPrefix(p, "$") || strings.HasPrefix(p, "/") ||
		strings.Contains(p, "//") {
		return fmt.Errorf("brokerconf: bad topic prefix %q: use plain topic levels such as \"fleet\" or \"acme/fleet\"", a.Prefix)
	}
	return nil
}

// Allowed reports whether identity may publish to topic (write) or receive from it (read). For reads,
// topic may also be a subscription filter (with + and #, or $share/GROUP/filter): it is allowed when every
// topic it can match is readable. An identity with an invalid name is refused everything.
func (a ACL) Allowed(id pki.Identity, topic string, write bool) bool {
	if pki.ValidateName(id.Name) != nil || topic == "" {
		return false
	}
	if write {
		if strings.ContainsAny(topic, "+#") {
			return false
		}
	} else if rest, ok := strings.CutPrefix(topic, "$share/"); ok {
		_, filter, found := strings.Cut(rest, "/")
		if !found {
			return false
		}
		topic = filter
	}
	p := a.prefix() + "/"
	check := func(rules []rule) bool {
		for _, r := range rules {
			if r.write != write {
				continue
			}
			f := p + strings.ReplaceAll(r.filter, "%u", id.Name)
			if covers(f, topic) {
				return true
			}
		}
		return false
	}
	if check(patternRules) {
		return true
	}
	return id.Role == pki.RoleDispatch && check(dispatchRules)
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

// Mosquitto renders the rules as a Mosquitto acl_file, with a `user` block for each dispatch name.
// Mosquitto knows roles only through these blocks: regenerate the file and send Mosquitto SIGHUP after
// issuing or revoking a dispatch certificate (truck certificates need nothing: the patterns cover them).
func (a ACL) Mosquitto(dispatch []string) ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	p := a.prefix() + "/"
	fmt.Fprintln(&b, "# Waybill broker ACL, generated by `waybill broker config`. Do not edit: regenerate it, then")
	fmt.Fprintln(&b, "# send Mosquitto SIGHUP. Identities are certificate CNs (use_identity_as_username).")
	fmt.Fprintln(&b, "")
	fmt.Fprintln(&b, "# Every identity: write its own telemetry, events and status; read its own orders and receipts,")
	fmt.Fprintln(&b, "# and every dispatch process's status. (Mosquitto warns that the status pattern has no %u: it is")
	fmt.Fprintln(&b, "# meant for everybody, and a topic line outside a user block would apply only to anonymous clients.)")
	for _, r := range patternRules {
		fmt.Fprintf(&b, "pattern %s %s%s\n", access(r.write), p, r.filter)
	}
	for _, name := range dispatch {
		if err := pki.ValidateName(name); err != nil {
			return nil, err
		}
		fmt.Fprintln(&b, "")
		fmt.Fprintf(&b, "# dispatch: orders and receipts for any truck, its own status, read the whole fleet\n")
		fmt.Fprintf(&b, "user %s\n", name)
		for _, r := range dispatchRules {
			fmt.Fprintf(&b, "topic %s %s%s\n", access(r.write), p, strings.ReplaceAll(r.filter, "%u", name))
		}
	}
	return b.Bytes(), nil
}

func access(write bool) string {
	if write {
		return "write"
	}
	return "read"
}
