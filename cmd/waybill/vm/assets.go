package vm

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Arch is the truck's processor generation: a Debian architecture, its kernel flavour, the QEMU that
// boots it on the virt board and the Go target of the agent.
type Arch string

const (
	// ARM64 is the 64-bit unit (Cortex-A53/A72 class): Debian's arm64 kernel, qemu-system-aarch64,
	// cortex-a53, GOARCH=arm64.
	ARM64 Arch = "arm64"
	// ARMv7 is the 32-bit unit (Cortex-A7/A15 class: a Pi Zero 2 or a BeagleBone on a 32-bit system):
	// Debian's armhf armmp kernel (no LPAE), qemu-system-arm, cortex-a15, GOARCH=arm GOARM=7.
	ARMv7 Arch = "armhf"
)

// KernelPackage is the Debian metapackage whose dependency names the kernel the truck boots.
func (a Arch) KernelPackage() string {
	if a == ARMv7 {
		return "linux-image-armmp"
	}
	return "linux-image-arm64"
}

// QEMU is the system emulator that boots the architecture.
func (a Arch) QEMU() string {
	if a == ARMv7 {
		return "qemu-system-arm"
	}
	return "qemu-system-aarch64"
}

// qemuArgs are the machine and CPU. A kernel without LPAE sees only the low 4 GB: highmem=off keeps
// every device there.
func (a Arch) qemuArgs() []string {
	if a == ARMv7 {
		return []string{"-machine", "virt,acpi=off,highmem=off", "-cpu", "cortex-a15"}
	}
	return []string{"-machine", "virt,acpi=off", "-cpu", "cortex-a53"}
}

// goEnv is the agent's Go target.
func (a Arch) goEnv() []string {
	if a == ARMv7 {
		return []string{"GOARCH=arm", "GOARM=7"}
	}
	return []string{"GOARCH=arm64"}
}

// cacheDir is where the architecture's packages are kept under the cache: arm64 at its top, where the
// first version of Fetch put them, the others in a subdirectory.
func (a Arch) cacheDir(dir string) string {
	if a == ARM64 || a == "" {
		return dir
	}
	return filepath.Join(dir, string(a))
}

func (a Arch) orDefault() Arch {
	if a == "" {
		return ARM64
	}
	return a
}

// GuestModules are the kernel modules the truck's initramfs loads (with their dependencies, read from each
// module's .modinfo): the virtio-mmio transport, the disk, the console (hvc0), the network and ext4 with the
// checksum it asks for at mount (crc32c, requested by name, so not in depends=).
var GuestModules = []string{"virtio_mmio", "virtio_blk", "virtio_console", "virtio_net", "crc32c_generic", "ext4"}

// Commands the virtual truck needs on the host, with the Debian package that brings each.
var hostCommands = []struct{ cmd, pkg string }{
	{"qemu-system-aarch64", "qemu-system-arm"},
	{"qemu-system-arm", "qemu-system-arm"},
	{"mkfs.ext4", "e2fsprogs"},
	{"debugfs", "e2fsprogs"},
	{"e2fsck", "e2fsprogs"},
	{"dpkg-deb", "dpkg"},
	{"apt-get", "apt"},
}

// Assets are the fetched and unpacked parts of the truck: a kernel, its modules and busybox.
type Assets struct {
	Arch    Arch
	Dir     string   // the cache directory
	Kernel  string   // vmlinuz
	Release string   // the kernel release, e.g. 6.1.0-57-arm64
	Busybox string   // static busybox
	Modules []string // .ko files in load order (dependencies first)
}

// CacheDir is where Fetch keeps the packages: $WAYBILL_VM_CACHE, else /var/cache/waybill-vm for root,
// else $XDG_CACHE_HOME/waybill-vm (~/.cache/waybill-vm). Never inside the repository.
func CacheDir() (string, error) {
	if d := os.Getenv("WAYBILL_VM_CACHE"); d != "" {
		return d, nil
	}
	if os.Geteuid() == 0 {
		return "/var/cache/waybill-vm", nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "waybill-vm"), nil
}

