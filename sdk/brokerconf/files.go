package brokerconf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// DefaultUser is the account Mosquitto drops to after starting as root when its configuration names none.
const DefaultUser = "mosquitto"

// holder is who a file or directory belongs to, and its mode.
type holder struct {
	uid, gid int
	mode     fs.FileMode // permissions, setuid, setgid and sticky bits
}

func holderOf(fi fs.FileInfo) holder {
	st := fi.Sys().(*syscall.Stat_t)
	return holder{int(st.Uid), int(st.Gid), fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)}
}

// replacing returns what path's new version gets: the owner, group and mode of the file it replaces, or
// for a new file perm and the owner and group of its directory. Write runs as root and Mosquitto as the
// user "mosquitto": a file that changed hands on the way locked Mosquitto out of its own key at the next
// SIGHUP (and the plugin out of its access file), so nothing may change hands.
func replacing(path string, perm fs.FileMode) (holder, error) {
	fi, err := os.Stat(path)
	if err == nil {
		return holderOf(fi), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return holder{}, err
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return holder{}, err
	}
	h := holderOf(di)
	h.mode = perm
	return h, nil
}

// writeFile replaces path atomically: a temporary file in the same directory, given the owner, group and
// mode of replacing(path, perm), synced, then renamed over path, and the directory synced.
func writeFile(path string, data []byte, perm fs.FileMode) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("brokerconf: %w", err)
		}
	}()
	h, err := replacing(path, perm)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*") // 0600 until chmod
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chown(h.uid, h.gid); err != nil {
		return fmt.Errorf("%s belongs to uid %d gid %d, and this user cannot give its new version the same (run as root): %w",
			path, h.uid, h.gid, err)
	}
	if err := f.Chmod(h.mode); err != nil { // after the chown, which may clear setuid and setgid
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// ensureDir creates the directory path with perm and the owner and group of its parent, and leaves one
// that exists as it is.
func ensureDir(path string, perm fs.FileMode) error {
	err := os.Mkdir(path, perm)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("brokerconf: %w", err)
	}
	parent, err := os.Stat(filepath.Dir(path))
	if err == nil {
		h := holderOf(parent)
		err = os.Lchown(path, h.uid, h.gid)
	}
	if err == nil {
		err = os.Chmod(path, perm) // Mkdir applied the umask
	}
	if err != nil {
		return fmt.Errorf("brokerconf: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// chownCommand returns the `chown -R USER: DIR` the broker directory needs before Mosquitto, running as
// cfg.User (default DefaultUser), can read its certificates and write its access file and persistence;
// "" when Mosquitto stays root or everything in outDir is that user's already. When cfg.InstallDir is
// elsewhere (the files are copied to the broker host) or the user is unknown here, it is always needed.
func chownCommand(outDir string, cfg Config) string {
	name := cfg.User
	if name == "" {
		name = DefaultUser
	}
	if name == "root" {
		return ""
	}
	cmd := fmt.Sprintf("chown -R %s: %s", name, cfg.InstallDir)
	u, err := user.Lookup(name)
	if err != nil || cfg.InstallDir != outDir {
		return cmd
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return cmd
	}
	theirs := true
	_ = filepath.WalkDir(outDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil {
			var fi fs.FileInfo
			if fi, err = d.Info(); err == nil && holderOf(fi).uid == uid {
				return nil
			}
		}
		theirs = false
		return filepath.SkipAll
	})
	if theirs {
		return ""
	}
	return cmd
}
