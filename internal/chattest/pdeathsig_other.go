//go:build !linux

package chattest

import "os/exec"

func setParentDeathSignal(cmd *exec.Cmd) {}
