package runc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/pidfd"
	"golang.org/x/sys/unix"
)

// execFifo is the FIFO a created runc (and crun) container's init blocks
// on: opening it for reading, reading the init's byte and removing it is
// all `runc start` does to a created container.
const execFifo = "exec.fifo"

// StartFifo starts a created container by releasing its init through the
// runtime's exec FIFO, as `runc start` does, without starting the runtime
// binary (25-30 ms on a small node, most of a container's start). pid is
// the container's init, watched while waiting. If the runtime keeps no
// FIFO (another runtime, or a container that is not in the created
// state) it falls back to `runtime start`. Callers use Start instead when
// the spec has poststart hooks, which only the runtime runs.
func (r *Runtime) StartFifo(ctx context.Context, id string, pid int) error {
	_, err := r.StartFifoThen(ctx, id, pid, func() {})
	return err
}

// StartFifoThen is StartFifo that calls started once the init is released
// (it runs then, whatever follows), and does not wait for the init's
// exec: it returns execd, closed once the init has exec'd the container's
// process, exited, or execWaitLimit passed (see waitExec). `runc start`
// and `runc run -d` return at the release too; what must not meet
// `runc init` in the container's place (an exec, a signal, a checkpoint)
// waits on execd, so the 1-2 ms of the execve are off every container's
// startup. started is called only when the start succeeded, before
// StartFifoThen returns.
func (r *Runtime) StartFifoThen(ctx context.Context, id string, pid int, started func()) (execd <-chan struct{}, err error) {
	if r.Root == "" || pid <= 0 {
		return closedChan, r.startThen(ctx, id, started)
	}
	return r.startFifo(ctx, id, pid, started)
}

// closedChan is an execd with nothing to wait for: the runtime's own start
// returned, or there is no init to watch.
var closedChan = func() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// startThen is the runtime's own start, then started.
func (r *Runtime) startThen(ctx context.Context, id string, started func()) error {
	if err := r.Start(ctx, id); err != nil {
		return err
	}
	started()
	return nil
}

// startFifo is StartFifoThen once the runtime keeps a root to look in.
func (r *Runtime) startFifo(ctx context.Context, id string, pid int, started func()) (execd <-chan struct{}, err error) {
	ctx, done := r.observe(ctx, "start", []string{"--exec-fifo", id})
	defer func() { done(err) }()
	ctx, cancel := r.Bounded(ctx, "start")
	defer cancel()
	path := filepath.Join(r.Root, id, execFifo)
	// Release only the init crid created: the runtime's record of its
	// init must name this pid, started at the same time (a pid reused
	// after the init died is another process). Checked before the FIFO is
	// opened, while the init is still held: opening the read side is what
	// releases it, and a container whose process exits at once (`id -u`)
	// would otherwise be gone before the check.
	if _, err := os.Stat(path); err == nil {
		if err := r.checkInit(id, pid); err != nil {
			return nil, fmt.Errorf("start container %s: %w", id, err)
		}
	}
	// The init's binary while it waits: the runtime's (a copy of it).
	// Read before the FIFO is opened: the open releases the init, which
	// may have exec'd the container's binary before a later look, and
	// waitExec would then wait its whole limit for a change that was over.
	initExe, exeErr := exeID(pid)
	// Non-blocking: a dead init never opens the write side, and the
	// open must not hang on that. The init's own blocking open for
	// writing completes once a reader exists.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) {
		return closedChan, r.startThen(ctx, id, started)
	}
	if err != nil {
		return nil, fmt.Errorf("start container %s: open %s: %w", id, execFifo, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	got, err := readFifo(ctx, f, pid)
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", id, err)
	}
	if !got {
		return nil, fmt.Errorf("start container %s: container process is already dead: %w", id, errdefs.ErrFailedPrecondition)
	}
	// runc reports "running" once the FIFO is gone.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("start container %s: %w", id, err)
	}
	if exeErr != nil {
		started()
		return closedChan, nil
	}
	execDone := make(chan struct{})
	// Not under ctx: the caller's request ends when the start returns,
	// and the wait outlives it (bounded by execWaitLimit).
	wctx := context.WithoutCancel(ctx)
	go func() {
		defer close(execDone)
		waitExec(wctx, pid, initExe)
	}()
	started()
	return execDone, nil
}

// execWaitLimit bounds waitExec: the runtime runs startContainer hooks
// between the FIFO and the execve, and a slow hook must not fail a start
// whose init is released anyway.
const execWaitLimit = 2 * time.Second

