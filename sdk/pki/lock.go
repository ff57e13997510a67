package pki

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// LockFile, in the PKI directory, is the advisory lock (flock) every change to index.json and crl.pem
// holds: they are read, changed and written whole, so two writers at once lost each other's entries, and
// a lost revocation dropped out of the next CRL. The holder writes its pid and command line into it, so a
// writer that gives up can say who holds it (the approach of waybill's DATA/sender.lock).
const LockFile = "index.lock"

// DefaultLockTimeout is how long a writer waits for the lock when Config.LockTimeout is zero: a batch of
// issueChunk certificates holds it about a second.
const DefaultLockTimeout = 30 * time.Second

// ErrLocked is wrapped by the error of a writer that waited Config.LockTimeout for the lock in vain.
var ErrLocked = errors.New("pki: the PKI directory is locked by another writer")

// lock takes LockFile, waiting at most Config.LockTimeout, and returns its release. The lock belongs to
// the open file, so goroutines of one process exclude each other as processes do.
func (p *PKI) lock() (unlock func(), err error) {
	path := filepath.Join(p.cfg.Dir, LockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pki: lock: %w", err)
	}
	timeout := p.cfg.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("pki: lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			holder := "another process"
			b, _ := io.ReadAll(io.LimitReader(f, 300))
			if s := strings.TrimSpace(string(b)); s != "" {
				holder = s
			}
			f.Close()
			return nil, fmt.Errorf("%w: %s holds %s (waited %s); try again when it is done", ErrLocked, holder, path, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if f.Truncate(0) == nil {
		_, _ = f.WriteAt([]byte(holderLine()), 0)
	}
	return func() {
		_ = f.Truncate(0)
		f.Close() // closing releases the lock
	}, nil
}

// holderLine describes this process for LockFile: "pid 123: waybill pki issue --role truck truck-7".
func holderLine() string {
	cmd := filepath.Base(os.Args[0]) + " " + strings.Join(os.Args[1:], " ")
	if len(cmd) > 200 {
		cmd = cmd[:200] + "..."
	}
	return fmt.Sprintf("pid %d: %s\n", os.Getpid(), strings.TrimSpace(cmd))
}
