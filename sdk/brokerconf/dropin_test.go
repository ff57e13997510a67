package brokerconf

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// debianUnit is the unit file of Debian's mosquitto package, which the drop-in extends.
const debianUnit = "/lib/systemd/system/mosquitto.service"

// TestDropInVerifies: Debian's mosquitto.service with the generated drop-in passes `systemd-analyze
// verify` without a word about the drop-in, and the drop-in starts this configuration (not the stock
// /etc/mosquitto/mosquitto.conf) with the file limit.
func TestDropInVerifies(t *testing.T) {
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is missing: apt-get install systemd")
	}
	unit, err := os.ReadFile(debianUnit)
	if err != nil {
		t.Fatalf("Debian's Mosquitto unit: %v: apt-get install mosquitto", err)
	}
	p, err := pki.Init(pki.Config{Dir: filepath.Join(t.TempDir(), "pki")}, pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Issue(pki.RoleBroker, "mqtt", pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := Write(p, filepath.Join(t.TempDir(), "broker"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	units := t.TempDir()
	dropIn, err := os.ReadFile(res.DropInPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(units, "mosquitto.service"), unit, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(units, "mosquitto.service.d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(DropInFile)), dropIn, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tool, "verify", filepath.Join(units, "mosquitto.service"))
	cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+units+":")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), filepath.Base(DropInFile)) {
		t.Fatalf("systemd-analyze verify: %v\n%s\n--- drop-in:\n%s", err, out, dropIn)
	}
	if want := "ExecStart=\nExecStart=" + MosquittoBinary + " -c " + res.ConfPath + "\n"; !strings.Contains(string(dropIn), want) {
		t.Errorf("the drop-in does not start this configuration:\n%s", dropIn)
	}
}
