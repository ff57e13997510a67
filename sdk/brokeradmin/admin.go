package brokeradmin

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/waybill-iot/waybill/sdk/brokerconf"
	"github.com/waybill-iot/waybill/sdk/pki"
)

const (
	controlTopic  = "$CONTROL/dynamic-security/v1"
	responseTopic = "$CONTROL/dynamic-security/v1/response"
	// batchBytes bounds one command message well below brokerconf.DefaultMaxPacketSize.
	batchBytes = 64 << 10
	// pageSize is how many clients or roles one list command asks for, so a response stays small too.
	pageSize = 200
)

// Config says how to reach the broker. Zero values are documented per field.
type Config struct {
	// Broker is the broker's address: mqtts://HOST:PORT or HOST:PORT (required).
	Broker string
	// Certificate is the administrator's client certificate (pki.MintAdmin; required).
	Certificate tls.Certificate
	// Roots are the CAs that may sign the broker's certificate (the fleet CA; required).
	Roots *x509.CertPool
	// ACL holds the topic prefix: the rules and the CRL topic.
	ACL brokerconf.ACL
	// Logger receives what was changed; nil discards.
	Logger *slog.Logger
}

// FromPKI returns a Config for broker with an administrator certificate minted from p's CA key.
func FromPKI(p *pki.PKI, broker string, acl brokerconf.ACL) (Config, error) {
	cert, err := p.MintAdmin(0)
	if err != nil {
		return Config{}, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.CACert())
	return Config{Broker: broker, Certificate: cert, Roots: roots, ACL: acl}, nil
}

// Admin is a connected administrator session.
type Admin struct {
	cfg Config
	log *slog.Logger
	c   *paho.Client

	closeOnce sync.Once

	mu      sync.Mutex
	waiting map[string]chan response // correlation data -> the caller waiting for it
}

type command map[string]any

type response struct {
	Command     string          `json:"command"`
	Error       string          `json:"error"`
	Data        json.RawMessage `json:"data"`
	Correlation string          `json:"correlationData"`
}

// Dial connects to the broker as the administrator and subscribes to the plugin's responses.
func Dial(ctx context.Context, cfg Config) (*Admin, error) {
	if cfg.Broker == "" || cfg.Roots == nil || len(cfg.Certificate.Certificate) == 0 {
		return nil, errors.New("brokeradmin: a broker address, the fleet CA and an admin certificate are required")
	}
	if err := cfg.ACL.Validate(); err != nil {
		return nil, err
	}
	host, addr, err := hostPort(cfg.Broker)
	if err != nil {
		return nil, err
	}
	a := &Admin{cfg: cfg, log: cfg.Logger, waiting: map[string]chan response{}}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	d := tls.Dialer{Config: &tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: cfg.Roots, ServerName: host,
		Certificates: []tls.Certificate{cfg.Certificate},
	}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("brokeradmin: connect to %s: %w", cfg.Broker, err)
	}
	a.c = paho.NewClient(paho.ClientConfig{
		// paho writes a packet in several Writes and may send a PINGREQ from another goroutine meanwhile:
		// without the lock they interleave and the broker drops the connection as malformed.
		Conn:                       packets.NewThreadSafeConn(conn),
		OnPublishReceived:          []func(paho.PublishReceived) (bool, error){a.onPublish},
		OnClientError:              func(err error) { a.log.Debug("brokeradmin: connection error", "err", err) },
		EnableManualAcknowledgment: false,
	})
	ca, err := a.c.Connect(ctx, &paho.Connect{ClientID: pki.AdminName, CleanStart: true, KeepAlive: 30})
	if err != nil {
		conn.Close()
		if ca != nil {
			return nil, fmt.Errorf("brokeradmin: %s refused the administrator (reason %d): is it configured by `waybill broker config`?", cfg.Broker, ca.ReasonCode)
		}
		return nil, fmt.Errorf("brokeradmin: connect to %s: %w", cfg.Broker, err)
	}
	sa, err := a.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: responseTopic, QoS: 1}}})
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("brokeradmin: subscribe %s: %w", responseTopic, err)
	}
	if len(sa.Reasons) != 1 || sa.Reasons[0] >= 0x80 {
		a.Close()
		return nil, fmt.Errorf("brokeradmin: %s refused the administrator's subscription to %s (reason %v): the broker "+
			"does not run the dynamic security plugin as `waybill broker config` sets it up; regenerate its configuration and restart it",
			cfg.Broker, responseTopic, sa.Reasons)
	}
	return a, nil
}

