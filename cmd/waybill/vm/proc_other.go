//go:build !linux

package vm

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }
