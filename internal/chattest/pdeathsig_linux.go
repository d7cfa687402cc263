package chattest

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel kill the process when the test
// binary dies.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
