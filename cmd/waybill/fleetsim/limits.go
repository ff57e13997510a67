package fleetsim

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Open files a truck takes in its process: its socket and its store file, plus one of slack (a
// reconnect racing the old socket's close, a certificate being read). A truck behind the drop-link proxy
// adds the proxy's two sockets. fileReserve is for the rest of a process: dispatch, logs, the runtime.
const (
	filesPerTruck        = 3
	filesPerDroppedTruck = 2
	fileReserve          = 512
)

// raiseFileLimit raises this process's soft open-file limit to its hard limit and returns it. Setting it
// explicitly also hands it to children (Mosquitto, the workers): Go raises its own soft limit at start but
// starts children with the original one.
func raiseFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("fleetsim: open-file limit: %w", err)
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("fleetsim: raising the open-file limit to %d: %w", l.Max, err)
	}
	return l.Max, nil
}

// workersFor is how many processes run the trucks under an open-file limit: Config.Workers, or with
// zero as few as keep each within the limit at filesPerTruck. A number asked for that cannot work (each
// process's share needs more than the limit even without slack) is refused here rather than failing
// as trucks that cannot connect.
func workersFor(cfg Config, limit uint64) (int, error) {
	per := filesPerTruck + filesPerDroppedTruck*cfg.DropLink
	avail := float64(limit) - fileReserve
	if cfg.Workers == 0 {
		perProcess := max(int(avail/per), 1)
		return (cfg.Trucks + perProcess - 1) / perProcess, nil
	}
	share := (cfg.Trucks + cfg.Workers - 1) / cfg.Workers
	if need := float64(share) * (per - 1); need > avail {
		return 0, fmt.Errorf("fleetsim: %d trucks a process need about %.0f open files, more than the %d this machine allows a process (ulimit -Hn): use more workers (0: automatic)",
			share, need+fileReserve, limit)
	}
	return cfg.Workers, nil
}

// fileLimit reads a process's soft open-file limit from /proc/PID/limits.
func fileLimit(pid int) (uint64, error) {
	p := "/proc/" + strconv.Itoa(pid) + "/limits"
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			if f[0] == "unlimited" {
				return 1 << 62, nil
			}
			return strconv.ParseUint(f[0], 10, 64)
		}
	}
	return 0, errors.New("fleetsim: no open-file limit in " + p)
}
