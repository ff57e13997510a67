package vm

import "syscall"

// procAttr makes the kernel SIGKILL QEMU when the process that started it ends (a test binary killed at
// its -timeout), so no machine outlives its owner.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
