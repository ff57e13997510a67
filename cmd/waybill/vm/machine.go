package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config is one boot of the virtual truck.
type Config struct {
	Arch   Arch   // zero: ARM64 (Assets.Arch)
	Kernel string // vmlinuz (Assets.Kernel)
	Initrd string // WriteInitramfs's output
	Disk   string // the ext4 image (MakeDisk), on /dev/vda
	// Cache is QEMU's cache mode for the disk. Zero: "none" (O_DIRECT: a guest flush reaches the host's
	// disk). "writeback" keeps QEMU's writes in the host's page cache until the guest flushes.
	Cache string
	// Dir holds the sockets and logs of this boot (unix socket paths are limited to 107 bytes: keep it short).
	Dir string
	// MemoryMB zero: 256.
	MemoryMB int
	// HTTPPort is the host port (on 127.0.0.1 only) forwarded to the guest's port 8080. Zero: none.
	HTTPPort int
	// Forwards are the only connections the guest can open: guest port on GuestRelay -> host address
	// (e.g. 8883 -> the broker's 127.0.0.1:port). The user network is restricted (restrict=on), so the
	// guest reaches nothing else, neither the host nor beyond it. Zero: no connection out at all.
	Forwards map[int]string
	// Relay is the command QEMU runs for each forwarded connection, the connection on its stdin and
	// stdout and the host address appended as its last argument: a program that calls Relay (the test
	// binary re-executed; see vm's TestMain). Required with Forwards.
	Relay []string
	// RTCBase is the board's clock at power-on (-rtc base=). Zero: "2001-01-01", 25 years wrong.
	RTCBase string
	// Trace lists QEMU trace events written to the QEMU log (e.g. "pl061_set_output").
	Trace []string
	// Append is added to the kernel command line.
	Append string
}

// Machine is a running qemu-system-aarch64 or qemu-system-arm (virt board, TCG): the PL011 UART on a unix socket (GPS), the
// human monitor on another, the virtio console (kernel log and agent output) in a file.
type Machine struct {
	cfg     Config
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the QEMU process has been waited for
	gpsSock string
	monSock string
	shSock  string
	console string
	qemuLog string

	mu      sync.Mutex // guards waitErr
	waitErr error

	// Grab shMu before accessing the fields below: one Exec at a time on the guest's shell.
	shMu   sync.Mutex
	sh     net.Conn // nil until the first Exec, and after a failed one
	shR    *bufio.Reader
	shNext int
}

// Start boots the machine. The process belongs to the Machine: Kill (or ctx's end) ends it, and Kill
// always waits for it.
func Start(ctx context.Context, cfg Config) (*Machine, error) {
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 256
	}
	if cfg.RTCBase == "" {
		cfg.RTCBase = "2001-01-01"
	}
	if cfg.Cache == "" {
		cfg.Cache = "none"
	}
	cfg.Arch = cfg.Arch.orDefault()
	m := &Machine{cfg: cfg, exited: make(chan struct{}), gpsSock: filepath.Join(cfg.Dir, "gps.sock"),
		monSock: filepath.Join(cfg.Dir, "mon.sock"), shSock: filepath.Join(cfg.Dir, "sh.sock"), console: filepath.Join(cfg.Dir, "console.log"),
		qemuLog: filepath.Join(cfg.Dir, "qemu.log")}
	if len(m.gpsSock) > 100 {
		return nil, fmt.Errorf("vm: %s: too long for a unix socket", m.gpsSock)
	}
	os.Remove(m.gpsSock)
	os.Remove(m.monSock)
	os.Remove(m.shSock)
	netdev := "user,id=net0,restrict=on"
	if cfg.HTTPPort != 0 {
		netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", cfg.HTTPPort, GuestHTTPPort)
	}
	if len(cfg.Forwards) > 0 && len(cfg.Relay) == 0 {
		return nil, errors.New("vm: Config.Forwards needs Config.Relay")
	}
	for _, port := range slices.Sorted(maps.Keys(cfg.Forwards)) {
		// libslirp splits the command as a shell would and runs it once per connection.
		argv := append(slices.Clone(cfg.Relay), cfg.Forwards[port])
		for i, a := range argv {
			if strings.ContainsAny(a, ",'") {
				return nil, fmt.Errorf("vm: relay argument %q: a comma or quote cannot pass QEMU's option syntax", a)
			}
			argv[i] = "'" + a + "'"
		}
		netdev += fmt.Sprintf(",guestfwd=tcp:%s:%d-cmd:%s", GuestRelay, port, strings.Join(argv, " "))
	}
	args := append(cfg.Arch.qemuArgs(), "-smp", "1", "-m", strconv.Itoa(cfg.MemoryMB),
		"-accel", "tcg", "-nodefaults", "-display", "none", "-no-reboot",
		"-rtc", "base="+cfg.RTCBase+",clock=host",
		"-kernel", cfg.Kernel, "-initrd", cfg.Initrd,
		"-append", strings.TrimSpace("console=hvc0 rdinit=/init panic=-1 loglevel=6 "+cfg.Append),
		"-chardev", "socket,id=gps,path="+m.gpsSock+",server=on,wait=off",
		"-serial", "chardev:gps",
		"-chardev", "file,id=con,path="+m.console,
		"-chardev", "socket,id=sh,path="+m.shSock+",server=on,wait=off",
		"-device", "virtio-serial-device", "-device", "virtconsole,chardev=con",
		"-device", "virtserialport,chardev=sh,name="+shellPort,
		"-drive", "file="+cfg.Disk+",format=raw,if=none,id=disk,cache="+cfg.Cache,
		"-device", "virtio-blk-device,drive=disk",
		"-netdev", netdev, "-device", "virtio-net-device,netdev=net0",
		"-monitor", "unix:"+m.monSock+",server=on,wait=off",
	)
	for _, ev := range cfg.Trace {
		args = append(args, "-trace", ev)
	}
	logf, err := os.Create(m.qemuLog)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	m.cmd = exec.CommandContext(ctx, cfg.Arch.QEMU(), args...)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	m.cmd.Cancel = func() error { return m.cmd.Process.Signal(syscall.SIGKILL) }
	m.cmd.SysProcAttr = procAttr() // QEMU dies with the test binary, even when it panics at its timeout
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("vm: start %s: %w", cfg.Arch.QEMU(), err)
	}
	go func() { // owned: Kill waits on exited
		err := m.cmd.Wait()
		m.mu.Lock()
		m.waitErr = err
		m.mu.Unlock()
		close(m.exited)
	}()
	return m, nil
}

// Kill cuts the power: SIGKILL to QEMU, and waits until it is gone. Safe to call more than once.
func (m *Machine) Kill() {
	select {
	case <-m.exited:
		return
	default:
	}
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
	m.shMu.Lock()
	if m.sh != nil {
		m.sh.Close()
		m.sh = nil
	}
	m.shMu.Unlock()
}

// Exited is closed when QEMU has ended (power cut, poweroff or a crash).
func (m *Machine) Exited() <-chan struct{} { return m.exited }

// ExitErr is how QEMU ended, once Exited is closed.
func (m *Machine) ExitErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.waitErr
}

// Console returns what the guest wrote on hvc0 so far (kernel log and agent output).
func (m *Machine) Console() string {
	b, _ := os.ReadFile(m.console)
	return string(b)
}

// QEMULog returns QEMU's own output (errors and trace events).
func (m *Machine) QEMULog() string {
	b, _ := os.ReadFile(m.qemuLog)
	return string(b)
}

// dialUnix connects to one of QEMU's sockets, retrying until QEMU listens or ctx ends.
func (m *Machine) dialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("vm: %s: %w (last: %v)", path, ctx.Err(), err)
		case <-m.exited:
			return nil, fmt.Errorf("vm: QEMU exited: %v\n%s", m.ExitErr(), m.QEMULog())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// DialUART connects to the PL011 (the guest's /dev/ttyAMA0): what is written is received by the guest.
// The caller closes it; the UART may be closed and dialled again, as a receiver unplugged and plugged in.
func (m *Machine) DialUART(ctx context.Context) (net.Conn, error) { return m.dialUnix(ctx, m.gpsSock) }

// Monitor sends one command to QEMU's human monitor and returns its answer.
func (m *Machine) Monitor(ctx context.Context, command string) (string, error) {
	return m.monitor(ctx, command, 1, 0)
}

