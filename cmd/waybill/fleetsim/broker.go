package fleetsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/waybill-iot/waybill/sdk/brokerconf"
	"github.com/waybill-iot/waybill/sdk/pki"
)

// broker is a Mosquitto the simulation started, configured by brokerconf for the fleet's size.
type broker struct {
	bin, conf, logPath string
	addr               string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	peakRSS uint64 // the largest VmHWM seen over every run of the process
}

// mosquittoInstall is what to run when Mosquitto is missing.
const mosquittoInstall = "apt-get install -y mosquitto"

// startBroker writes a configuration for a fleet of trucks into dir and starts Mosquitto on a free
// loopback port.
func startBroker(ctx context.Context, p *pki.PKI, dir string, trucks int) (*broker, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/mosquitto"); serr != nil {
			return nil, fmt.Errorf("fleetsim: Mosquitto is not installed (%s)", mosquittoInstall)
		}
		bin = "/usr/sbin/mosquitto"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fleetsim: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := brokerconf.Config{Port: port, Bind: "127.0.0.1", BrokerName: brokerName, FleetSize: trucks}
	if os.Geteuid() == 0 {
		cfg.User = "root" // Mosquitto would drop to "mosquitto", which may not read the simulation's directory
	}
	res, err := brokerconf.Write(p, dir, cfg)
	if err != nil {
		return nil, err
	}
	b := &broker{bin: bin, conf: res.ConfPath, logPath: filepath.Join(dir, "mosquitto.log"),
		addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	if err := b.start(ctx); err != nil {
		return nil, err
	}
	// Mosquitto inherits this process's open-file limit (Run raised it to the hard one). It holds one file
	// per connection: the fleet's, dispatch's, and room for its own.
	need := uint64(brokerconf.FileLimit(trucks + 1))
	if lim, err := fileLimit(b.pid()); err != nil {
		b.stop()
		return nil, fmt.Errorf("fleetsim: Mosquitto's open-file limit: %w", err)
	} else if lim < need {
		b.stop()
		return nil, fmt.Errorf("fleetsim: Mosquitto may open %d files; %d trucks need about %d (one a connection, 1024 of its own): raise the hard limit (ulimit -Hn)",
			lim, trucks, need)
	}
	return b, nil
}

func (b *broker) pid() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cmd.Process.Pid
}

// URL is the broker's address for clients.
func (b *broker) URL() string { return "mqtts://" + b.addr }

func (b *broker) start(ctx context.Context) error {
	logf, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("fleetsim: %w", err)
	}
	cmd := exec.Command(b.bin, "-c", b.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = brokerAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("fleetsim: start Mosquitto: %w", err)
	}
	exited := make(chan struct{})
	go func() { // owned by stop, which waits for exited
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	b.mu.Lock()
	b.cmd, b.exited = cmd, exited
	b.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("fleetsim: Mosquitto exited at start; see %s", b.logPath)
		case <-ctx.Done():
			b.stop()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.stop()
			return fmt.Errorf("fleetsim: Mosquitto did not listen on %s within 10 s; see %s", b.addr, b.logPath)
		}
	}
}

// stop ends Mosquitto with SIGTERM (it saves its persistence) and waits for it.
func (b *broker) stop() {
	b.mu.Lock()
	cmd, exited := b.cmd, b.exited
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	b.notePeak(cmd.Process.Pid)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// restart stops the broker and starts it again with the same configuration and persistence.
func (b *broker) restart(ctx context.Context) error {
	b.stop()
	return b.start(ctx)
}

// peak returns the broker's peak resident memory so far.
func (b *broker) peak() uint64 {
	b.mu.Lock()
	cmd := b.cmd
	b.mu.Unlock()
	if cmd != nil {
		b.notePeak(cmd.Process.Pid)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peakRSS
}

func (b *broker) notePeak(pid int) {
	if v, err := procStatus(pid, "VmHWM"); err == nil {
		b.mu.Lock()
		b.peakRSS = max(b.peakRSS, v)
		b.mu.Unlock()
	}
}

// procStatus reads a "kB" field of /proc/PID/status, in bytes ("self" for this process: pid 0).
func procStatus(pid int, field string) (uint64, error) {
	p := "/proc/self/status"
	if pid != 0 {
		p = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n << 10, err
		}
	}
	return 0, errors.New("fleetsim: no " + field + " in " + p)
}
