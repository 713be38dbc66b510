package runc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/crid-dev/crid/internal/pidfd"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Exec runs proc in the container and waits for it, returning its exit code.
// After the process exits, output still held open by a background child is
// drained for at most drain. ctx cancellation kills the process.
//
// Without a terminal, set ExecHelper: runc exec in the foreground waits for
// its own output pipes, which a background child may hold for ever (see
// ExecHelperCommand). With a terminal runc runs in the foreground on a pty
// of ours and relays the console itself.
//
// runc exec in the foreground exits with the process's exit status, so a
// non-zero code alone cannot tell a failing process from a failing runc.
// runc's own errors are told apart by its JSON log (--log): an error record
// there means runc failed (container not running, bad spec...), and Exec
// returns that as an error; otherwise the code is the process's.
func (r *Runtime) Exec(ctx context.Context, id string, proc *specs.Process, eio ExecIO, drain time.Duration) (_ int, err error) {
	if proc == nil {
		return -1, fmt.Errorf("exec in container %s: no process spec", id)
	}
	// The command line is left out: it may carry secrets.
	ctx, done := r.observe(ctx, "exec", []string{id})
	defer func() { done(err) }()
	tmp, err := os.MkdirTemp("", "crid-exec-")
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	defer os.RemoveAll(tmp)

	p := *proc
	p.Terminal = eio.Terminal
	// The client's first terminal size goes into the process spec: runc
	// init sizes the console before it execs the process, so even a
	// command that asks at once (stty size) never sees 0x0. runc's own
	// resize, after the process starts, would race with it. Clients send
	// the size right after the streams open: wait for it briefly.
	var first *Size
	if eio.Terminal && eio.Resize != nil {
		select {
		case sz, ok := <-eio.Resize:
			if ok {
				first = &sz
				p.ConsoleSize = &specs.Box{Height: uint(sz.Height), Width: uint(sz.Width)}
			}
		case <-time.After(300 * time.Millisecond):
		}
	}
	spec, err := json.Marshal(&p)
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: encode process: %w", id, err)
	}
	procPath := filepath.Join(tmp, "process.json")
	pidPath := filepath.Join(tmp, "pid")
	logPath := filepath.Join(tmp, "log.json")
	if err := os.WriteFile(procPath, spec, 0o600); err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}

	bin := r.Path
	var args []string
	if r.ExecHelper != "" && !eio.Terminal {
		bin = r.ExecHelper
		args = []string{ExecHelperCommand, "--runtime", r.Path, "--log", logPath, "--process", procPath, "--pid-file", pidPath}
		if r.Root != "" {
			args = append(args, "--root", r.Root)
		}
	} else {
		args = []string{"--log", logPath}
		args = append(args, r.globalArgs()...)
		args = append(args, "exec", "--process", procPath, "--pid-file", pidPath)
		if eio.Terminal {
			args = append(args, "--tty")
		}
	}
	args = append(args, id)

	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = eio.Dir
	// On cancellation kill the exec'd process itself (runc then exits with
	// its status). Until runc has written the pid file there is only runc.
	cmd.Cancel = func() error {
		if err := killExecProcess(pidPath, cmd.Process.Pid); err == nil {
			return nil
		}
		return cmd.Process.Kill()
	}

	// Bounds, after a cancellation, how long runc may take to die before
	// SIGKILL, with a terminal too: a runtime that hangs once its process
	// was killed (or before it wrote the pid file) must not hold the exec
	// for ever, as it did with no drain time. Without a terminal it also
	// bounds the output drain after runc exited.
	cmd.WaitDelay = max(drain, time.Millisecond)
	var waitErr error
	if eio.Terminal {
		waitErr = r.execTTY(cmd, eio, first, drain)
	} else {
		cmd.Stdin = eio.Stdin
		cmd.Stdout = eio.Stdout
		cmd.Stderr = eio.Stderr
		waitErr = cmd.Run()
	}
	if errors.Is(waitErr, exec.ErrWaitDelay) {
		// runc and the process are done; a background child kept the
		// output open past the drain time. Not a failure of the exec.
		waitErr = nil
	}

	if cmd.ProcessState == nil {
		// runc never started.
		return -1, fmt.Errorf("exec in container %s: %w", id, waitErr)
	}
	logBytes, _ := os.ReadFile(logPath)
	code := ExitCode(cmd.ProcessState)
	if ctx.Err() != nil {
		return code, fmt.Errorf("exec in container %s: %w", id, ctx.Err())
	}
	var ee *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &ee) {
		return -1, fmt.Errorf("exec in container %s: %w", id, waitErr)
	}
	if code != 0 {
		if msg := LogError(logBytes); msg != "" {
			err := &Error{Args: []string{r.Path, "exec", id}, Message: msg, Err: waitErr}
			if isNotExist(err) {
				return -1, fmt.Errorf("exec in container %s: container not found: %w", id, err)
			}
			return -1, fmt.Errorf("exec in container %s: %w", id, err)
		}
	}
	return code, nil
}

