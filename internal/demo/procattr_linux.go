package demo

import "syscall"

// childAttr makes the kernel kill a child when the demo dies, however it dies.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
