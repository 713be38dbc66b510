// Package pidfd waits for processes to exit on Go's poller. A blocking
// wait (os/exec's Wait, waitid) holds an OS thread for as long as the
// process lives, and Go keeps the threads it created: a node that ran 300
// containers kept 300 idle threads and their stacks.
package pidfd

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Open returns a non-blocking pidfd for pid.
func Open(pid int) (*os.File, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid)), nil
}

// WaitExit blocks until the process behind f has exited (it may still need
// reaping) or ctx ends. It does not close f.
func WaitExit(ctx context.Context, f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var pollErr error
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			return false
		}
		if err != nil {
			pollErr = err
			return true
		}
		return n > 0 // readable: the process has exited
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err == nil {
		err = pollErr
	}
	if err != nil {
		return fmt.Errorf("wait for %s: %w", f.Name(), err)
	}
	return nil
}