// ErrMissing: a host tool or package is missing and this process cannot install it (not root). The error
// carries the exact command to run.
var ErrMissing = errors.New("vm: missing")

// Fetch makes sure the host tools are installed and arch's kernel and busybox are downloaded and
// unpacked in dir (arm64) or dir/<arch>, installing what is missing when running as root; otherwise it returns ErrMissing with
// the command to run. It is idempotent: a second call finds everything in place and runs no apt-get.
// logf (may be nil) reports what it does.
func Fetch(ctx context.Context, dir string, arch Arch, logf func(string, ...any)) (Assets, error) {
	arch = arch.orDefault()
	dir = arch.cacheDir(dir)
	if logf == nil {
		logf = func(string, ...any) {}
	}
	root := os.Geteuid() == 0
	var missing []string
	for _, c := range hostCommands {
		if _, err := exec.LookPath(c.cmd); err != nil && !contains(missing, c.pkg) {
			missing = append(missing, c.pkg)
		}
	}
	if len(missing) > 0 {
		cmd := "apt-get install -y --no-install-recommends " + strings.Join(missing, " ")
		if !root {
			return Assets{}, fmt.Errorf("%w: %s; run as root: %s", ErrMissing, strings.Join(missing, ", "), cmd)
		}
		logf("vm: installing %s", strings.Join(missing, " "))
		args := append([]string{"install", "-y", "--no-install-recommends", "-q"}, missing...)
		if err := run(ctx, "", "apt-get", args...); err != nil {
			return Assets{}, fmt.Errorf("vm: %s: %w", cmd, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Assets{}, err
	}
	a := Assets{Arch: arch, Dir: dir}
	unpacked := filepath.Join(dir, "root")
	stamp := filepath.Join(dir, "root.done")
	if _, err := os.Stat(stamp); err != nil {
		debs, err := download(ctx, dir, arch, root, logf)
		if err != nil {
			return Assets{}, err
		}
		tmp := unpacked + ".tmp"
		os.RemoveAll(tmp)
		for _, d := range debs {
			if err := run(ctx, "", "dpkg-deb", "-x", d, tmp); err != nil {
				return Assets{}, fmt.Errorf("vm: unpack %s: %w", d, err)
			}
		}
		os.RemoveAll(unpacked)
		if err := os.Rename(tmp, unpacked); err != nil {
			return Assets{}, err
		}
		if err := os.WriteFile(stamp, []byte(strings.Join(debs, "\n")+"\n"), 0o644); err != nil {
			return Assets{}, err
		}
	}
	kernels, _ := filepath.Glob(filepath.Join(unpacked, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		return Assets{}, fmt.Errorf("vm: %s: want one kernel, found %v (delete %s to fetch again)", unpacked, kernels, stamp)
	}
	a.Kernel = kernels[0]
	a.Release = strings.TrimPrefix(filepath.Base(a.Kernel), "vmlinuz-")
	a.Busybox = filepath.Join(unpacked, "bin", "busybox")
	if _, err := os.Stat(a.Busybox); err != nil {
		return Assets{}, fmt.Errorf("vm: busybox-static:%s not unpacked: %w (delete %s to fetch again)", arch, err, stamp)
	}
	mods, err := ResolveModules(filepath.Join(unpacked, "lib", "modules", a.Release), GuestModules)
	if err != nil {
		return Assets{}, err
	}
	a.Modules = mods
	return a, nil
}

// download returns the .deb files of the kernel and busybox in dir, fetching them with apt-get download.
func download(ctx context.Context, dir string, arch Arch, root bool, logf func(string, ...any)) ([]string, error) {
	find := func() []string {
		var out []string
		for _, p := range []string{"linux-image-[0-9]*_" + string(arch) + ".deb", "busybox-static_*_" + string(arch) + ".deb"} {
			m, _ := filepath.Glob(filepath.Join(dir, p))
			sort.Strings(m)
			if len(m) > 0 {
				out = append(out, m[len(m)-1])
			}
		}
		return out
	}
	if debs := find(); len(debs) == 2 {
		return debs, nil
	}
	kpkg, a := arch.KernelPackage(), string(arch)
	if !root {
		return nil, fmt.Errorf("%w: the %s kernel and busybox in %s; run as root: mkdir -p %s && cd %s && "+
			"dpkg --add-architecture %s && apt-get update && apt-get download busybox-static:%s "+
			"$(apt-cache depends %s:%s | sed -n 's/.*Depends: //p' | head -1)",
			ErrMissing, a, dir, dir, dir, a, a, kpkg, a)
	}
	arches, _ := exec.CommandContext(ctx, "dpkg", "--print-foreign-architectures").Output()
	if !contains(strings.Fields(string(arches)), a) {
		logf("vm: dpkg --add-architecture %s && apt-get update", a)
		if err := run(ctx, "", "dpkg", "--add-architecture", a); err != nil {
			return nil, err
		}
		if err := run(ctx, "", "apt-get", "update", "-q"); err != nil {
			return nil, err
		}
	}
	deps, err := exec.CommandContext(ctx, "apt-cache", "depends", kpkg+":"+a).Output()
	if err != nil || !bytes.Contains(deps, []byte("Depends: linux-image-")) {
		if err := run(ctx, "", "apt-get", "update", "-q"); err != nil {
			return nil, err
		}
		if deps, err = exec.CommandContext(ctx, "apt-cache", "depends", kpkg+":"+a).Output(); err != nil {
			return nil, fmt.Errorf("vm: apt-cache depends %s:%s: %w", kpkg, a, err)
		}
	}
	var image string
	for _, l := range strings.Split(string(deps), "\n") {
		if f := strings.TrimSpace(l); strings.HasPrefix(f, "Depends: linux-image-") {
			image = strings.TrimPrefix(f, "Depends: ")
			break
		}
	}
	if image == "" {
		return nil, fmt.Errorf("vm: %s:%s names no kernel image:\n%s", kpkg, a, deps)
	}
	if !strings.Contains(image, ":") {
		image += ":" + a
	}
	logf("vm: apt-get download %s busybox-static:%s (into %s)", image, a, dir)
	if err := run(ctx, dir, "apt-get", "download", "-q", image, "busybox-static:"+a); err != nil {
		return nil, fmt.Errorf("vm: apt-get download %s busybox-static:%s: %w", image, a, err)
	}
	if debs := find(); len(debs) == 2 {
		return debs, nil
	}
	return nil, fmt.Errorf("vm: apt-get download left no kernel and busybox .deb in %s", dir)
}

// ResolveModules finds each named module under modDir (the kernel's /lib/modules/<release>) and returns it
// with its dependencies, read from the depends= of each module's .modinfo section (the packages ship no
// modules.dep: depmod writes it at install), in load order. Names compare with '-' and '_' alike.
func ResolveModules(modDir string, names []string) ([]string, error) {
	index := map[string]string{}
	err := filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			index[modName(strings.TrimSuffix(d.Name(), ".ko"))] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("vm: modules: %w", err)
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name, from string) error
	visit = func(name, from string) error {
		name = modName(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("vm: module dependency cycle at %s", name)
		case 2:
			return nil
		}
		p, ok := index[name]
		if !ok {
			return fmt.Errorf("vm: module %s (needed by %s) not in %s: a built-in? check the kernel's config", name, from, modDir)
		}
		state[name] = 1
		deps, err := moduleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		if err := visit(n, "the truck"); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func modName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// moduleDepends reads depends= from a module's .modinfo section.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("vm: %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("vm: %s has no .modinfo", path)
	}
	raw, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("vm: %s: %w", path, err)
	}
	for _, kv := range bytes.Split(raw, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

func run(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(out, 2000))
	}
	return nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
