package shim

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/internal/monitor/wire"
)

// The seccomp notifier (io.crid.seccomp-notifier). crid rewrote the
// container's profile so that the syscalls it blocks notify instead
// (SCMP_ACT_NOTIFY), with linux.seccomp.listenerPath at our
// wire.SeccompSocketName. The runtime connects there once per process it
// starts under the filter (the init, each `runc exec`) and sends the
// filter's notify fd with the OCI state. For each notification we log the
// syscall and answer with the errno the original profile returns, so the
// workload sees what it would have without the notifier. The monitor, not
// crid, holds the fds: they must stay open as long as the container runs
// (a closed notify fd makes notified syscalls fail with ENOSYS instead),
// across crid restarts.

// stopGrace is how long a container of a "stop" notifier runs after its
// first blocked syscall: a failing program often makes a few in a row,
// and the status should name them all. It is not extended by later ones,
// so a workload looping over blocked syscalls cannot put its stop off.
const stopGrace = time.Second

// The kernel's struct seccomp_notif and seccomp_notif_resp
// (include/uapi/linux/seccomp.h), the same on every architecture.
// golang.org/x/sys/unix has the ioctl numbers but not these types, and
// libseccomp-golang is cgo, which the monitor does not link. The sizes
// are encoded in the ioctl numbers (0x50 and 0x18): seccompNotifSize
// checks them at compile time.
type seccompData struct {
	Nr                 int32
	Arch               uint32
	InstructionPointer uint64
	Args               [6]uint64
}

type seccompNotif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  seccompData
}

type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32 // a negative errno, or 0 with Val as the result
	Flags uint32
}

// Compile-time size checks against the sizes in the ioctl numbers.
var (
	_ [0x50 - unsafe.Sizeof(seccompNotif{})]struct{}
	_ [unsafe.Sizeof(seccompNotif{}) - 0x50]struct{}
	_ [0x18 - unsafe.Sizeof(seccompNotifResp{})]struct{}
	_ [unsafe.Sizeof(seccompNotifResp{}) - 0x18]struct{}
)

// notifier answers a container's seccomp notifications.
type notifier struct {
	cfg  *wire.SeccompNotify
	byNr map[uint32]wire.NotifiedSyscall
	log  *logger
	kill func() // stops the container ("stop")

	mu     sync.Mutex
	counts map[string]int // notified syscalls by name
	timer  *time.Timer    // the pending stop, once started
	killed bool           // kill ran: the exit gets wire.SeccompReason
}

func newNotifier(cfg *wire.SeccompNotify, log *logger, kill func()) *notifier {
	n := &notifier{cfg: cfg, log: log, kill: kill, byNr: map[uint32]wire.NotifiedSyscall{}, counts: map[string]int{}}
	for _, s := range cfg.Syscalls {
		n.byNr[s.Nr] = s
	}
	return n
}

// serve accepts the runtime's connections on ln until done is closed
// (and ln with it).
func (n *notifier) serve(ln *os.File, done <-chan struct{}) {
	for {
		conn, err := accept(ln)
		if err != nil {
			select {
			case <-done:
				return
			default:
			}
			n.log.warn("seccomp notifier: accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		fd, err := recvSeccompFd(conn)
		conn.Close()
		if err != nil {
			n.log.error("seccomp notifier: receive notify fd", "err", err)
			continue
		}
		go n.handle(fd)
	}
}

// recvSeccompFd reads the runtime's message: the OCI container process
// state as JSON, whose fds list names the descriptors sent with it
// (SCM_RIGHTS); it returns the one named seccompFd and closes the others.
func recvSeccompFd(conn *os.File) (int, error) {
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	// The state carries the spec's annotations; a bigger one is cut short,
	// and then the one fd runc sends is taken without the state.
	data, fds, err := recvMsg(conn, 16*1024)
	if err != nil {
		return -1, err
	}
	var state struct {
		Fds []string `json:"fds"`
	}
	i := -1
	if err := json.Unmarshal(data, &state); err == nil {
		i = slices.Index(state.Fds, "seccompFd")
	} else if len(fds) == 1 {
		i = 0 // a state too big for the buffer: runc sends the one fd
	}
	if i < 0 || i >= len(fds) {
		closeAll(fds)
		return -1, errors.New("no seccompFd among the " + strconv.Itoa(len(fds)) + " descriptors received")
	}
	fd := fds[i]
	closeAll(slices.Delete(fds, i, i+1))
	return fd, nil
}

// handle answers the notifications of one notify fd until every process
// under its filter has exited. The fd goes to the runtime poller (it
// supports poll: readable with a notification waiting, POLLHUP once the
// filter has no tasks left), so no thread waits in the receive ioctl.
func (n *notifier) handle(fd int) {
	if err := unix.SetNonblock(fd, true); err != nil {
		n.log.error("seccomp notifier: notify fd", "err", err)
		unix.Close(fd)
		return
	}
	f := os.NewFile(uintptr(fd), "seccomp-notify")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		n.log.error("seccomp notifier: notify fd", "err", err)
		return
	}
	r := &notifReader{}
	r.fn = r.recv // bound once: a notification costs no allocation
	for {
		ok, err := r.next(rc)
		if err != nil {
			n.log.error("seccomp notifier: receive", "err", err)
			return
		}
		if !ok {
			return // no process left under the filter
		}
		n.answer(fd, &r.req)
	}
}

// notifReader receives the notifications of one notify fd, through the
// runtime poller's Read with the same func each time.
type notifReader struct {
	req seccompNotif
	pfd [1]unix.PollFd
	err error
	hup bool
	fn  func(uintptr) bool
}

// next waits for one notification into r.req; ok is false once the
// filter has no tasks left.
func (r *notifReader) next(rc syscall.RawConn) (ok bool, err error) {
	r.err, r.hup = nil, false
	if err := rc.Read(r.fn); err != nil {
		return false, err
	}
	return r.err == nil && !r.hup, r.err
}

// recv is the poller's Read func: true when done (a notification, the
// end, an error), false to wait for the fd to become readable.
func (r *notifReader) recv(fd uintptr) bool {
	for {
		r.pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
		if _, err := unix.Poll(r.pfd[:], 0); err != nil {
			if err == unix.EINTR {
				continue
			}
			r.err = err
			return true
		}
		if ev := r.pfd[0].Revents; ev&unix.POLLIN == 0 {
			r.hup = ev&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
			return r.hup // else wait for the poller
		}
		// The buffer must be zeroed: the kernel refuses it otherwise.
		r.req = seccompNotif{}
		err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(&r.req))
		// ENOENT: the notifying process was killed in the meantime.
		if err == unix.EINTR || err == unix.ENOENT {
			continue
		}
		r.err = err
		return true
	}
}

