package runc

import (
	"context"
	"errors"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A runtime command runs in a process group of its own, and when it is
// killed (its bound or its caller's context ended) the whole group is:
// the runtime's hooks are its children, in its group, and killing only
// the runtime left a hung hook (a poststart hook in `runc create`, a
// poststop one in `runc delete`) running, adopted by crid or the monitor
// as their subreaper, for ever. The container's init is not in it: the
// runtime's init makes a session of its own (runc's nsexec, crun).

// inOwnGroup makes cmd start in a new process group and its
// cancellation kill that group.
func inOwnGroup(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if !cmd.SysProcAttr.Setsid {
		cmd.SysProcAttr.Setpgid = true
	}
	cmd.Cancel = func() error { return KillGroup(cmd.Process.Pid) }
}

// runGrouped runs cmd in a process group of its own (inOwnGroup). When ctx
// ended it, the group's members left as the caller's children (the hooks,
// adopted once the runtime died) are reaped before it returns.
func runGrouped(ctx context.Context, cmd *exec.Cmd) error {
	inOwnGroup(cmd)
	err := cmd.Run()
	if err != nil && ctx.Err() != nil && cmd.Process != nil {
		ReapGroup(cmd.Process.Pid)
	}
	return err
}

// KillGroup SIGKILLs process group pgid (a runtime command and its
// children).
func KillGroup(pgid int) error {
	if err := unix.Kill(-pgid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}

// groupReapLimit bounds ReapGroup: a process stuck in the kernel does
// not die of SIGKILL, and must not hold its caller.
const groupReapLimit = 5 * time.Second

// ReapGroup reaps the members of process group pgid that are the
// caller's children once the runtime that led it was killed and reaped:
// the runtime's children, adopted by the caller as their subreaper. It
// returns once none is left, or after groupReapLimit.
func ReapGroup(pgid int) {
	deadline := time.Now().Add(groupReapLimit)
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-pgid, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.EINTR) || pid > 0:
			continue
		case err != nil: // ECHILD: no child of ours is left in it
			return
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
