package brokerconf

import (
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
		"plugin_opt_config_file /etc/waybill/broker/access/dynamic-security.json",
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
	if n := num("max_connections"); n != 2100 {
		t.Errorf("max_connections %d, want 2100 (2 x 1000 trucks + 100)", n)
	}
	if n := num("max_inflight_messages"); n <= 20 {
		t.Errorf("max_inflight_messages %d, want more than Mosquitto's 20", n)
	}
	if n := num("max_queued_messages"); n != 130000 {
		t.Errorf("max_queued_messages %d, want 130000 (1000 trucks x 130 messages an hour x 1 h)", n)
	}
	if n := num("max_queued_bytes"); n != 130000*QueuedBytesPerMessage {
		t.Errorf("max_queued_bytes %d", n)
	}
	if !strings.Contains(conf, "1000 x 130 x 1h\n# = 130000 messages") || !strings.Contains(conf, "about 112 MB per absent dispatch session") {
		t.Errorf("the sizing is not explained in the configuration:\n%s", conf)
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
		{InstallDir: "/x", FleetSize: -1},
		{InstallDir: "/x", DispatchOutage: -time.Hour},
		{InstallDir: "/x", MaxQueuedBytes: -1},
		{InstallDir: "/x", DynsecPlugin: "mosquitto_dynamic_security.so"}, // Mosquitto would look in its working directory
	}
	for _, c := range bad {
		if _, err := Render(c); err == nil {
			t.Errorf("Render(%+v) accepted", c)
		}
	}
}

func TestRenderDynsecPlugin(t *testing.T) {
	const arm = "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so"
	out, err := Render(Config{InstallDir: "/x", DynsecPlugin: arm})
	if err != nil || !strings.Contains(string(out), "\nplugin "+arm+"\n") {
		t.Errorf("%v\n%s", err, out)
	}
	if got := (Config{DynsecPlugin: arm}).PluginPath(); got != arm {
		t.Errorf("PluginPath() = %q", got)
	}
	if got := (Config{}).PluginPath(); !slices.Contains(DynsecPluginPaths, got) {
		t.Errorf("default PluginPath() = %q, not one of DynsecPluginPaths", got)
	}
}

func TestQueueSize(t *testing.T) {
	cases := []struct {
		fleet   int
		outage  time.Duration
		perHour int
		want    int
	}{
		{1000, time.Hour, 130, 130_000},        // the defaults
		{5000, 2 * time.Hour, 130, 1_000_000},  // 1.3 M: the ceiling
		{5000, 30 * time.Minute, 130, 325_000}, // half an hour
		{100, time.Hour, 130, 13_000},          // above the floor
		{10, time.Hour, 130, DefaultMaxQueued}, // 1,300: the floor
		{1, time.Minute, 1, DefaultMaxQueued},
		{1000, 90 * time.Second, 130, DefaultMaxQueued},           // 3,250
		{3, time.Hour + time.Second, 4000, 12_004},                // rounded up
		{math.MaxInt32, 1 << 62, math.MaxInt32, MaxQueuedCeiling}, // no overflow (also where int is 32 bits)
	}
	for _, tc := range cases {
		if got := QueueSize(tc.fleet, tc.outage, tc.perHour); got != tc.want {
			t.Errorf("QueueSize(%d, %s, %d) = %d, want %d", tc.fleet, tc.outage, tc.perHour, got, tc.want)
		}
	}
}

func TestRenderQueueLimits(t *testing.T) {
	cases := []struct {
		cfg           Config
		queued, bytes int
		note          string
	}{
		{Config{}, 130_000, 130_000 * 1024, "1000 x 130 x 1h"},
		{Config{FleetSize: 5000, DispatchOutage: 30 * time.Minute}, 325_000, 325_000 * 1024, "5000 x 130 x 0.5h"},
		{Config{FleetSize: 200, TruckMessagesPerHour: 60}, 12_000, 12_000 * 1024, "200 x 60 x 1h"},
		{Config{FleetSize: 50000, DispatchOutage: 24 * time.Hour}, MaxQueuedCeiling, MaxQueuedCeiling * 1024, "50000 x 130 x 24h"},
		{Config{MaxQueued: 5000}, 5000, 5000 * 1024, "overridden by the configuration"},
		{Config{MaxQueued: 5000, MaxQueuedBytes: 1 << 20}, 5000, 1 << 20, "overridden"},
	}
	for _, tc := range cases {
		tc.cfg.InstallDir = "/x"
		out, err := Render(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		conf := string(out)
		for _, want := range []string{
			"max_queued_messages " + strconv.Itoa(tc.queued) + "\n",
			"max_queued_bytes " + strconv.Itoa(tc.bytes) + "\n",
			tc.note,
		} {
			if !strings.Contains(conf, want) {
				t.Errorf("%+v: config lacks %q", tc.cfg, want)
			}
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
	want := []pki.Identity{{Name: "truck-a", Role: pki.RoleTruck}, {Name: "office-1", Role: pki.RoleDispatch},
		{Name: pki.AdminName, Role: pki.RoleAdmin}}
	if res.Broker != "mqtt" || !slices.Equal(res.Identities, want) {
		t.Errorf("result %+v", res)
	}
	dropIn, err := os.ReadFile(res.DropInPath)
	wantUnit := "\n[Service]\nExecStart=\nExecStart=/usr/sbin/mosquitto -c " + res.ConfPath + "\nLimitNOFILE=3124\n"
	if err != nil || !strings.Contains(string(dropIn), wantUnit) {
		t.Errorf("systemd drop-in (want this configuration started, LimitNOFILE=3124 for 2100 connections): %v\n%s", err, dropIn)
	}
	dynsec, _ := os.ReadFile(res.DynsecPath)
	if !strings.Contains(string(dynsec), `"username": "office-1"`) || strings.Contains(string(dynsec), "office-2") {
		t.Errorf("dynamic security clients wrong:\n%s", dynsec)
	}
	if fi, err := os.Stat(res.DynsecPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("dynamic security file: %v %v", fi.Mode(), err)
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
