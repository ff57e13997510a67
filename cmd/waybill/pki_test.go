package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// runCmd runs one waybill command line in-process.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), streams{strings.NewReader(""), &out, &errb}, args)
	return code, out.String(), errb.String()
}

func TestPKICommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	steps := []struct {
		args    []string
		code    int
		want    string // in stdout
		wantErr string // in stderr
	}{
		{[]string{"pki", "list", "--dir", dir}, 1, "", "waybill pki init"},
		{[]string{"pki", "init", "--dir", dir, "--fleet", "acme"}, 0, "acme fleet CA", ""},
		{[]string{"pki", "init", "--dir", dir}, 1, "", "already exists"},
		{[]string{"pki", "issue", "--dir", dir, "--role", "broker", "--host", "mqtt.example.com", "mqtt"}, 0, "issued broker mqtt", ""},
		{[]string{"pki", "issue", "--dir", dir, "truck-7", "--role", "truck"}, 0, "issued truck truck-7", ""}, // flags after NAME
		{[]string{"pki", "issue", "--dir", dir, "--role", "dispatch", "--key", "ed25519", "office"}, 0, "waybill broker sync", ""},
		{[]string{"pki", "issue", "--dir", dir, "--role", "dispatch", "truck-7"}, 1, "", "another role"},
		{[]string{"pki", "issue", "--dir", dir, "--role", "truck", "Truck/7"}, 1, "", "invalid identity name"},
		{[]string{"pki", "issue", "--dir", dir, "--role", "truck", "dispatch"}, 1, "", "reserved"},
		{[]string{"pki", "issue", "--dir", dir, "--role", "pilot", "p1"}, 1, "", "unknown role"},
		{[]string{"pki", "issue", "--dir", dir, "t9"}, 2, "", "--role"},
		{[]string{"pki", "issue", "--dir", dir, "--role", "truck"}, 2, "", "exactly one NAME"},
		{[]string{"pki", "issue", "--bogus"}, 2, "", "flag provided but not defined"},
		{[]string{"pki", "revoke", "--dir", dir, "truck-7"}, 0, "revoked truck truck-7", ""},
		{[]string{"pki", "revoke", "--dir", dir, "truck-7"}, 1, "", "no valid certificate"},
		{[]string{"pki", "crl", "--dir", dir, "--days", "10"}, 0, "next update", "expires soon"},
		{[]string{"pki", "list", "--dir", dir}, 0, "truck-7", "expires soon"},
		{[]string{"pki", "issue", "--help"}, 0, "--role truck|dispatch|broker", ""},
		{[]string{"pki", "--help"}, 0, "revoke NAME", ""},
		{[]string{"pki", "frobnicate"}, 2, "", "unknown pki command"},
	}
	for _, st := range steps {
		code, out, errOut := runCmd(t, st.args...)
		if code != st.code || !strings.Contains(out, st.want) || !strings.Contains(errOut, st.wantErr) {
			t.Errorf("waybill %s: exit %d, want %d\nstdout: %s\nstderr: %s\nwant stdout %q, stderr %q",
				strings.Join(st.args, " "), code, st.code, out, errOut, st.want, st.wantErr)
		}
	}
	_, out, _ := runCmd(t, "pki", "list", "--dir", dir)
	if !regexpLine(out, "truck-7", "revoked") || !regexpLine(out, "office", "valid") || !strings.Contains(out, "CRL: 1 revoked") {
		t.Errorf("list:\n%s", out)
	}
	if err := pki.CheckKeyFile(filepath.Join(dir, "private", "office.key")); err != nil {
		t.Error(err)
	}
}

func regexpLine(out, name, status string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, name+" ") && strings.Contains(l, status) {
			return true
		}
	}
	return false
}

func TestPKIDirFromEnv(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "envpki")
	t.Setenv("WAYBILL_PKI", dir)
	if code, _, errOut := runCmd(t, "pki", "init"); code != 0 {
		t.Fatalf("init: %d %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.crt")); err != nil {
		t.Error(err)
	}
}

// --count issues a numbered batch in one go; every name is in the index and has its files.
func TestPKIIssueCount(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if code, _, errOut := runCmd(t, "pki", "init", "--dir", dir); code != 0 {
		t.Fatal(errOut)
	}
	code, out, errOut := runCmd(t, "pki", "issue", "--dir", dir, "--role", "truck", "--count", "3", "--name-prefix", "van-", "--start", "7")
	if code != 0 || !strings.Contains(out, "issued 3 truck certificates, van-00007 ... van-00009") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	_, list, _ := runCmd(t, "pki", "list", "--dir", dir)
	for _, n := range []string{"van-00007", "van-00008", "van-00009"} {
		if !strings.Contains(list, n) {
			t.Errorf("pki list lacks %s:\n%s", n, list)
		}
		if _, err := os.Stat(filepath.Join(dir, "private", n+".key")); err != nil {
			t.Error(err)
		}
	}
	for _, bad := range [][]string{
		{"--count", "2", "van-x"},               // a NAME too
		{"--count", "2"},                        // no prefix
		{"--count", "0", "--name-prefix", "v-"}, // nothing to issue
		{"--name-prefix", "v-"},                 // no count
	} {
		args := append([]string{"pki", "issue", "--dir", dir, "--role", "truck"}, bad...)
		if code, _, errOut := runCmd(t, args...); code != 2 || !strings.Contains(errOut, "--count N --name-prefix") {
			t.Errorf("%v: exit %d, %s", bad, code, errOut)
		}
	}
}