// hostPort splits mqtts://HOST:PORT or HOST:PORT into the TLS server name and the dial address.
func hostPort(broker string) (host, addr string, err error) {
	s := broker
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", "", fmt.Errorf("brokeradmin: bad broker address %q: want mqtts://HOST:PORT", broker)
		}
		if u.Scheme != "mqtts" && u.Scheme != "ssl" && u.Scheme != "tls" {
			return "", "", fmt.Errorf("brokeradmin: broker address %q: only mqtts:// (TLS) is supported", broker)
		}
		s = u.Host
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || port == "" {
		return "", "", fmt.Errorf("brokeradmin: bad broker address %q: want mqtts://HOST:PORT", broker)
	}
	return host, s, nil
}

// Close disconnects. Calling it again does nothing.
func (a *Admin) Close() error {
	var err error
	a.closeOnce.Do(func() { err = a.close() })
	return err
}

func (a *Admin) close() error {
	err := a.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	a.mu.Lock()
	for k, ch := range a.waiting {
		close(ch)
		delete(a.waiting, k)
	}
	a.mu.Unlock()
	return err
}

func (a *Admin) onPublish(pr paho.PublishReceived) (bool, error) {
	if pr.Packet.Topic != responseTopic {
		return true, nil
	}
	var msg struct {
		Responses []response `json:"responses"`
	}
	if err := json.Unmarshal(pr.Packet.Payload, &msg); err != nil {
		a.log.Warn("brokeradmin: unreadable response from the broker", "err", err)
		return true, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range msg.Responses {
		if ch, ok := a.waiting[r.Correlation]; ok {
			ch <- r
			delete(a.waiting, r.Correlation)
		}
	}
	return true, nil
}

// run sends cmds in batches and returns their responses in order. A command the plugin answers with an
// error gives an error naming it, unless ignore says that error is expected.
func (a *Admin) run(ctx context.Context, cmds []command, ignore func(command, string) bool) ([]response, error) {
	chans := make([]chan response, len(cmds))
	var batch []command
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		payload, err := json.Marshal(map[string]any{"commands": batch})
		if err != nil {
			return fmt.Errorf("brokeradmin: %w", err)
		}
		batch, size = nil, 0
		pr, err := a.c.Publish(ctx, &paho.Publish{Topic: controlTopic, QoS: 1, Payload: payload})
		if err != nil {
			return fmt.Errorf("brokeradmin: send commands: %w", err)
		}
		if pr != nil && pr.ReasonCode >= 0x80 {
			return fmt.Errorf("brokeradmin: the broker refused the administrator's commands (reason %d): is this broker configured by `waybill broker config`?", pr.ReasonCode)
		}
		return nil
	}
	for i, c := range cmds {
		id := make([]byte, 8)
		_, _ = rand.Read(id)
		c["correlationData"] = hex.EncodeToString(id)
		chans[i] = make(chan response, 1)
		a.mu.Lock()
		a.waiting[c["correlationData"].(string)] = chans[i]
		a.mu.Unlock()
		b, _ := json.Marshal(c)
		if size+len(b) > batchBytes {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		batch, size = append(batch, c), size+len(b)+1
	}
	if err := flush(); err != nil {
		return nil, err
	}
	out := make([]response, len(cmds))
	for i, ch := range chans {
		select {
		case r, ok := <-ch:
			if !ok {
				return nil, errors.New("brokeradmin: closed while waiting for the broker")
			}
			if r.Error != "" && (ignore == nil || !ignore(cmds[i], r.Error)) {
				return nil, fmt.Errorf("brokeradmin: %s %s: %s", cmds[i]["command"], subject(cmds[i]), r.Error)
			}
			out[i] = r
		case <-ctx.Done():
			return nil, fmt.Errorf("brokeradmin: no answer from the broker's dynamic security plugin: %w", ctx.Err())
		}
	}
	return out, nil
}

func subject(c command) string {
	for _, k := range []string{"username", "rolename"} {
		if v, ok := c[k]; ok {
			return fmt.Sprint(v)
		}
	}
	return ""
}

// Client is one client the broker knows, with its roles.
type Client struct {
	Username string   `json:"username"`
	Roles    []string `json:"-"`
	Disabled bool     `json:"disabled"`
}

type role struct {
	Name string                 `json:"rolename"`
	ACLs []brokerconf.DynsecACL `json:"acls"`
}

// Clients lists every client the plugin knows.
func (a *Admin) Clients(ctx context.Context) ([]Client, error) {
	type listed struct {
		Username string `json:"username"`
		Disabled bool   `json:"disabled"`
		Roles    []struct {
			Name string `json:"rolename"`
		} `json:"roles"`
	}
	items, err := listAll[listed](ctx, a, "listClients", "clients")
	if err != nil {
		return nil, err
	}
	all := make([]Client, 0, len(items))
	for _, c := range items {
		cl := Client{Username: c.Username, Disabled: c.Disabled}
		for _, r := range c.Roles {
			cl.Roles = append(cl.Roles, r.Name)
		}
		all = append(all, cl)
	}
	return all, nil
}

func (a *Admin) roles(ctx context.Context) (map[string][]brokerconf.DynsecACL, error) {
	items, err := listAll[role](ctx, a, "listRoles", "roles")
	if err != nil {
		return nil, err
	}
	all := make(map[string][]brokerconf.DynsecACL, len(items))
	for _, r := range items {
		all[r.Name] = r.ACLs
	}
	return all, nil
}

// listAll runs a verbose list command page by page (a response stays below the packet limit) and returns
// the items under key of every page.
func listAll[T any](ctx context.Context, a *Admin, cmd, key string) ([]T, error) {
	var all []T
	for offset := 0; ; offset += pageSize {
		rs, err := a.run(ctx, []command{{"command": cmd, "verbose": true, "count": pageSize, "offset": offset}}, nil)
		if err != nil {
			return nil, err
		}
		var page map[string]json.RawMessage
		var total int
		var items []T
		err = json.Unmarshal(rs[0].Data, &page)
		if err == nil && page["totalCount"] != nil {
			err = json.Unmarshal(page["totalCount"], &total)
		}
		if err == nil && page[key] != nil { // an empty list may be left out
			err = json.Unmarshal(page[key], &items)
		}
		if err != nil {
			return nil, fmt.Errorf("brokeradmin: unreadable answer to %s: %w", cmd, err)
		}
		all = append(all, items...)
		if len(items) < pageSize || offset+pageSize >= total {
			return all, nil
		}
	}
}

// SyncResult says what Sync changed.
type SyncResult struct {
	Created   []string // identities the broker did not know
	Corrected []string // identities whose role or rules differed
	Removed   []string // clients not in the list: deleted, their sessions ended
}

// Sync makes the broker's clients and roles match ids: one client and one role (of the same name) per
// identity, with brokerconf's rules. Clients not in ids are deleted, which ends their sessions; the
// administrator itself is always kept as configured. The plugin disconnects the clients of a role it
// changes (they reconnect with the new rules); created and unchanged identities are not disturbed.
// Every change makes the plugin rewrite its whole file: Sync is for the changes of a day, a new fleet
// starts from the file that brokerconf.Write renders.
func (a *Admin) Sync(ctx context.Context, ids []pki.Identity) (SyncResult, error) {
	var res SyncResult
	clients, err := a.Clients(ctx)
	if err != nil {
		return res, err
	}
	roles, err := a.roles(ctx)
	if err != nil {
		return res, err
	}
	have := map[string]Client{}
	for _, c := range clients {
		have[c.Username] = c
	}
	want := map[string]bool{pki.AdminName: true}
	var cmds []command
	for _, id := range ids {
		if id.Name == pki.AdminName {
			// Changing a role makes the plugin disconnect its clients: correcting our own would cut this
			// session off mid-batch. The administrator's role comes from the configuration file.
			continue
		}
		want[id.Name] = true
		acls, err := a.cfg.ACL.DynsecRole(id)
		if err != nil {
			return res, err
		}
		got, roleExists := roles[id.Name]
		changed := false
		switch {
		case !roleExists:
			cmds = append(cmds, command{"command": "createRole", "rolename": id.Name, "textname": string(id.Role), "acls": acls})
		case !sameACLs(got, acls):
			changed = true
			for _, acl := range got {
				if !slices.ContainsFunc(acls, func(x brokerconf.DynsecACL) bool { return sameACL(x, acl) }) {
					cmds = append(cmds, command{"command": "removeRoleACL", "rolename": id.Name, "acltype": acl.Type, "topic": acl.Topic})
				}
			}
			for _, acl := range acls {
				if !slices.ContainsFunc(got, func(x brokerconf.DynsecACL) bool { return sameACL(x, acl) }) {
					cmds = append(cmds, addACL(id.Name, acl))
				}
			}
		}
		c, clientExists := have[id.Name]
		switch {
		case !clientExists:
			cmds = append(cmds, command{"command": "createClient", "username": id.Name, "textname": string(id.Role),
				"roles": []map[string]any{{"rolename": id.Name}}})
			res.Created = append(res.Created, id.Name)
		case !slices.Contains(c.Roles, id.Name) || c.Disabled:
			changed = true
			if !slices.Contains(c.Roles, id.Name) {
				cmds = append(cmds, command{"command": "addClientRole", "username": id.Name, "rolename": id.Name})
			}
			if c.Disabled {
				cmds = append(cmds, command{"command": "enableClient", "username": id.Name})
			}
		}
		if changed {
			res.Corrected = append(res.Corrected, id.Name)
		}
	}
	for _, c := range clients {
		if !want[c.Username] {
			cmds = append(cmds, removeCommands(c.Username)...)
			res.Removed = append(res.Removed, c.Username)
		}
	}
	if len(cmds) == 0 {
		return res, nil
	}
	_, err = a.run(ctx, cmds, notFound)
	if err == nil {
		a.log.Info("broker synchronised", "created", res.Created, "corrected", res.Corrected, "removed", res.Removed)
	}
	return res, err
}

// Remove deletes the named clients and their roles: a live session ends at once (DISCONNECT with reason
// 0x98) and a reconnect may do nothing. Names the broker does not know are not an error.
func (a *Admin) Remove(ctx context.Context, names ...string) error {
	var cmds []command
	for _, n := range names {
		if n == pki.AdminName {
			return errors.New("brokeradmin: refusing to remove the administrator")
		}
		cmds = append(cmds, removeCommands(n)...)
	}
	_, err := a.run(ctx, cmds, notFound)
	return err
}

func removeCommands(name string) []command {
	return []command{{"command": "deleteClient", "username": name}, {"command": "deleteRole", "rolename": name}}
}

// notFound accepts the plugin's answer for deleting what is already gone.
func notFound(c command, msg string) bool {
	return strings.HasPrefix(fmt.Sprint(c["command"]), "delete") && strings.Contains(strings.ToLower(msg), "not found")
}

func addACL(rolename string, acl brokerconf.DynsecACL) command {
	return command{"command": "addRoleACL", "rolename": rolename, "acltype": acl.Type, "topic": acl.Topic,
		"priority": acl.Priority, "allow": acl.Allow}
}

func sameACL(x, y brokerconf.DynsecACL) bool {
	return strings.EqualFold(x.Type, y.Type) && x.Topic == y.Topic && x.Allow == y.Allow && x.Priority == y.Priority
}

func sameACLs(got, want []brokerconf.DynsecACL) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g brokerconf.DynsecACL) bool { return sameACL(g, w) }) {
			return false
		}
	}
	return true
}

// PublishCRL publishes der, the fleet CRL, retained on the fleet's CRL topic, and waits for the broker's
// acknowledgement. Receivers check its signature against the fleet CA and keep the newest.
func (a *Admin) PublishCRL(ctx context.Context, der []byte) error {
	if _, err := x509.ParseRevocationList(der); err != nil {
		return fmt.Errorf("brokeradmin: not a DER CRL: %w", err)
	}
	topic := a.cfg.ACL.CRLTopic()
	pr, err := a.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: der})
	if err != nil {
		return fmt.Errorf("brokeradmin: publish the CRL on %s: %w", topic, err)
	}
	if pr != nil && pr.ReasonCode >= 0x80 {
		return fmt.Errorf("brokeradmin: the broker refused the CRL on %s (reason %d)", topic, pr.ReasonCode)
	}
	return nil
}
