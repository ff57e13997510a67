package brokerconf

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// fileOwner is a file's owner, group and permission bits.
type fileOwner struct {
	uid, gid int
	mode     fs.FileMode
}

func (o fileOwner) String() string { return fmt.Sprintf("%d:%d %04o", o.uid, o.gid, o.mode) }

func ownerOfPath(t *testing.T, path string) fileOwner {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fileOwner{int(st.Uid), int(st.Gid), fi.Mode().Perm()}
}

// TestWriteKeepsOwners: `waybill broker config` run again (after a revoke or `pki crl`) into the directory
// Mosquitto runs from gives every file it replaces the owner, group and mode of the one before, and a new
// file or directory the owner and group of its directory. It wrote them root:root 0600 and Mosquitto,
// running as "mosquitto", could no longer read its key at the next SIGHUP. The access file, Mosquitto's
// own at run time, is left as it is.
func TestWriteKeepsOwners(t *testing.T) {
	p, err := pki.Init(pki.Config{Dir: filepath.Join(t.TempDir(), "pki")}, pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"truck-a", "truck-b"} {
		if _, err := p.Issue(pki.RoleTruck, n, pki.IssueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Issue(pki.RoleBroker, "mqtt", pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "broker")
	first, err := Write(p, out, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if first.DynsecKept || first.Replaced {
		t.Errorf("a new directory: %+v", first)
	}
	// As `chown -R mosquitto: OUT` would, to an owner and group that are not ours (root may give any;
	// anyone else keeps its own uid and checks the modes only).
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 4242, 4343
	}
	if err := filepath.WalkDir(out, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	}); err != nil {
		t.Fatal(err)
	}
	// Modes an operator chose: a group-readable key (root:mosquitto 0640 is a common setup), a private
	// configuration, a closed certs/ directory.
	chmod := map[string]fs.FileMode{
		filepath.Join(CertsDir, BrokerKey): 0o640, filepath.Join(CertsDir, CAFileName): 0o600,
		ConfFile: 0o600, CertsDir: 0o700,
	}
	for rel, m := range chmod {
		if err := os.Chmod(filepath.Join(out, rel), m); err != nil {
			t.Fatal(err)
		}
	}
	// What Mosquitto saved after `pki issue --broker` told it something: not the PKI's rendering.
	live := []byte(strings.Replace(string(readFile(t, first.DynsecPath)), `"clients"`, `"clients" `, 1))
	if err := os.WriteFile(first.DynsecPath, live, 0o600); err != nil {
		t.Fatal(err)
	}
	// Gone since: a file (it comes back in its directory's hands) and a directory (likewise).
	if err := os.Remove(filepath.Join(out, CertsDir, CRLFileName)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(out, SystemdDir)); err != nil {
		t.Fatal(err)
	}
	before := map[string]fileOwner{}
	for _, rel := range []string{".", ConfFile, CertsDir, filepath.Join(CertsDir, BrokerKey), filepath.Join(CertsDir, BrokerCert),
		filepath.Join(CertsDir, CAFileName), AccessDir, filepath.Join(AccessDir, DynsecFile), DataDir} {
		before[rel] = ownerOfPath(t, filepath.Join(out, rel))
	}

	if _, err := p.Revoke("truck-b"); err != nil {
		t.Fatal(err)
	}
	res, err := Write(p, out, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.DynsecKept || !res.Replaced {
		t.Errorf("rewrite: %+v", res)
	}
	for rel, want := range before {
		if got := ownerOfPath(t, filepath.Join(out, rel)); got != want {
			t.Errorf("%s: owner, group and mode %v, want %v as before", rel, got, want)
		}
	}
	for rel, mode := range map[string]fs.FileMode{filepath.Join(CertsDir, CRLFileName): 0o644, SystemdDir: 0o755,
		filepath.Join(SystemdDir, filepath.Dir(DropInFile)): 0o755, filepath.Join(SystemdDir, DropInFile): 0o644} {
		if got, want := ownerOfPath(t, filepath.Join(out, rel)), (fileOwner{uid, gid, mode}); got != want {
			t.Errorf("new %s: %v, want its directory's owner and group %v", rel, got, want)
		}
	}
	crl, err := pki.LoadCRL(filepath.Join(out, CertsDir, CRLFileName))
	if err != nil || len(crl.RevokedCertificateEntries) != 1 {
		t.Errorf("the CRL copy is not the new one: %v", err)
	}
	if got := readFile(t, res.DynsecPath); !bytes.Equal(got, live) {
		t.Errorf("the access file Mosquitto keeps was rewritten:\n%s", got)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(out, "*", ".*")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	// --reset-access: rewritten from the PKI (truck-b is gone), in the old file's hands.
	wantAccess := ownerOfPath(t, res.DynsecPath)
	res, err = Write(p, out, Config{ResetAccess: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(readFile(t, res.DynsecPath)); res.DynsecKept || strings.Contains(got, "truck-b") || !strings.Contains(got, "truck-a") {
		t.Errorf("reset access: kept %v\n%s", res.DynsecKept, got)
	}
	if got := ownerOfPath(t, res.DynsecPath); got != wantAccess {
		t.Errorf("reset access file: %v, want %v", got, wantAccess)
	}
}

// TestWriteChownHint: the chown the commands print is there only when something in the directory is not
// the user's Mosquitto runs as.
func TestWriteChownHint(t *testing.T) {
	p, err := pki.Init(pki.Config{Dir: filepath.Join(t.TempDir(), "pki")}, pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Issue(pki.RoleBroker, "mqtt", pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "broker")
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{User: "root"}, ""},               // Mosquitto stays root
		{Config{User: me.Username}, ""},          // everything is ours already
		{Config{}, "chown -R mosquitto: " + out}, // Mosquitto's default user
		{Config{User: "nobody"}, "chown -R nobody: " + out},
		{Config{InstallDir: "/etc/waybill/broker"}, "chown -R mosquitto: /etc/waybill/broker"}, // copied to the broker host: always
	}
	for _, tc := range cases {
		res, err := Write(p, out, tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Chown != tc.want {
			t.Errorf("user %q install dir %q: chown %q, want %q", tc.cfg.User, tc.cfg.InstallDir, res.Chown, tc.want)
		}
	}
	if u, err := user.Lookup("mosquitto"); err == nil && os.Getuid() == 0 {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := filepath.WalkDir(out, func(path string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, uid, gid)
		}); err != nil {
			t.Fatal(err)
		}
		if res, err := Write(p, out, Config{}); err != nil || res.Chown != "" {
			t.Errorf("a directory that is Mosquitto's already: chown %q (%v)", res.Chown, err)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
