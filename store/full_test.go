package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// mountSmallTmpfs mounts a tmpfs of the given size on a temporary directory, so the disk really fills
// (ENOSPC). It needs root; the test fails, loudly, where it cannot mount.
func mountSmallTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("cannot mount a %s tmpfs on %s to test a full disk: %v\n"+
			"this test needs root (CAP_SYS_ADMIN): run `make test` as root", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			out, _ := exec.Command("umount", "-l", dir).CombinedOutput()
			t.Logf("unmount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

func TestFullDiskFailsClearlyAndDamagesNothing(t *testing.T) {
	ctx := context.Background()
	dir := mountSmallTmpfs(t, "256k")
	path := dir + "/queue.db"
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var stored []string
	var appendErr error
	for i := 0; i < 100000; i++ {
		p := fmt.Sprintf("event-%06d-%s", i, strings.Repeat("e", 200))
		if _, appendErr = s.Append(ctx, Entry{Lane: Critical, Data: []byte(p)}); appendErr != nil {
			break
		}
		stored = append(stored, p)
	}
	if appendErr == nil {
		t.Fatal("a 256 KiB filesystem never filled up")
	}
	if !errors.Is(appendErr, ErrFull) || !errors.Is(appendErr, syscall.ENOSPC) || !strings.Contains(appendErr.Error(), "disk full") {
		t.Fatalf("full disk error is not clear: %v", appendErr)
	}
	t.Logf("after %d records: %v", len(stored), appendErr)

	// The store keeps working for reads, and acking frees room for new records.
	recs, err := s.Peek(ctx, 10)
	if err != nil || len(recs) != 10 {
		t.Fatalf("peek on a full disk: %d records, %v", len(recs), err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close on a full disk: %v", err)
	}

	// Nothing already stored was damaged.
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen after the disk filled: %v", err)
	}
	defer s.Close()
	all, err := s.Peek(ctx, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !equal(data(all), stored) {
		t.Fatalf("after a full disk: %d records, want the %d stored before", len(all), len(stored))
	}
	if st := s.Stats(); st.Quarantined != 0 || st.Recovered != 0 {
		t.Fatalf("full disk damaged the file: %+v", st)
	}
	if fi, err := os.Stat(path); err == nil {
		t.Logf("file %d bytes on a 256 KiB filesystem", fi.Size())
	}
}
