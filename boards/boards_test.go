package boards_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/waybill-iot/waybill/agent"
	"github.com/waybill-iot/waybill/boards"
	"github.com/waybill-iot/waybill/sdk/pki"
)

func TestEveryProfileIsValid(t *testing.T) {
	names := boards.Names()
	for _, want := range []string{"rpi4", "rpi-zero2", "beaglebone-black", "usb-ublox-arm64", "openwrt-armv7"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("board %s missing from %v", want, names)
		}
	}
	// Every profile must name a Go target.
	out, err := exec.Command("go", "tool", "dist", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		p, err := boards.Lookup(n)
		if err != nil {
			t.Errorf("%s: %v", n, err)
			continue
		}
		if !strings.Contains(string(out), "linux/"+p.GOARCH+"\n") {
			t.Errorf("%s: linux/%s is not a Go target", n, p.GOARCH)
		}
	}
}

func TestLookupUnknownNamesTheKnownOnes(t *testing.T) {
	for _, c := range []struct{ name, hint string }{{"rpi9", "did you mean rpi4?"}, {"RPi_Zero2", "did you mean rpi-zero2?"},
		{"BOARD", ""}, {"../boards", ""}, {"", ""}} {
		_, err := boards.Lookup(c.name)
		if !errors.Is(err, boards.ErrUnknownBoard) || !strings.Contains(err.Error(), "known: beaglebone-black, ") {
			t.Errorf("Lookup(%q) = %v, want ErrUnknownBoard and the list", c.name, err)
			continue
		}
		if c.hint != "" && !strings.Contains(err.Error(), c.hint) || c.hint == "" && strings.Contains(err.Error(), "did you mean") {
			t.Errorf("Lookup(%q) = %v, want hint %q", c.name, err, c.hint)
		}
	}
}

// unit reads a systemd unit's (or drop-in's) settings: key -> values, in order.
func unit(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			out[k] = append(out[k], strings.Fields(v)...)
		}
	}
	return out
}

func TestServiceFilesMatchTheCommandLine(t *testing.T) {
	// The service files start the agent with the commands design.md fixes.
	for _, f := range []string{"waybill-agent.service", "waybill-agent.init"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "run --config") {
			t.Errorf("%s does not run `waybill-agent run --config`", f)
		}
	}
	unit, _ := os.ReadFile("waybill-agent.service")
	for _, want := range []string{"Type=notify", "WatchdogSec=", "StateDirectory=waybill", "Restart=always",
		"StartLimitIntervalSec=0", "NoNewPrivileges=yes", "ProtectSystem=strict"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("systemd unit lacks %s", want)
		}
	}
}

