package brokerconf

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/pki"
)

func TestRender(t *testing.T) {
	out, err := Render(Config{Port: 18883, Bind: "127.0.0.1", InstallDir: "/etc/waybill/broker", User: "root"})
	if err != nil {
		t.Fatal(err)
	}
	conf := string(out)
	for _, want := range []string{
		"listener 18883 127.0.0.1",
		"cafile /etc/waybill/broker/certs/ca.crt",
		"certfile /etc/waybill/broker/certs/broker.crt",
		"keyfile /etc/waybill/broker/certs/broker.key",
		"crlfile /etc/waybill/broker/certs/crl.pem",
		"require_certificate true",
		"use_identity_as_username true",
		"use_username_as_clientid true",
		"tls_version tlsv1.2",
		"allow_anonymous false",
		"acl_file /etc/waybill/broker/acl",
		"persistence true",
		"persistence_location /etc/waybill/broker/data/",
		"autosave_interval 10",
		"max_packet_size 262144",
		"user root",
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).MatchString(conf) {
			t.Errorf("config lacks line %q", want)
		}
	}
	num := func(key string) int {
		m := regexp.MustCompile(`(?m)^` + key + ` (\d+)$`).FindStringSubmatch(conf)
		if m == nil {
			t.Fatalf("no %s", key)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	if n := num("max_inflight_messages"); n <= 20 {
		t.Errorf("max_inflight_messages %d, want more than Mosquitto's 20", n)
	}
	if n := num("max_queued_messages"); n <= 1000 {
		t.Errorf("max_queued_messages %d, want more than Mosquitto's 1000", n)
	}
	// The TLS options must follow the listener line, where Mosquitto applies them.
	if strings.Index(conf, "listener ") > strings.Index(conf, "cafile ") {
		t.Error("TLS options before the listener")
	}

	bad := []Config{
		{InstallDir: "relative"},
		{InstallDir: "/x", Port: 70000},
		{InstallDir: "/x", MaxInflight: 70000},
		{InstallDir: "/x", Bind: "1.2.3.4\nallow_anonymous true"},
		{InstallDir: "/x", ACL: ACL{Prefix: "a/#"}},
		{InstallDir: "/x", Autosave: time.Millisecond},
	}
	for _, c := range bad {
		if _, err := Render(c); err == nil {
			t.Errorf("Render(%+v) accepted", c)
		}
	}
}

func TestWrite(t *testing.T) {
	p, err := pki.Init(pki.Config{Dir: filepath.Join(t.TempDir(), "pki")}, pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "broker")
	if _, err := Write(p, out, Config{}); err == nil || !strings.Contains(err.Error(), "--role broker") {
		t.Errorf("without a broker certificate: %v", err)
	}
	for _, x := range []struct {
		role pki.Role
		name string
	}{{pki.RoleBroker, "mqtt"}, {pki.RoleTruck, "truck-a"}, {pki.RoleDispatch, "office-1"}, {pki.RoleDispatch, "office-2"}} {
		if _, err := p.Issue(x.role, x.name, pki.IssueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Revoke("office-2"); err != nil {
		t.Fatal(err)
	}
	res, err := Write(p, out, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Broker != "mqtt" || strings.Join(res.Dispatch, ",") != "office-1" {
		t.Errorf("result %+v", res)
	}
	acl, _ := os.ReadFile(res.ACLPath)
	if !strings.Contains(string(acl), "user office-1\n") || strings.Contains(string(acl), "office-2") {
		t.Errorf("ACL users wrong:\n%s", acl)
	}
	if err := pki.CheckKeyFile(filepath.Join(out, CertsDir, BrokerKey)); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(out, CertsDir, "ca.key")); err == nil {
		t.Error("CA key copied to the broker directory")
	}
	crl, err := pki.LoadCRL(filepath.Join(out, CertsDir, CRLFileName))
	if err != nil || len(crl.RevokedCertificateEntries) != 1 {
		t.Errorf("copied CRL: %v", err)
	}
	if _, err := p.Issue(pki.RoleBroker, "mqtt-2", pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(p, out, Config{}); err == nil || !strings.Contains(err.Error(), "several") {
		t.Errorf("two brokers, none chosen: %v", err)
	}
	if _, err := Write(p, out, Config{BrokerName: "mqtt-2"}); err != nil {
		t.Error(err)
	}
	if _, err := Write(p, out, Config{BrokerName: "truck-a"}); err == nil {
		t.Error("a truck certificate used as broker")
	}
}

func TestWriteRefusesStaleCRL(t *testing.T) {
	past := time.Now().Add(-200 * 24 * time.Hour)
	p, err := pki.Init(pki.Config{Dir: t.TempDir(), Now: func() time.Time { return past }}, pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Issue(pki.RoleBroker, "mqtt", pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(p, t.TempDir(), Config{}); err == nil || !strings.Contains(err.Error(), "stale") {
		t.Errorf("stale CRL installed: %v", err)
	}
}
