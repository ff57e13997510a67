package vm

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Guest paths and addresses. The guest is QEMU's user network, restricted: it is 10.0.2.15, and it reaches
// only the host ports that Config.Forwards lists, at GuestRelay.
const (
	GuestHost     = "10.0.2.2"   // the gateway (QEMU); with restrict=on it forwards nothing
	GuestRelay    = "10.0.2.100" // Config.Forwards' address: the broker, as the guest sees it
	GuestMount    = "/truck"     // the ext4 disk (/dev/vda)
	GuestConfig   = "/truck/etc/agent.toml"
	GuestDataDir  = "/truck/data"
	GuestHTTPPort = 8080
)

// initScript is the truck's /init: busybox mounts the pseudo file systems, loads the modules in order,
// mounts the disk, brings up the network and runs the agent with its output on hvc0. The kernel log is on
// hvc0 too (console=hvc0), so the PL011 (ttyAMA0) carries only NMEA.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
for m in $(cat /modules.list); do insmod /lib/modules/$m || echo "waybill-vm: insmod $m failed"; done
i=0; while [ ! -e /dev/hvc0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
exec >/dev/hvc0 2>&1 </dev/null
echo "waybill-vm: modules loaded, clock $(date -u +%Y-%m-%dT%H:%M:%SZ)"
# The host's shell (Machine.Exec): busybox sh on the virtio serial port named waybill.shell. A read
# returns end of file while the host has no connection: the loop starts it again. A port opens once.
i=0; while [ -z "$shell" ] && [ $i -lt 30 ]; do
	for p in /sys/class/virtio-ports/*; do [ "$(cat $p/name 2>/dev/null)" = waybill.shell ] && shell=/dev/${p##*/}; done
	[ -n "$shell" ] || sleep 0.1; i=$((i+1))
done
if [ -n "$shell" ]; then (while :; do sh <>$shell >&0 2>&0; sleep 0.5; done) & else echo "waybill-vm: no shell port"; fi
# A kernel with gpio-keys built in (armmp) takes the virt board's power-button line (PL061 line 3) from
# the device tree: unbind it, so the line is the agent's, as under the arm64 kernel (a module, not loaded).
for d in /sys/bus/platform/drivers/gpio-keys/*keys*; do
	[ -e "$d" ] && echo "${d##*/}" >/sys/bus/platform/drivers/gpio-keys/unbind && echo "waybill-vm: gpio-keys unbound from ${d##*/}"
done
i=0; while [ ! -e /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
mkdir -p /truck
mount -t ext4 -o rw /dev/vda /truck || { echo "waybill-vm: mount /dev/vda failed"; sleep 2; poweroff -f; }
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
ip route add default via 10.0.2.2
echo "waybill-vm: agent starting"
/waybill-agent run --config /truck/etc/agent.toml &
agent=$!
echo $agent >/tmp/agent.pid
echo "waybill-vm: agent pid $agent"
wait $agent
echo "waybill-vm: agent exited with $?"
sync
umount /truck
poweroff -f
`

// BuildAgent cross-compiles the static waybill-agent for arch from the module at repo into out.
func BuildAgent(ctx context.Context, repo, out string, arch Arch) error {
	arch = arch.orDefault()
	cmd := exec.CommandContext(ctx, filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-trimpath", "-o", out, "./cmd/waybill-agent")
	cmd.Dir = repo
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux"), arch.goEnv()...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("vm: build waybill-agent for %s: %w\n%s", arch, err, b)
	}
	return nil
}

// WriteInitramfs writes the truck's initramfs (an uncompressed newc cpio archive, which the kernel takes
// as it is) to path: busybox, /init, the modules of a and the agent binary.
func WriteInitramfs(path string, a Assets, agent string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := &cpioWriter{w: bufio.NewWriterSize(f, 1<<20)}
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "etc", "truck", "lib", "lib/modules"} {
		w.dir(d)
	}
	w.node("dev/console", 0o020600, 5, 1)
	w.fileFrom("bin/busybox", a.Busybox, 0o755)
	w.fileFrom("waybill-agent", agent, 0o755)
	w.file("init", []byte(initScript), 0o755)
	var list []string
	for i, m := range a.Modules {
		name := fmt.Sprintf("%02d-%s", i, filepath.Base(m))
		w.fileFrom("lib/modules/"+name, m, 0o644)
		list = append(list, name)
	}
	w.file("modules.list", []byte(strings.Join(list, "\n")+"\n"), 0o644)
	w.file("etc/hosts", []byte("127.0.0.1 localhost\n"+GuestHost+" gateway\n"+GuestRelay+" relay\n"), 0o644)
	w.trailer()
	if w.err == nil {
		w.err = w.w.Flush()
	}
	if cerr := f.Close(); w.err == nil {
		w.err = cerr
	}
	return w.err
}

// cpioWriter writes the "newc" format (cpio -H newc): a 110-byte ASCII header, the name, the data, each
// padded to 4 bytes.
type cpioWriter struct {
	w   *bufio.Writer
	ino int
	err error
}

func (c *cpioWriter) header(name string, mode uint32, size int, major, minor int) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, major, minor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write([]byte(name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) dir(name string) { c.header(name, 0o040755, 0, 0, 0) }

func (c *cpioWriter) node(name string, mode uint32, major, minor int) {
	c.header(name, mode, 0, major, minor)
}

func (c *cpioWriter) file(name string, data []byte, perm uint32) {
	c.header(name, 0o100000|perm, len(data), 0, 0)
	c.write(data)
	c.pad(len(data))
}

func (c *cpioWriter) fileFrom(name, src string, perm uint32) {
	if c.err != nil {
		return
	}
	f, err := os.Open(src)
	if err != nil {
		c.err = err
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		c.err = err
		return
	}
	c.header(name, 0o100000|perm, int(st.Size()), 0, 0)
	if c.err == nil {
		var n int64
		n, c.err = io.Copy(c.w, f)
		if c.err == nil && n != st.Size() {
			c.err = fmt.Errorf("vm: %s changed while archived", src)
		}
	}
	c.pad(int(st.Size()))
}

func (c *cpioWriter) trailer() { c.header("TRAILER!!!", 0, 0, 0, 0) }
