package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/dispatch/office"
)

func TestDispatchConfig(t *testing.T) {
	t.Setenv("WAYBILL_DISPATCH_TOKEN", "")
	t.Setenv("WAYBILL_DISPATCH_DSN", "")
	base := `[broker]
urls = ["mqtts://127.0.0.1:8883"]
cert = "d.crt"
key = "d.key"
ca = "ca.crt"
[http]
token_file = "tok"
`
	c, err := parseDispatchConfig(strings.NewReader(base + "[orders]\nbackoff_min = \"45s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.Engine != "embedded" || c.Storage.DataDir != "/var/lib/waybill-dispatch" || c.Orders.BackoffMin.Seconds() != 45 {
		t.Fatalf("defaults: %+v", c)
	}
	for _, tc := range []struct{ extra, want string }{
		{"[orders]\nbackoff_min = 30\n", "needs a unit"},
		{"[orders]\nbackoff_min = \"soon\"\n", "duration \"soon\""},
		{"[storage]\nengine = \"mysql\"\n", "engine \"mysql\""},
		{"[storage]\nengine = \"postgres\"\n", "needs dsn"},
		{"colour = \"red\"\n", "unknown keys: http.colour"},
		{"log_level = \"loud\"\n", "log_level"},
		{"tls_cert = \"a.crt\"\n", "tls_cert and tls_key go together"},
		{"client_ca = \"ca.crt\"\n", "client_ca needs tls_cert"},
		{"tracking_rate = \"lots\"\n", "rate \"lots\""},
		{"tracking_rate = 60\n", "rate \"60\""},
		{"trusted_proxies = [\"proxy.example\"]\n", "trusted_proxies"},
		{"[archive]\nkeep_fixes = \"1s\"\n", "at least \"7d\""},
		{"[archive]\nkeep_fixes = 400\n", "needs a unit"},
		{"[archive]\nkeep_fixes = \"400 days\"\n", "retention \"400 days\""},
	} {
		_, err := parseDispatchConfig(strings.NewReader(base + tc.extra))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.extra, err, tc.want)
		}
	}
	c, err = parseDispatchConfig(strings.NewReader(base + "tracking_rate = \"2/s\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n" +
		"[archive]\nkeep_fixes = \"400d\"\n"))
	if err != nil || c.HTTP.TrackingRate != (office.Rate{N: 2, Per: time.Second}) || c.Archive.KeepFixes.Duration != 400*24*time.Hour {
		t.Errorf("tracking_rate, keep_fixes: %v %+v", err, c)
	}
	noToken := strings.Replace(base, "token_file = \"tok\"\n", "", 1)
	if _, err := parseDispatchConfig(strings.NewReader(noToken)); err == nil || !strings.Contains(err.Error(), "token_file is required") {
		t.Errorf("no token: %v", err)
	}
	if c, err := parseDispatchConfig(strings.NewReader(noToken + "tls_cert = \"a.crt\"\ntls_key = \"a.key\"\nclient_ca = \"ca.crt\"\n")); err != nil ||
		c.HTTP.ClientCA != "ca.crt" {
		t.Errorf("client certificates instead of the token: %v", err)
	}
	if _, err := parseDispatchConfig(strings.NewReader("[http]\ntoken_file = \"t\"\n")); err == nil ||
		!strings.Contains(err.Error(), "urls is required") {
		t.Errorf("no broker: %v", err)
	}
}

func TestDispatchUsage(t *testing.T) {
	var out, errb strings.Builder
	if code := run(context.Background(), streams{strings.NewReader(""), &out, &errb}, []string{"dispatch", "start"}); code != 2 {
		t.Fatalf("dispatch start: exit %d", code)
	}
	if code := run(context.Background(), streams{strings.NewReader(""), &out, &errb}, []string{"dispatch", "run"}); code != 2 {
		t.Fatalf("dispatch run without --config: exit %d: %s", code, errb.String())
	}
}
