//go:build !linux

package demo

import "syscall"

// childAttr has no parent-death signal outside Linux: the demo's deferred
// stop is then the only guard.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