// TestUnitStartsAnywhere (issue 11.8): the unit starts in a dead zone and on plain Debian, which has no gpio
// group (a missing SupplementaryGroups= group fails the start with 216/GROUP, which `systemd-analyze
// verify` cannot see); GPIO access comes from the drop-in, which INSTALL.md installs after making sure the
// group exists.
func TestUnitStartsAnywhere(t *testing.T) {
	u := unit(t, "waybill-agent.service")
	if g := u["SupplementaryGroups"]; strings.Join(g, " ") != "dialout" {
		t.Errorf("SupplementaryGroups=%v: name only dialout, which every Debian image has (gpio goes in the drop-in)", g)
	}
	after := " " + strings.Join(u["After"], " ") + " "
	for _, w := range u["Wants"] {
		if !strings.Contains(after, " "+w+" ") {
			t.Errorf("Wants=%s without After=%s: the unit may start before it", w, w)
		}
	}
	for _, bad := range []string{"network-online.target", "network.target", "time-sync.target"} {
		if strings.Contains(after+strings.Join(u["Wants"], " "), bad) {
			t.Errorf("the unit waits for %s, which a dead zone may never reach; the agent queues offline", bad)
		}
	}
	if !strings.Contains(after, " time-set.target ") {
		t.Errorf("After=%v: want time-set.target (the clock restored locally before certificates are checked)", u["After"])
	}
	if r := u["Restart"]; len(r) != 1 || r[0] != "always" {
		t.Errorf("Restart=%v, want always", r)
	}
	d := unit(t, "waybill-agent-gpio.conf")
	if g := d["SupplementaryGroups"]; strings.Join(g, " ") != "gpio" {
		t.Errorf("the GPIO drop-in adds SupplementaryGroups=%v, want gpio", g)
	}
	rules, err := os.ReadFile("90-waybill-gpio.rules")
	if err != nil || !strings.Contains(string(rules), `KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"`) {
		t.Errorf("90-waybill-gpio.rules: %v, want the gpiochip devices given to group gpio", err)
	}
	install, _ := os.ReadFile("INSTALL.md")
	for _, want := range []string{"getent group gpio || {", "groupadd --system gpio", "90-waybill-gpio.rules /etc/udev/rules.d/",
		"waybill-agent-gpio.conf /etc/systemd/system/waybill-agent.service.d/gpio.conf"} {
		if !strings.Contains(string(install), want) {
			t.Errorf("INSTALL.md lacks the GPIO step %q", want)
		}
	}
}

// TestSystemdUnitVerifies runs `systemd-analyze verify` on the unit with its GPIO drop-in. It needs the
// ExecStart binary to exist, so the unit is copied with ExecStart pointing at a temporary one.
func TestSystemdUnitVerifies(t *testing.T) {
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is missing: apt-get install systemd")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "waybill-agent")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("waybill-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "ExecStart=/usr/local/bin/waybill-agent ") {
		t.Fatal("the unit's ExecStart is not /usr/local/bin/waybill-agent (INSTALL.md installs it there)")
	}
	u := strings.Replace(string(raw), "ExecStart=/usr/local/bin/waybill-agent ", "ExecStart="+bin+" ", 1)
	if err := os.WriteFile(filepath.Join(dir, "waybill-agent.service"), []byte(u), 0o644); err != nil {
		t.Fatal(err)
	}
	dropins := filepath.Join(dir, "waybill-agent.service.d")
	os.Mkdir(dropins, 0o755)
	gpio, err := os.ReadFile("waybill-agent-gpio.conf")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dropins, "gpio.conf"), gpio, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "verify", filepath.Join(dir, "waybill-agent.service")).CombinedOutput()
	if err != nil || len(out) > 0 { // verify warns about unknown keys but still exits 0
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The check is real: a typo is reported.
	os.WriteFile(filepath.Join(dropins, "typo.conf"), []byte("[Service]\nRestrat=always\n"), 0o644)
	out, _ = exec.Command(tool, "verify", filepath.Join(dir, "waybill-agent.service")).CombinedOutput()
	if !strings.Contains(string(out), "Restrat") {
		t.Fatalf("systemd-analyze verify did not report a typo in a drop-in: %s", out)
	}
}

// TestProcdMatchesUnit: OpenWrt's init script does what the systemd unit does.
func TestProcdMatchesUnit(t *testing.T) {
	raw, err := os.ReadFile("waybill-agent.init")
	if err != nil {
		t.Fatal(err)
	}
	init := string(raw)
	u := unit(t, "waybill-agent.service")
	if !strings.Contains(init, "procd_set_param term_timeout "+u["TimeoutStopSec"][0]+"\n") {
		t.Errorf("term_timeout differs from the unit's TimeoutStopSec=%s", u["TimeoutStopSec"][0])
	}
	if !strings.Contains(init, "procd_set_param respawn 3600 "+u["RestartSec"][0]+" 0\n") {
		t.Errorf("respawn must restart for ever (retries 0), %s s apart like the unit", u["RestartSec"][0])
	}
	p, err := boards.Lookup("openwrt-armv7")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(init, "DATA_DIR="+p.DataDir+"\n") {
		t.Errorf("the init script creates a data directory other than the profile's %s", p.DataDir)
	}
	if !strings.Contains(init, `"$PROG" run --config "$CONFIG"`) || !strings.Contains(init, "CONFIG=/etc/waybill/agent.toml") {
		t.Error("the init script does not run the agent with /etc/waybill/agent.toml")
	}
	if sh, err := exec.LookPath("sh"); err == nil {
		if out, err := exec.Command(sh, "-n", "waybill-agent.init").CombinedOutput(); err != nil {
			t.Errorf("sh -n waybill-agent.init: %v\n%s", err, out)
		}
	}
}