func ioctl(fd, req uintptr, arg unsafe.Pointer) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(arg)); e != 0 {
		return e
	}
	return nil
}

// answer fails the notified syscall as the original profile would, logs
// it, and with "stop" schedules the container's stop.
func (n *notifier) answer(fd int, req *seccompNotif) {
	name, errno := n.lookup(req.Data)
	resp := seccompNotifResp{ID: req.ID, Error: -int32(errno)}
	// ENOENT: the process died (or was interrupted) before the answer.
	if err := ioctl(uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&resp)); err != nil && err != unix.ENOENT {
		n.log.error("seccomp notifier: answer", "syscall", name, "err", err)
	}
	count := n.record(name)
	// Every syscall's first time, then at powers of two: a workload that
	// loops over a blocked syscall cannot flood the log.
	if count&(count-1) == 0 {
		n.log.info("seccomp notifier: blocked syscall", "syscall", name, "pid", int(req.Pid),
			"errno", int(errno), "count", count, "action", n.action())
	}
}

func (n *notifier) action() string {
	if n.cfg.Stop {
		return "stop"
	}
	return "log"
}

// lookup names the syscall and finds the errno to answer with.
func (n *notifier) lookup(d seccompData) (string, uint32) {
	if d.Arch == n.cfg.AuditArch {
		if s, ok := n.byNr[uint32(d.Nr)]; ok {
			return s.Name, s.Errno
		}
	}
	return "syscall " + strconv.Itoa(int(d.Nr)) + " of arch 0x" + strconv.FormatUint(uint64(d.Arch), 16), n.cfg.DefaultErrno
}

// record counts a notified syscall and, with "stop", starts the stop
// timer at the first one. It returns the syscall's count.
func (n *notifier) record(name string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.counts[name]++
	if n.cfg.Stop && n.timer == nil {
		n.timer = time.AfterFunc(stopGrace, n.stop)
	}
	return n.counts[name]
}

func (n *notifier) stop() {
	n.mu.Lock()
	n.killed = true
	n.mu.Unlock()
	n.log.warn("seccomp notifier: stopping the container", "syscalls", n.summary())
	n.kill()
}

// summary lists the notified syscalls with their counts, by name:
// "mount (1x), unshare (2x)".
func (n *notifier) summary() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	names := make([]string, 0, len(n.counts))
	for name := range n.counts {
		names = append(names, name)
	}
	slices.Sort(names)
	for i, name := range names {
		names[i] = name + " (" + strconv.Itoa(n.counts[name]) + "x)"
	}
	return strings.Join(names, ", ")
}

// exitReason is the container's status reason and message when the
// notifier stopped it, else empty.
func (n *notifier) exitReason() (reason, message string) {
	n.mu.Lock()
	killed := n.killed
	if !killed && n.timer != nil {
		n.timer.Stop() // it exited before its stop: nothing to kill
	}
	n.mu.Unlock()
	if !killed {
		return "", ""
	}
	return wire.SeccompReason, "stopped by the seccomp notifier after blocked syscalls: " + n.summary()
}

// startNotifier listens for the runtime's notify fds when the container
// has a notifier; it must run before `runtime create`, which sends the
// init's fd (and waits for the init, which may be held in a notified
// syscall until it is answered). The returned func closes the listener.
func (m *monitor) startNotifier() (func(), error) {
	if m.o.SeccompNotify == nil {
		return func() {}, nil
	}
	ln, err := listenUnix(wire.SeccompSocketName)
	if err != nil {
		return nil, errors.New("listen on seccomp notifier socket: " + err.Error())
	}
	m.notifier = newNotifier(m.o.SeccompNotify, m.log, m.killForSeccomp)
	done := make(chan struct{})
	go m.notifier.serve(ln, done)
	return func() {
		close(done)
		ln.Close()
		os.Remove(wire.SeccompSocketName)
	}, nil
}

// killForSeccomp kills all of the container's processes (runtime kill
// --all: the init alone would leave others where the pod shares a PID
// namespace).
func (m *monitor) killForSeccomp() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.rt.Kill(ctx, m.o.ID, unix.SIGKILL, true); err != nil {
		m.log.error("seccomp notifier: stop the container", "err", err)
	}
}
