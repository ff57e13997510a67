package fleetsim

import "syscall"

// workerAttr puts a worker in its own process group (a terminal's Ctrl-C reaches the parent, which ends
// the run and collects the workers' counts, not the workers) and kills it if the parent dies. The death
// signal is sent when the thread that started the worker exits; Go ends threads only with goroutines
// locked to them, so it is a backstop to the parent closing the worker's stdin.
func workerAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// brokerAttr has Mosquitto stopped (saving its persistence) when this process dies without stopping it.
func brokerAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM} }
