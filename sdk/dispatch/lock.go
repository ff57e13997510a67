package dispatch

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// lockPath takes an exclusive lock on path (created if needed), waiting at most timeout (zero: 5 s), and
// returns its release. Opens of a shared outbox take it around the store's own: store.Open moves a
// zero-length file aside as damaged, and a file another process is just creating is zero-length for a moment.
func lockPath(path string, timeout time.Duration) (func(), error) {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s (waited %v): %w", path, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
