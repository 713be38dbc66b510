package shim

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/internal/monitor/wire"
)

// TestRecvSeccompFd: of the descriptors the runtime sends, the one the
// state's fds list names seccompFd is kept and the others are closed.
func TestRecvSeccompFd(t *testing.T) {
	for _, tt := range []struct {
		name  string
		state string
		sent  int // descriptors sent
		want  int // index of the sent fd expected back; -1: an error
	}{
		{"runc", `{"ociVersion":"1.2.0","fds":["seccompFd"],"pid":1}`, 1, 0},
		{"second", `{"fds":["other","seccompFd"]}`, 2, 1},
		{"none named", `{"fds":["other"]}`, 1, -1},
		{"not json, one fd", `{"fds":`, 1, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(pair[0])
			unix.SetNonblock(pair[1], true)
			conn := os.NewFile(uintptr(pair[1]), "conn")
			defer conn.Close()
			var sent []*os.File
			var fds []int
			for range tt.sent {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				defer w.Close()
				sent = append(sent, r)
				fds = append(fds, int(r.Fd()))
			}
			if err := unix.Sendmsg(pair[0], []byte(tt.state), unix.UnixRights(fds...), nil, 0); err != nil {
				t.Fatal(err)
			}
			fd, err := recvSeccompFd(conn)
			if tt.want < 0 {
				if err == nil {
					unix.Close(fd)
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			var got, want unix.Stat_t
			unix.Fstat(fd, &got)
			unix.Fstat(int(sent[tt.want].Fd()), &want)
			if got.Ino != want.Ino {
				t.Errorf("got the fd of inode %d, want %d", got.Ino, want.Ino)
			}
		})
	}
}

// TestNotifierAnswers: a native syscall is named and answered with its
// errno, another architecture's with the default; "stop" reports the
// reason only once it killed, naming the syscalls with their counts.
func TestNotifierAnswers(t *testing.T) {
	cfg := &wire.SeccompNotify{Stop: true, AuditArch: 7, DefaultErrno: 1, Syscalls: []wire.NotifiedSyscall{
		{Name: "mount", Nr: 165, Errno: 1}, {Name: "unshare", Nr: 272, Errno: 13},
	}}
	killed := 0
	n := newNotifier(cfg, &logger{}, func() { killed++ })
	if name, e := n.lookup(seccompData{Nr: 272, Arch: 7}); name != "unshare" || e != 13 {
		t.Errorf("native unshare: %q errno %d", name, e)
	}
	if name, e := n.lookup(seccompData{Nr: 26, Arch: 3}); name != "syscall 26 of arch 0x3" || e != 1 {
		t.Errorf("other arch: %q errno %d", name, e)
	}
	n.record("unshare")
	n.record("mount")
	if c := n.record("unshare"); c != 2 {
		t.Errorf("count %d, want 2", c)
	}
	n.timer.Stop() // the test stops by hand, without waiting for the grace
	if r, _ := n.exitReason(); r != "" {
		t.Errorf("reason %q before the kill", r)
	}
	n.stop()
	r, msg := n.exitReason()
	if killed != 1 || r != wire.SeccompReason || !strings.HasSuffix(msg, "mount (1x), unshare (2x)") {
		t.Errorf("killed %d, reason %q, message %q", killed, r, msg)
	}
}
