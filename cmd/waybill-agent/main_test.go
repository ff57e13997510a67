package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// config writes an agent configuration for cl with the given broker URL and GPS device.
func config(t *testing.T, dir string, cl sdktest.Client, broker, device, extra string) string {
	t.Helper()
	path := filepath.Join(dir, "agent.toml")
	body := fmt.Sprintf("data_dir = %q\n%s\n[identity]\ncert = %q\nkey = %q\nca = %q\n[broker]\nurls = [%q]\n[gps]\ndevice = %q\n",
		filepath.Join(dir, "data"), extra, cl.CertFile, cl.KeyFile, cl.CAFile, broker, device)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runAgent(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestBadConfigurationGivesOneClearMessage: every kind of bad configuration ends in a message that names
// the problem and, where there is one, the fix; never a stack trace.
func TestBadConfigurationGivesOneClearMessage(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{})
	good := b.Truck("truck-0001")
	expired := b.Issue(pki.RoleTruck, "truck-old", pki.IssueOptions{NotBefore: time.Now().AddDate(-2, 0, 0), NotAfter: time.Now().AddDate(0, 0, -1)})
	device := filepath.Join(t.TempDir(), "ttyNOPE")
	broker := "mqtts://" + b.Addr

	cases := []struct {
		name string
		args func(dir string) []string
		code int
		want []string // all must appear in stdout+stderr
	}{
		{"missing file", func(dir string) []string {
			return []string{"run", "--config", filepath.Join(dir, "nope.toml")}
		}, 1, []string{"no such file", "--config"}},
		{"wrong type", func(dir string) []string {
			p := config(t, dir, good, broker, device, "")
			os.WriteFile(p, append(must(os.ReadFile(p)), "[store]\nmax_mb = \"lots\"\n"...), 0o600)
			return []string{"run", "--config", p}
		}, 1, []string{"max_mb", "incompatible types"}},
		{"unknown key", func(dir string) []string {
			return []string{"run", "--config", config(t, dir, good, broker, device, "colour = \"blue\"")}
		}, 1, []string{"unknown keys: colour"}},
		{"plaintext broker", func(dir string) []string {
			return []string{"run", "--config", config(t, dir, good, "mqtt://"+b.Addr, device, "")}
		}, 1, []string{"plaintext", "mqtts://", "allow_plaintext"}},
		{"key readable by others", func(dir string) []string {
			key := filepath.Join(dir, "loose.key")
			os.WriteFile(key, must(os.ReadFile(good.KeyFile)), 0o644)
			os.Chmod(key, 0o644)
			cl := good
			cl.KeyFile = key
			return []string{"run", "--config", config(t, dir, cl, broker, device, "")}
		}, 1, []string{"loose.key", "chmod 600"}},
		{"expired certificate", func(dir string) []string {
			return []string{"check", "--config", config(t, dir, expired, broker, device, "")}
		}, 1, []string{"FAIL", "expired", "renew"}},
		{"unreachable broker", func(dir string) []string {
			return []string{"check", "--config", config(t, dir, good, "mqtts://127.0.0.1:1", device, "")}
		}, 1, []string{"FAIL", "broker mqtts://127.0.0.1:1", "connection refused", "is the broker running"}},
		{"missing serial device", func(dir string) []string {
			return []string{"check", "--config", config(t, dir, good, broker, device, "")}
		}, 1, []string{"FAIL", "gps (serial)", device, "plugged in"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := runAgent(t, c.args(t.TempDir())...)
			all := out + errs
			if code != c.code {
				t.Errorf("exit code %d, want %d; output:\n%s", code, c.code, all)
			}
			for _, w := range c.want {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
			if strings.Contains(all, "goroutine ") || strings.Contains(all, "panic") {
				t.Errorf("stack trace in output:\n%s", all)
			}
			t.Logf("%s", all)
		})
	}
}

// TestCheckPassesOnAGoodConfiguration: the same report, all lines ok, against real Mosquitto (GPS offline).
func TestCheckPassesOnAGoodConfiguration(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{})
	good := b.Truck("truck-0001")
	code, out, errs := runAgent(t, "check", "--offline", "--config", config(t, t.TempDir(), good, "mqtts://"+b.Addr, "/dev/null", ""))
	if code != 0 || strings.Contains(out, "FAIL") {
		t.Fatalf("check failed (%d):\n%s%s", code, out, errs)
	}
	for _, w := range []string{"truck key", "truck certificate", "truck-0001", "store"} {
		if !strings.Contains(out, w) {
			t.Errorf("report lacks %q:\n%s", w, out)
		}
	}
}

func TestVersionAndUsage(t *testing.T) {
	if code, out, _ := runAgent(t, "version"); code != 0 || !strings.HasPrefix(out, "waybill-agent ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, _, errs := runAgent(t, "frobnicate"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Fatalf("unknown command: %d %q", code, errs)
	}
	if code, out, _ := runAgent(t, "--help"); code != 0 || !strings.Contains(out, "run --config FILE") {
		t.Fatalf("help: %d %q", code, out)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