// waitExec waits until the released init has exec'd the container's
// process, or has exited, or execWaitLimit passed. runc before 1.1.12
// kept its FIFO writer open until the execve closed it (O_CLOEXEC), so the
// FIFO's end meant the exec was under way; runc 1.1.12 and later close it
// first, then close their other fds (the CVE-2024-21626 hardening) and run
// startContainer hooks before the execve, so right after the release pid 1
// is still "runc init", and an exec or probe that did not wait for this
// saw that instead of the container's process. The exec
// is done when /proc/<pid>/exe is no longer the file it was while the
// init waited on the FIFO and the command line is set, which the kernel
// does last in execve.
//
// The released init usually execs within 1-2 ms: it is polled every
// execPollFine until execFineFor has passed, then backing off. Doubling
// from the first poll (as before) found an exec done at 0.9 ms only at
// the 1.55 ms poll, time an exec right after a start would wait for.
func waitExec(ctx context.Context, pid int, initExe [2]uint64) {
	start := time.Now()
	deadline := start.Add(execWaitLimit)
	for delay := execPollFine; ; {
		id, err := exeID(pid)
		if err != nil {
			return // exited: the monitor reports it
		}
		if id != initExe {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || len(b) > 0 {
				return
			}
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return
		}
		time.Sleep(delay)
		if time.Since(start) > execFineFor {
			delay = min(2*delay, 5*time.Millisecond)
		}
	}
}

// waitExec's polling: every execPollFine (a stat and, once the exe
// changed, a read of /proc: a few µs each) for the first execFineFor.
const (
	execPollFine = 50 * time.Microsecond
	execFineFor  = 3 * time.Millisecond
)

// exeID identifies the file /proc/<pid>/exe refers to (device, inode).
func exeID(pid int) ([2]uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/exe", pid), &st); err != nil {
		return [2]uint64{}, err
	}
	return [2]uint64{st.Dev, st.Ino}, nil
}

// readFifo waits for the init's byte on the FIFO and reads to EOF. It
// reports false if the init died without writing.
func readFifo(ctx context.Context, f *os.File, pid int) (bool, error) {
	fd := int(f.Fd())
	buf := make([]byte, 16)
	got, hup := false, false
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case n > 0:
			got = true
			continue
		case n == 0 && err == nil:
			// EOF: no writer now. After the byte, the init is released
			// (and exec'd or about to: see waitExec); after a writer that
			// came and went without it, the init failed; before any
			// writer, wait below.
			if got || hup {
				return got, nil
			}
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			// The writer is open (it closes when the init execs).
		default:
			return got, fmt.Errorf("read %s: %w", execFifo, err)
		}
		if ctx.Err() != nil {
			return got, context.Cause(ctx)
		}
		if time.Now().After(deadline) {
			return got, fmt.Errorf("init did not open %s in time: %w", execFifo, context.DeadlineExceeded)
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, 100); err != nil && !errors.Is(err, unix.EINTR) {
			return got, fmt.Errorf("poll %s: %w", execFifo, err)
		}
		hup = hup || pfd[0].Revents&unix.POLLHUP != 0
		if pfd[0].Revents == 0 && !alive(pid) {
			// Read what a writer that finished meanwhile left.
			n, _ := unix.Read(fd, buf)
			return got || n > 0, nil
		}
	}
}

// alive reports whether pid runs (a zombie, 'Z', or a dying 'X' has
// exited).
func alive(pid int) bool {
	st, err := pidfd.State(pid)
	return err == nil && st != 'Z' && st != 'X'
}

// initRecord is what runc (state.json) and crun (status) record of a
// container's init: pid and start time.
type initRecord struct {
	RuncPid   int    `json:"init_process_pid"`
	RuncStart uint64 `json:"init_process_start"`
	CrunPid   int    `json:"pid"`
	CrunStart uint64 `json:"process-start-time"`
}

// stateFiles are the runtimes' records of a container, under <root>/<id>.
var stateFiles = []string{"state.json", "status"}

// checkInit verifies that pid, started when the runtime says its init
// started, is the container's init. A runtime that keeps neither record
// is not checked: crid only drives runc and crun through their FIFO.
func (r *Runtime) checkInit(id string, pid int) error {
	for _, name := range stateFiles {
		f, err := os.Open(filepath.Join(r.Root, id, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read the runtime's state: %w", err)
		}
		var rec initRecord
		err = json.NewDecoder(io.LimitReader(f, 1<<20)).Decode(&rec)
		f.Close()
		if err != nil {
			return fmt.Errorf("read the runtime's %s: %w", name, err)
		}
		wantPid, wantStart := rec.RuncPid, rec.RuncStart
		if wantPid == 0 {
			wantPid, wantStart = rec.CrunPid, rec.CrunStart
		}
		if wantPid == 0 {
			return nil // a record that names no init: nothing to compare
		}
		if wantPid != pid {
			return fmt.Errorf("the runtime's init is pid %d, not %d: %w", wantPid, pid, errdefs.ErrFailedPrecondition)
		}
		got, err := pidfd.StartTime(pid)
		if err != nil {
			return fmt.Errorf("init %d is gone: %v: %w", pid, err, errdefs.ErrFailedPrecondition)
		}
		if wantStart != 0 && got != wantStart {
			return fmt.Errorf("pid %d started at %d, the container's init at %d (pid reused): %w", pid, got, wantStart, errdefs.ErrFailedPrecondition)
		}
		return nil
	}
	return nil
}
