package shim

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// The monitor serves its socket with raw unix sockets wrapped in *os.File
// (non-blocking, so the runtime poller serves them: deadlines and Close
// wake blocked readers) instead of package net: net pulls in cgo and libc,
// which costs every monitor memory and start-up time.

// listenUnix binds and listens on name (relative to the working directory).
func listenUnix(name string) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind %s: %w", name, err)
	}
	// Owner only, set before listen: bind made the file with the
	// inherited umask's mode, but nobody can connect until listen.
	if err := os.Chmod(name, 0o600); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("chmod %s: %w", name, err)
	}
	if err := unix.Listen(fd, 64); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// accept waits for a connection on ln (honouring ln's read deadline: then
// the error is os.ErrDeadlineExceeded). It fails once ln is closed. Only
// peers running as the monitor's own user (root: crid, the runtime) are
// served; any other is closed unheard and the wait goes on, so a stray
// connection can neither drive the monitor nor end its accept loop.
func accept(ln *os.File) (*os.File, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	var aerr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if aerr == unix.EINTR {
				continue
			}
			if aerr == nil && !trustedPeer(nfd) {
				unix.Close(nfd)
				continue
			}
			return aerr != unix.EAGAIN
		}
	})
	if err != nil {
		return nil, err
	}
	if aerr != nil {
		return nil, fmt.Errorf("accept: %w", aerr)
	}
	return os.NewFile(uintptr(nfd), "conn"), nil
}

// trustedPeer reports whether the process at the other end of conn runs
// as the monitor's effective user (SO_PEERCRED, fixed at connect).
func trustedPeer(conn int) bool {
	cred, err := unix.GetsockoptUcred(conn, unix.SOL_SOCKET, unix.SO_PEERCRED)
	return err == nil && cred.Uid == uint32(os.Geteuid())
}

// recvFd reads one message from conn and returns the first descriptor it
// carries (SCM_RIGHTS); others are closed. It honours conn's read deadline.
func recvFd(conn *os.File) (int, error) {
	_, fds, err := recvMsg(conn, 4096)
	if err != nil {
		return -1, err
	}
	if len(fds) == 0 {
		return -1, errors.New("no file descriptor")
	}
	closeAll(fds[1:])
	return fds[0], nil
}

// recvMsg reads one message of up to size bytes from conn with the
// descriptors it carries (SCM_RIGHTS, close-on-exec). It honours conn's
// read deadline.
func recvMsg(conn *os.File, size int) ([]byte, []int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	buf := make([]byte, size)
	oob := make([]byte, unix.CmsgSpace(4*4))
	var n, oobn int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
			if rerr != unix.EINTR {
				return rerr != unix.EAGAIN
			}
		}
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return nil, nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, nil, err
	}
	var fds []int
	for i := range msgs {
		if f, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, f...)
		}
	}
	return buf[:n], fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