// killExecProcess SIGKILLs the process an exec started, named by its pid
// file, through a pidfd, and only if it is a child or grandchild of runner
// (runc exec itself, or the exec helper that adopts the process when runc
// exits): by the time the exec is cancelled the process may have exited
// and its pid gone to another process, which must not be killed.
func killExecProcess(pidPath string, runner int) error {
	pid := ReadPidFile(pidPath)
	if pid <= 0 {
		return errors.New("no pid file yet")
	}
	f, err := pidfd.Open(pid)
	if err != nil {
		return err
	}
	defer f.Close()
	// Checked after the pidfd is open: if the process it names still lives
	// when it is signalled, the pid was its own throughout (a pid is not
	// reused before its process is reaped); if not, the signal fails.
	if !descendsFrom(pid, runner, 2) {
		return fmt.Errorf("process %d is not the exec's", pid)
	}
	return pidfdSignal(f, unix.SIGKILL)
}

// descendsFrom reports whether ancestor is pid's parent, or its parent's
// parent and so on up to depth generations.
func descendsFrom(pid, ancestor, depth int) bool {
	for ; depth > 0 && pid > 1; depth-- {
		ppid, err := pidfd.ParentPID(pid)
		if err != nil {
			return false
		}
		if pid = ppid; pid == ancestor {
			return true
		}
	}
	return false
}

// pidfdSignal sends sig to the process of pidfd f.
func pidfdSignal(f *os.File, sig unix.Signal) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.PidfdSendSignal(int(fd), sig, nil, 0) }); err != nil {
		return err
	}
	return serr
}

// LogError is the error a runtime's JSON log (--log-format json) records,
// "" if none. Only JSON records count: ErrorMessage would fall back to
// plain text otherwise, and a log has none worth reporting.
func LogError(log []byte) string {
	var out []byte
	for _, line := range bytes.Split(log, []byte("\n")) {
		if len(line) > 0 && line[0] == '{' {
			out = append(append(out, line...), '\n')
		}
	}
	return ErrorMessage(out)
}

// ExitCode is a finished process's exit code, 128+N for one killed by
// signal N (as a shell reports it).
func ExitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// execTTY runs runc on a pseudo-terminal. runc (with --tty) creates the
// container process's own console and relays between it and its stdio,
// which is our pty: resizing our pty makes the kernel send runc SIGWINCH,
// and runc applies the new size to the container's console.
func (r *Runtime) execTTY(cmd *exec.Cmd, eio ExecIO, first *Size, drain time.Duration) error {
	var ptmx *os.File
	var err error
	if first != nil {
		ptmx, err = pty.StartWithSize(cmd, &pty.Winsize{Rows: first.Height, Cols: first.Width})
	} else {
		ptmx, err = pty.Start(cmd)
	}
	if err != nil {
		return err
	}
	defer ptmx.Close()

	out := eio.Stdout
	if out == nil {
		out = io.Discard
	}
	copied := make(chan struct{})
	go func() {
		// Ends with EIO once every holder of the pty's slave side is gone.
		io.Copy(out, ptmx)
		close(copied)
	}()
	if eio.Stdin != nil {
		// Leaks until the caller's reader ends; it must not block Exec.
		go io.Copy(ptmx, eio.Stdin)
	}
	exited := make(chan struct{})
	resizeDone := make(chan struct{})
	if eio.Resize != nil {
		go func() {
			defer close(resizeDone)
			for {
				select {
				case sz, ok := <-eio.Resize:
					if !ok {
						return
					}
					SetWinsize(ptmx, sz)
				case <-exited:
					return
				}
			}
		}()
	} else {
		close(resizeDone)
	}
	waitErr := cmd.Wait()
	close(exited)
	<-resizeDone
	timer := time.NewTimer(drain)
	defer timer.Stop()
	select {
	case <-copied:
	case <-timer.C:
		ptmx.Close()
		<-copied
	}
	return waitErr
}

// SetWinsize resizes a pty through the File's syscall.RawConn: unlike
// File.Fd, that neither races with Close nor turns the descriptor blocking.
func SetWinsize(f *os.File, sz Size) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	err = rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: sz.Height, Col: sz.Width})
	})
	if err != nil {
		return err
	}
	return ierr
}