// TestInstallGivesEveryBoardsPins: INSTALL.md's table has each board's receiver, button and LED, as in its
// profile.
func TestInstallGivesEveryBoardsPins(t *testing.T) {
	raw, err := os.ReadFile("INSTALL.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if cells := strings.Split(line, "|"); len(cells) > 2 {
			rows[strings.TrimSpace(cells[1])] = line
		}
	}
	for _, n := range boards.Names() {
		p, _ := boards.Lookup(n)
		row, ok := rows[n]
		if !ok {
			t.Errorf("INSTALL.md has no row for %s", n)
			continue
		}
		cells := strings.Split(row, "|")
		if !strings.HasPrefix(strings.TrimSpace(cells[2]), p.SerialDevice+" ") {
			t.Errorf("%s: receiver %q, profile says %s", n, cells[2], p.SerialDevice)
		}
		for i, l := range []struct {
			chip string
			line int
		}{{p.ButtonChip, p.ButtonLine}, {p.LEDChip, p.LEDLine}} {
			want := "none"
			if l.line >= 0 {
				want = l.chip + " line " + strconv.Itoa(l.line) + " ("
			}
			if !strings.HasPrefix(strings.TrimSpace(cells[3+i]), want) {
				t.Errorf("%s: %q, profile says %s", n, cells[3+i], want)
			}
		}
	}
	for _, want := range []string{"enable_uart=1", "dtoverlay=disable-bt", "cmdline.txt", "console=",
		"install -d -m 0755 -o root -g root /etc/waybill", "install -m 0600 -o root -g root truck-0042.key",
		"crl.pem /etc/waybill/crl.pem", `identity.crl = "/etc/waybill/crl.pem"`, "waybill store inspect",
		"install -m 0755 waybill-agent waybill /usr/local/bin/"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("INSTALL.md lacks %q", want)
		}
	}
}

// TestDist (issue 11.8) builds the tarball for a systemd board with a button and for OpenWrt: the name
// carries the version; it holds waybill-agent and waybill for the board's CPU, the service files, and an
// agent.toml that names the board and passes `waybill-agent check --offline` once the truck's files exist.
func TestDist(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is missing: apt-get install make")
	}
	for _, c := range []struct {
		board string
		files []string
	}{
		{"rpi4", []string{"waybill-agent", "waybill", "agent.toml", "INSTALL.md", "waybill-agent.service",
			"waybill-agent-gpio.conf", "90-waybill-gpio.rules"}},
		{"openwrt-armv7", []string{"waybill-agent", "waybill", "agent.toml", "INSTALL.md", "waybill-agent.init"}},
	} {
		t.Run(c.board, func(t *testing.T) {
			p, err := boards.Lookup(c.board)
			if err != nil {
				t.Fatal(err)
			}
			dist := t.TempDir()
			const version = "v1.2.3-test"
			cmd := exec.Command("make", "-C", "..", "dist", "BOARD="+c.board, "VERSION="+version, "DIST="+dist)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("make dist: %v\n%s", err, out)
			}
			name := "waybill-agent-" + c.board + "-" + version
			files := untar(t, filepath.Join(dist, name+".tar.gz"), t.TempDir())
			var got []string
			for f := range files {
				got = append(got, strings.TrimPrefix(f, name+"/"))
			}
			if len(got) != len(c.files) {
				t.Errorf("tarball holds %v, want %v", got, c.files)
			}
			for _, f := range c.files {
				if _, ok := files[name+"/"+f]; !ok {
					t.Errorf("tarball lacks %s/%s (has %v)", name, f, got)
				}
			}
			for _, bin := range []string{"waybill-agent", "waybill"} {
				checkBinary(t, files[name+"/"+bin], p)
			}
			install, _ := os.ReadFile(files[name+"/INSTALL.md"])
			if strings.Contains(string(install), "BOARD") || !strings.Contains(string(install), name+".tar.gz") {
				t.Errorf("INSTALL.md does not name the board and version: %.200s", install)
			}
			checkDistConfig(t, files[name+"/agent.toml"], c.board)
		})
	}
}

