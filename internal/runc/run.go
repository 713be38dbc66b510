package runc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Run creates and starts container id from bundle with a single runtime
// invocation (`run --detach`), for a process that needs no stdio, log or
// attach (a pod's pause). Each invocation costs: runc copies its own binary
// into a memfd every time it runs, so one call instead of create+start
// matters on the pod startup path.
//
// The container's stdin, stdout and stderr are /dev/null: nothing it
// inherits can hold a pipe of ours open. The runtime's own messages go to
// logPath, which is read for the error text on failure and removed on
// success. The runtime runs in its own session with only PATH in its
// environment (NOTIFY_SOCKET or LISTEN_FDS from crid's would be acted upon).
//
// The returned pid is the container's process, read from pidFile. After
// the runtime exits that process is reparented to the nearest child
// subreaper or init; whoever that is must reap it.
func (r *Runtime) Run(ctx context.Context, id, bundle, pidFile, logPath string) (_ int, err error) {
	args := []string{"--log", logPath}
	args = append(args, r.globalArgs()...)
	args = append(args, "run", "--detach", "--bundle", bundle, "--pid-file", pidFile, id)
	ctx, done := r.observe(ctx, "run", []string{"--detach", "--bundle", bundle, id})
	defer func() { done(err) }()
	ctx, cancel := r.Bounded(ctx, "run")
	defer cancel()
	cmd := exec.CommandContext(ctx, r.Path, args...)
	// Stdin/Stdout/Stderr nil: os/exec opens /dev/null for each.
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	cmd.Env = []string{"PATH=" + path}
	cmd.WaitDelay = 5 * time.Second
	err = runGrouped(ctx, cmd)
	logText, _ := os.ReadFile(logPath)
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("run container %s: %w", id, context.Cause(ctx))
		}
		return 0, fmt.Errorf("run container %s: %w", id,
			&Error{Args: append([]string{r.Path}, args...), Message: ErrorMessage(logText), Err: err})
	}
	_ = os.Remove(logPath)
	pid := ReadPidFile(pidFile)
	if pid <= 0 {
		return 0, fmt.Errorf("run container %s: no pid in %s: %w", id, pidFile, errors.New("runtime wrote no pid file"))
	}
	return pid, nil
}
