package shim

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dialEnv makes the test binary a client that connects to the socket it
// names and holds the connection for a while (see TestMain).
const dialEnv = "CRID_SHIM_TEST_DIAL"

func TestMain(m *testing.M) {
	if path := os.Getenv(dialEnv); path != "" {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err == nil {
			err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
		}
		if err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(3)
		}
		time.Sleep(2 * time.Second)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// dialAs connects to path from a child process running as uid/gid: a copy
// of the test binary in path's dir (go test's own dir is root's only).
func dialAs(t *testing.T, path string, uid uint32) *exec.Cmd {
	t.Helper()
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(filepath.Dir(path), "dial")
	if err := os.WriteFile(bin, self, 0o755); err != nil && !errors.Is(err, syscall.ETXTBSY) {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), dialEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// TestSocketOwnerOnly: the monitor's sockets are 0600 whatever the umask,
// and a peer of another user that still reaches one (a socket made
// world-accessible by hand) is dropped while the monitor keeps serving.
func TestSocketOwnerOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (connects as another user)")
	}
	// Not t.TempDir: its parent is root's only, and the other user must
	// reach the socket (and the binary that dials it).
	dir, err := os.MkdirTemp("", "crid-shim-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	old := unix.Umask(0)
	ln, err := listenUnix(filepath.Join(dir, "m.sock"))
	unix.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	path := filepath.Join(dir, "m.sock")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v with umask 0, want 0600", st.Mode().Perm())
	}
	// Unreachable to another user as made.
	if err := dialAs(t, path, 65534).Wait(); err == nil {
		t.Fatal("uid 65534 connected to a 0600 socket")
	}
	// Opened up by hand: the peer connects but is never served.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	dialAs(t, path, 65534)
	time.Sleep(300 * time.Millisecond) // the stranger is queued first
	dialAs(t, path, 0)
	if err := ln.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	conn, err := accept(ln)
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	defer conn.Close()
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		t.Fatal(err)
	}
	if cerr != nil {
		t.Fatal(cerr)
	}
	if cred.Uid != 0 {
		t.Fatalf("accept returned a peer of uid %d, want root's", cred.Uid)
	}
	// Nothing else is waiting: the stranger was dropped, not queued.
	if err := ln.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if c, err := accept(ln); !errors.Is(err, os.ErrDeadlineExceeded) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("second accept: %v, want a deadline (the stranger's connection dropped)", err)
	}
}