// untar unpacks a .tar.gz into dir and returns the regular files by their name in the archive.
func untar(t *testing.T, path, dir string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("the tarball: %v", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		dst := filepath.Join(dir, filepath.Base(h.Name))
		w, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, os.FileMode(h.Mode))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, tr); err != nil {
			t.Fatal(err)
		}
		w.Close()
		out[h.Name] = dst
	}
}

// checkBinary: a static Linux executable for the board's GOARCH (and GOARM), with the version stamped in.
func checkBinary(t *testing.T, path string, p boards.Profile) {
	t.Helper()
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
	defer ef.Close()
	machine := map[string]elf.Machine{"arm": elf.EM_ARM, "arm64": elf.EM_AARCH64, "amd64": elf.EM_X86_64}[p.GOARCH]
	if ef.Machine != machine {
		t.Errorf("%s is for %v, want %v", filepath.Base(path), ef.Machine, machine)
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["GOARCH"] != p.GOARCH || settings["CGO_ENABLED"] != "0" ||
		(p.GOARM != 0 && !strings.HasPrefix(settings["GOARM"], strconv.Itoa(p.GOARM))) {
		t.Errorf("%s built with %v, want GOARCH %s GOARM %d CGO_ENABLED 0", filepath.Base(path), settings, p.GOARCH, p.GOARM)
	}
	// -trimpath keeps -ldflags out of the build info: look for the stamped string itself.
	if raw, err := os.ReadFile(path); err != nil || !strings.Contains(string(raw), "v1.2.3-test") {
		t.Errorf("%s: version v1.2.3-test not stamped (%v)", filepath.Base(path), err)
	}
}

// checkDistConfig loads the tarball's agent.toml as `waybill-agent check` does, with the truck's files
// (issued by a throw-away PKI) in place of /etc/waybill, and runs the offline checks.
func checkDistConfig(t *testing.T, path, board string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^board = "` + regexp.QuoteMeta(board) + `"$`).Match(raw) {
		t.Errorf("agent.toml does not name the board %s", board)
	}
	dir := t.TempDir()
	ca, err := pki.Init(pki.Config{Dir: filepath.Join(dir, "pki")}, pki.CAOptions{Fleet: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Issue(pki.RoleTruck, "truck-0042", pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"WAYBILL_CERT_FILE": ca.CertPath("truck-0042"), "WAYBILL_KEY_FILE": ca.KeyPath("truck-0042"),
		"WAYBILL_CA_FILE": ca.CAPath(), "WAYBILL_CRL_FILE": ca.CRLPath(), "WAYBILL_DATA_DIR": filepath.Join(dir, "data")}
	cfg, err := agent.LoadConfig(path, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the shipped agent.toml: %v", err)
	}
	for _, r := range agent.Check(context.Background(), cfg, agent.CheckOptions{Offline: true}) {
		if r.Severity == agent.Fail {
			t.Errorf("check --offline of the shipped agent.toml: %s: %s (%s)", r.Name, r.Detail, r.Fix)
		}
	}
}
