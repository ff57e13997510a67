package fleetsim

import (
	"context"
	"errors"
	"fmt"
	"math"
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

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	peakRSS  uint64  // the largest VmHWM seen over every run of the process
	cpuEnded float64 // CPU seconds of its runs that have ended
}

// mosquittoInstall is what to run when Mosquitto is missing.
const mosquittoInstall = "apt-get install -y mosquitto"

// startBroker writes a configuration for the fleet into dir and starts Mosquitto on a free loopback port.
func startBroker(ctx context.Context, p *pki.PKI, dir string, sim Config) (*broker, error) {
	trucks := sim.Trucks
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
	cfg := brokerconf.Config{Port: port, Bind: "127.0.0.1", BrokerName: brokerName, FleetSize: trucks,
		ACL: brokerconf.ACL{Prefix: sim.Prefix}}
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
		if ps := cmd.ProcessState; ps != nil { // the ended run's CPU: wait's count of what /proc/PID/stat showed
			b.mu.Lock()
			b.cpuEnded += (ps.UserTime() + ps.SystemTime()).Seconds()
			b.mu.Unlock()
		}
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

// cpu returns the CPU seconds the broker used so far, over its restarts.
func (b *broker) cpu() float64 {
	b.mu.Lock()
	cmd, ended := b.cmd, b.cpuEnded
	b.mu.Unlock()
	if cmd != nil {
		if c, err := procCPU(cmd.Process.Pid); err == nil {
			ended += c
		}
	}
	return ended
}

func (b *broker) notePeak(pid int) {
	if v, err := procStatus(pid, "VmHWM"); err == nil {
		b.mu.Lock()
		b.peakRSS = max(b.peakRSS, v)
		b.mu.Unlock()
	}
}

// procFile is /proc/PID/name; pid 0 is this process ("self").
func procFile(pid int, name string) string {
	if pid == 0 {
		return "/proc/self/" + name
	}
	return "/proc/" + strconv.Itoa(pid) + "/" + name
}

// procStatus reads a "kB" field of /proc/PID/status, in bytes (pid 0: this process).
func procStatus(pid int, field string) (uint64, error) {
	p := procFile(pid, "status")
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

// clockTicks is USER_HZ, the unit of the times in /proc/PID/stat: 100 on every architecture Linux and Go
// share (the kernel converts its internal HZ to it).
const clockTicks = 100

// procCPU reads the CPU time a process used so far, user plus system, in seconds, from /proc/PID/stat
// (pid 0: this process).
func procCPU(pid int) (float64, error) {
	p := procFile(pid, "stat")
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	cpu, err := parseStatCPU(string(data))
	if err != nil {
		return 0, fmt.Errorf("fleetsim: %s: %w", p, err)
	}
	return cpu, nil
}

// parseStatCPU returns utime+stime (fields 14 and 15) of a /proc/PID/stat line, in seconds.
func parseStatCPU(stat string) (float64, error) {
	// Field 2, the command name in parentheses, may hold spaces and ')': the fields after it follow the
	// last ')', from field 3 on.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, errors.New("too few fields")
	}
	utime, err := strconv.ParseUint(f[14-3], 10, 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseUint(f[15-3], 10, 64)
	if err != nil {
		return 0, err
	}
	return float64(utime+stime) / clockTicks, nil
}

// roundCPU rounds CPU seconds to the clock tick, dropping a subtraction's float noise.
func roundCPU(s float64) float64 { return math.Round(s*clockTicks) / clockTicks }