// monitor sends command n times on one monitor connection, every gap (from one send to the next), and
// returns the last answer. One connection, so that the spacing is the gap and not a connect per command.
func (m *Machine) monitor(ctx context.Context, command string, n int, gap time.Duration) (string, error) {
	c, err := m.dialUnix(ctx, m.monSock)
	if err != nil {
		return "", err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	r := bufio.NewReader(c)
	readPrompt := func() (string, error) {
		var b strings.Builder
		for {
			s, err := r.ReadString(' ')
			b.WriteString(s)
			if strings.HasSuffix(b.String(), "(qemu) ") {
				return b.String(), nil
			}
			if err != nil {
				return b.String(), err
			}
		}
	}
	if _, err := readPrompt(); err != nil {
		return "", fmt.Errorf("vm: monitor: %w", err)
	}
	var out string
	next := time.Now()
	for i := range n {
		if i > 0 {
			next = next.Add(gap)
			time.Sleep(time.Until(next))
		}
		if _, err := fmt.Fprintf(c, "%s\n", command); err != nil {
			return "", fmt.Errorf("vm: monitor: %w", err)
		}
		out, err = readPrompt()
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return out, fmt.Errorf("vm: monitor %q: %w", command, err)
		}
	}
	return out, nil
}

// shellPort names the virtio serial port on which the guest's /init keeps a busybox sh for Exec. It is
// not a tty: no echo, no prompt, no line discipline.
const shellPort = "waybill.shell"

// Exec runs script with busybox sh in the guest, as root, and returns what it wrote (stdout and stderr)
// and its exit status. The shell is /init's, on a virtio serial port (a unix socket on the host): it
// works from shortly after the modules are loaded until the power goes, whatever the agent does. Calls
// are serialised. A script that never ends blocks the shell until ctx ends; then the next Exec fails
// until the guest's /init restarts its shell.
func (m *Machine) Exec(ctx context.Context, script string) (string, int, error) {
	m.shMu.Lock()
	defer m.shMu.Unlock()
	if m.sh == nil {
		c, err := m.dialUnix(ctx, m.shSock)
		if err != nil {
			return "", -1, err
		}
		m.sh, m.shR = c, bufio.NewReader(c)
	}
	c := m.sh
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	fail := func(err error) (string, int, error) {
		c.Close()
		m.sh = nil
		return "", -1, fmt.Errorf("vm: exec in the guest: %w", err)
	}
	m.shNext++
	mark := fmt.Sprintf("__waybill_exec_%d", m.shNext)
	quoted := "'" + strings.ReplaceAll(script, "'", `'\''`) + "'"
	if _, err := fmt.Fprintf(c, "sh -c %s 2>&1 </dev/null; printf '\\n%s %%d\\n' $?\n", quoted, mark); err != nil {
		return fail(err)
	}
	var out strings.Builder
	for {
		line, err := m.shR.ReadString('\n')
		if rest, ok := strings.CutPrefix(line, mark+" "); ok {
			code, err := strconv.Atoi(strings.TrimSpace(rest))
			if err != nil {
				return fail(fmt.Errorf("bad status line %q", line))
			}
			return strings.TrimSuffix(out.String(), "\n"), code, nil
		}
		out.WriteString(line)
		if err != nil {
			return fail(err)
		}
	}
}

// UARTRates returns the line rates the guest programmed into the PL011, in order (a rate repeated is
// listed once), from QEMU's pl011_baudrate_change trace (Config.Trace must list it): what the guest's
// driver made of each termios the agent set. QEMU 7.2 leaves the PL011's clock unconnected (it traces
// "clk: 0hz"), so the rate is computed here from the divisors the driver wrote and the 24 MHz clock the
// virt board's device tree gives the guest, and rounded to the nearest standard rate within 3 %. QEMU
// emulates no line timing: bytes on the chardev reach the guest whatever the rate.
func (m *Machine) UARTRates() []int {
	var rates []int
	for _, l := range strings.Split(m.QEMULog(), "\n") {
		if r, ok := parseRateChange(l); ok && (len(rates) == 0 || rates[len(rates)-1] != r) {
			rates = append(rates, r)
		}
	}
	return rates
}

// uartClock is the PL011's reference clock in the virt board's device tree (apb-pclk).
const uartClock = 24_000_000

