package streaming

import (
	"context"
	"fmt"
	"net"
	goruntime "runtime"

	"golang.org/x/sys/unix"
)

// dialInNetNS dials a TCP address from inside the network namespace at
// nsPath ("" dials from the host's namespace). A socket belongs to the
// namespace it was created in, so only socket creation needs the switch:
// it happens on a dedicated, locked OS thread that is switched back
// afterwards (and thrown away if switching back fails).
func dialInNetNS(ctx context.Context, nsPath, addr string) (net.Conn, error) {
	var d net.Dialer
	if nsPath == "" {
		return d.DialContext(ctx, "tcp", addr)
	}
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		var r result
		restored := false
		r.err = withNetNS(nsPath, func() error {
			var err error
			// addr is an IP literal: no resolver goroutines, the socket
			// is created on this thread.
			r.c, err = d.DialContext(ctx, "tcp", addr)
			return err
		}, &restored)
		if restored {
			goruntime.UnlockOSThread()
		}
		if r.err != nil && r.c != nil {
			r.c.Close()
			r.c = nil
		}
		ch <- r
	}()
	r := <-ch
	return r.c, r.err
}

// withNetNS runs fn with the calling (locked) thread in the namespace at
// nsPath. *restored reports whether the thread is back in its original
// namespace; if not, the caller must not unlock the thread.
func withNetNS(nsPath string, fn func() error, restored *bool) error {
	orig, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		*restored = true
		return fmt.Errorf("open current network namespace: %w", err)
	}
	defer unix.Close(orig)
	target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		*restored = true
		return fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		*restored = true
		return fmt.Errorf("enter network namespace %s: %w", nsPath, err)
	}
	fnErr := fn()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("return from network namespace %s: %w (after: %v)", nsPath, err, fnErr)
	}
	*restored = true
	return fnErr
}
