//go:build !linux

package fleetsim

import "syscall"

// workerAttr puts a worker in its own process group; without Pdeathsig the worker ends when its stdin
// (the parent's orders) does.
func workerAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
