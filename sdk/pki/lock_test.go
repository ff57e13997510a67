package pki

import (
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConcurrentWriters: writers that each open the directory issue, revoke and re-sign the CRL at once.
// The index must hold every certificate and the CRL every revocation: without the lock, read-modify-writes
// of index.json lost entries (6 to 8 of 48 were kept here).
func TestConcurrentWriters(t *testing.T) {
	dir := newTestPKI(t).Dir()
	const writers, each = 8, 6
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() { errs <- write(dir, w, each) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	checkWritten(t, dir, writers, each)
}

// TestConcurrentProcesses is TestConcurrentWriters with processes, as separate `waybill pki` commands
// run: this test binary again, as TestWriterProcess.
func TestConcurrentProcesses(t *testing.T) {
	dir := newTestPKI(t).Dir()
	const writers, each = 4, 6
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			args := []string{os.Args[0], "-test.run=^TestWriterProcess$"}
			if emu := os.Getenv("WAYBILL_TEST_EXEC"); emu != "" { // the tests run under an emulator (make test-arm)
				args = append([]string{emu}, args...)
			}
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Env = append(os.Environ(), "PKI_TEST_WRITER="+dir+","+strconv.Itoa(w)+","+strconv.Itoa(each))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("writer %d: %v\n%s", w, err, out)
			}
		})
	}
	wg.Wait()
	checkWritten(t, dir, writers, each)
}

// TestWriterProcess is one writer of TestConcurrentProcesses; alone it does nothing.
func TestWriterProcess(t *testing.T) {
	env := os.Getenv("PKI_TEST_WRITER")
	if env == "" {
		return
	}
	f := strings.Split(env, ",")
	w, _ := strconv.Atoi(f[1])
	each, _ := strconv.Atoi(f[2])
	if err := write(f[0], w, each); err != nil {
		t.Fatal(err)
	}
}

// write is writer w: it issues truck-W-0 ... truck-W-(each-1), revokes the even ones and re-signs the
// CRL once.
func write(dir string, w, each int) error {
	p, err := Open(Config{Dir: dir})
	if err != nil {
		return err
	}
	for i := range each {
		name := fmt.Sprintf("truck-%d-%d", w, i)
		if _, err := p.Issue(RoleTruck, name, IssueOptions{}); err != nil {
			return err
		}
		if i%2 == 0 {
			if _, err := p.Revoke(name); err != nil {
				return err
			}
		}
		if i == 3 {
			if err := p.RefreshCRL(); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkWritten checks that the index and the CRL hold everything the writers did.
func checkWritten(t *testing.T, dir string, writers, each int) {
	t.Helper()
	p, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := p.List()
	if err != nil {
		t.Fatal(err)
	}
	crl, err := p.CRL()
	if err != nil {
		t.Fatal(err)
	}
	inCRL := map[string]bool{}
	for _, r := range crl.RevokedCertificateEntries {
		inCRL[r.SerialNumber.Text(16)] = true
	}
	got := map[string]Entry{}
	for _, e := range entries {
		got[e.Name] = e
	}
	for w := range writers {
		for i := range each {
			name := fmt.Sprintf("truck-%d-%d", w, i)
			e, ok := got[name]
			switch {
			case !ok:
				t.Errorf("%s is missing from the index", name)
			case i%2 == 0 && !e.Revoked():
				t.Errorf("%s's revocation is missing from the index", name)
			case i%2 == 0 && !inCRL[e.Serial]:
				t.Errorf("%s (serial %s) is revoked but not in the CRL", name, e.Serial)
			case i%2 == 1 && inCRL[e.Serial]:
				t.Errorf("%s is in the CRL but was not revoked", name)
			}
		}
	}
	if len(entries) != writers*each || len(inCRL) != writers*each/2 {
		t.Errorf("index %d entries (want %d), CRL %d serials (want %d)", len(entries), writers*each, len(inCRL), writers*each/2)
	}
	// Every CRL signed got its own number: 1 at Init, one per revocation and refresh.
	if want := big.NewInt(int64(1 + writers*each/2 + writers)); crl.Number.Cmp(want) != 0 {
		t.Errorf("CRL number %v, want %v", crl.Number, want)
	}
}

// TestLockTimeout: a writer that cannot get the lock within Config.LockTimeout gives up with an error
// that names the lock file and the process holding it, and changes nothing.
func TestLockTimeout(t *testing.T) {
	p := newTestPKI(t)
	unlock, err := p.lock()
	if err != nil {
		t.Fatal(err)
	}
	q, err := Open(Config{Dir: p.Dir(), LockTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = q.Issue(RoleTruck, "truck-1", IssueOptions{})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), filepath.Join(p.Dir(), LockFile)) ||
		!strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("issue while locked: %v", err)
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 5*time.Second {
		t.Errorf("gave up after %s, want about 300ms", took)
	}
	if _, err := q.Revoke("truck-1"); !errors.Is(err, ErrLocked) {
		t.Errorf("revoke while locked: %v", err)
	}
	if err := q.RefreshCRL(); !errors.Is(err, ErrLocked) {
		t.Errorf("refresh while locked: %v", err)
	}
	unlock()
	if _, err := q.Issue(RoleTruck, "truck-1", IssueOptions{}); err != nil {
		t.Errorf("issue after the lock was released: %v", err)
	}
	// The lock is released by closing the file: a writer in this process that returned early must not
	// leave it held.
	if _, err := q.Issue(RoleDispatch, "truck-1", IssueOptions{}); !errors.Is(err, ErrRoleConflict) {
		t.Fatal(err)
	}
	if _, err := q.Revoke("truck-1"); err != nil {
		t.Errorf("revoke after a refused issue: %v", err)
	}
}
