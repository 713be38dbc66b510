package runc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// CheckpointOptions are the paths of one `checkpoint` invocation.
type CheckpointOptions struct {
	// ImagePath receives criu's images; it must exist and be empty.
	ImagePath string
	// WorkPath receives criu's dump.log and stats-dump.
	WorkPath string
}

// reapWait bounds how long a killed checkpoint waits for criu, which runc
// runs as a child of its own, to be gone.
const reapWait = 10 * time.Second

// Checkpoint dumps the running container id with criu and leaves it
// running (`checkpoint --leave-running`): Kubernetes' forensic
// checkpoint must not disturb the workload.
//
// runc runs criu as its child, and criu freezes the container's cgroup
// while it dumps. Killing runc alone when ctx ends would leave criu
// dumping, orphaned, with the container frozen. So runc runs in a process
// group of its own: when ctx ends the whole group (runc and criu) is
// killed and reaped, and a container left frozen is thawed with `resume`.
// The error then wraps ctx.Err(). Errors do not repeat the container's
// id: the caller's message names it.
func (r *Runtime) Checkpoint(ctx context.Context, id string, o CheckpointOptions) (err error) {
	args := []string{"checkpoint", "--leave-running", "--image-path", o.ImagePath, "--work-path", o.WorkPath, id}
	ctx, done := r.observe(ctx, "checkpoint", args[1:])
	defer func() { done(err) }()
	cmd := exec.Command(r.Path, append(r.globalArgs(), args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dump with criu: %w", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case werr := <-waited:
		if werr != nil {
			return fmt.Errorf("dump with criu: %w",
				&Error{Args: append([]string{r.Path}, args...), Message: ErrorMessage(stderr.Bytes()), Err: werr})
		}
		return nil
	case <-ctx.Done():
	}
	pgid := cmd.Process.Pid
	_ = unix.Kill(-pgid, unix.SIGKILL)
	<-waited
	reapGroup(pgid)
	// The thaw must run even though ctx is over.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if terr := r.thawIfFrozen(tctx, id); terr != nil {
		return fmt.Errorf("dump with criu: %w (and after killing it: %w)", ctx.Err(), terr)
	}
	return fmt.Errorf("dump with criu: %w", ctx.Err())
}

// reapGroup waits until no process of the killed group pgid is left. crid
// is a child subreaper, so criu, orphaned by runc's death, becomes crid's
// child and is reaped here (waiting on -pgid reaps only that group); where
// it went to init instead, it is just waited for.
func reapGroup(pgid int) {
	deadline := time.Now().Add(reapWait)
	for time.Now().Before(deadline) {
		var ws unix.WaitStatus
		for {
			pid, err := unix.Wait4(-pgid, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
		if err := unix.Kill(-pgid, 0); errors.Is(err, unix.ESRCH) {
			return
		}
		_ = unix.Kill(-pgid, unix.SIGKILL)
		time.Sleep(20 * time.Millisecond)
	}
}

// thawIfFrozen resumes a container that a killed criu left frozen.
func (r *Runtime) thawIfFrozen(ctx context.Context, id string) error {
	st, err := r.State(ctx, id)
	if err != nil {
		return err
	}
	if st.Status != "paused" {
		return nil
	}
	if _, err := r.run(ctx, nil, "resume", id); err != nil {
		return fmt.Errorf("thaw container %s: %w", id, err)
	}
	return nil
}