var standardRates = []int{1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600}

// parseRateChange reads QEMU's "pl011_baudrate_change new baudrate 0 (clk: 0hz, ibrd: 39, fbrd: 4)" trace
// line: the rate is clock / (16 * (ibrd + fbrd/64)). A divisor of 0 (the UART being set up) is no rate.
func parseRateChange(line string) (int, bool) {
	_, rest, ok := strings.Cut(line, "pl011_baudrate_change ")
	if !ok {
		return 0, false
	}
	var baud, clk uint64
	var ibrd, fbrd uint32
	if _, err := fmt.Sscanf(rest, "new baudrate %d (clk: %dhz, ibrd: %d, fbrd: %d)", &baud, &clk, &ibrd, &fbrd); err != nil {
		return 0, false
	}
	div := 64*uint64(ibrd) + uint64(fbrd&63)
	if ibrd == 0 || div == 0 {
		return 0, false
	}
	r := int(4 * uartClock / div)
	for _, s := range standardRates {
		if d := r - s; d*100 <= 3*s && -d*100 <= 3*s {
			return s, true
		}
	}
	return r, true
}

// Powerdown presses the board's power button: system_powerdown on the monitor. With acpi=off the virt
// board pulses PL061 line 3 high for 100 ms (QEMU's gpio-key), which is /dev/gpiochip0 line 3 in the guest.
func (m *Machine) Powerdown(ctx context.Context) error {
	_, err := m.Monitor(ctx, "system_powerdown")
	return err
}

// Relay is the other end of a forwarded connection (Config.Forwards): it connects to addr on the host and
// copies between that connection and conn (the command's stdin and stdout, one socket from QEMU: wrap it
// with net.FileConn(os.Stdin)) until either side ends or ctx does; then it closes both.
func Relay(ctx context.Context, conn io.ReadWriteCloser, addr string) error {
	defer conn.Close()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("vm: relay to %s: %w", addr, err)
	}
	done := make(chan error, 2)
	go func() { _, err := io.Copy(c, conn); done <- err }() // owned: waited below, ends when c and conn close
	go func() { _, err := io.Copy(conn, c); done <- err }() // owned: likewise
	waiting := 2
	select {
	case err = <-done:
		waiting--
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.Close()
	conn.Close()
	for ; waiting > 0; waiting-- {
		<-done
	}
	return err
}

// PowerdownTrain presses the power button n times, every gap. The gpio-key re-arms its 100 ms timer at
// each press: a gap under 100 ms holds line 3 high for (n-1)*gap + 100 ms (a held button); a longer gap
// gives n separate 100 ms pulses (a driver pressing again and again). Pulses shorter than 100 ms, such as
// contact bounce, cannot be made this way.
func (m *Machine) PowerdownTrain(ctx context.Context, n int, gap time.Duration) error {
	_, err := m.monitor(ctx, "system_powerdown", n, gap)
	return err
}

// MakeDisk creates the truck's disk: an ext4 image of sizeMB at path holding the files of src (mkfs.ext4
// -d, no mount and no root needed).
func MakeDisk(ctx context.Context, path string, sizeMB int, src string) error {
	os.Remove(path)
	return run(ctx, "", "mkfs.ext4", "-q", "-F", "-L", "truck", "-d", src, path, strconv.Itoa(sizeMB)+"M")
}

// ReadDiskFile copies one file out of the (stopped) machine's ext4 image, after e2fsck has replayed the
// journal the power cut left. It returns e2fsck's exit code: 0 clean, 1 errors corrected (a replayed
// journal alone gives 0 or 1), 4 and above errors left.
func ReadDiskFile(ctx context.Context, disk, file, out string) (int, error) {
	code := 0
	cmd := exec.CommandContext(ctx, "e2fsck", "-fy", disk)
	b, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		return -1, err
	}
	if code >= 4 {
		return code, fmt.Errorf("vm: e2fsck %s: exit %d\n%s", disk, code, b)
	}
	os.Remove(out)
	if err := run(ctx, "", "debugfs", "-R", "dump "+file+" "+out, disk); err != nil {
		return code, err
	}
	if _, err := os.Stat(out); err != nil {
		return code, fmt.Errorf("vm: debugfs dump %s: %w", file, err)
	}
	return code, nil
}
