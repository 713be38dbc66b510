// Package shim is the crid-monitor process: it runs `runtime create`,
// becomes the container's subreaper, writes the CRI log, serves attach,
// reopen and wait on the state dir's socket, and records the exit.
//
// One runs per container for the container's whole life, so it is built to
// be small: no package net (no cgo, no libc: a static binary), no log/slog,
// one P (GOMAXPROCS=1, set by monitor.Start before the runtime starts), no heap
// profiling, no long-lived copy buffers and no thread parked in a blocking
// wait.
package shim

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/internal/crilog"
	"github.com/crid-dev/crid/internal/monitor/wire"
	"github.com/crid-dev/crid/internal/runc"
)

const (
	// drainTimeout bounds how long output is still collected after the
	// container's init exited (a process outside the container's pid
	// namespace may hold its stdout forever).
	drainTimeout = 2 * time.Second
	// attachQueue is how many output chunks an attacher may lag behind
	// before it is disconnected; the container never waits for attachers.
	attachQueue = 256
	// readBuf is the size of an output read once data is waiting; the
	// buffers are pooled and only exist while output flows.
	readBuf = 32 * 1024
	// probeBuf is the read that finds EOF (or races new data) when no
	// data was announced.
	probeBuf = 512
)

// RuntimeEnv is the Go runtime configuration monitor.Start gives the monitor: it
// must be in the environment at exec, since the runtime sizes itself
// before main runs. One P; a tight heap; and no heap profiling, whose
// first sampled allocation sets up a bucket hash table that costs a
// quarter MiB of touched pages. The monitor removes these from the OCI
// runtime's environment.
var RuntimeEnv = []string{"GOMAXPROCS=1", "GOGC=50", "GODEBUG=memprofilerate=0"}

// Main is the crid-monitor program; it returns the process exit status.
//
// Usage: crid-monitor -state-dir DIR, with the sync pipe as fd 3 and the
// options pipe (wire.Options as JSON, then EOF) as fd 4, as monitor.Start
// sets them up; an EOF before any options (crid gave the container up, or
// died) ends the monitor quietly. `crid-monitor
// runtime-exec ...` is the exec helper of runc.Runtime.ExecHelper instead.
func Main(args []string) int {
	// Without RuntimeEnv (started by hand, or as the exec helper) get as
	// close as one can this late; no-ops when the environment had them.
	runtime.MemProfileRate = 0
	runtime.GOMAXPROCS(1)
	if len(args) > 0 && args[0] == runc.ExecHelperCommand {
		return runc.ExecHelperMain(args[1:])
	}
	fs := flag.NewFlagSet("crid-monitor", flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "the container's monitor state directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := &logger{}
	var syncPipe *os.File
	if _, err := unix.FcntlInt(3, unix.F_GETFD, 0); err == nil {
		syncPipe = os.NewFile(3, "sync")
		unix.CloseOnExec(3)
	}
	report := func(m wire.SyncMsg) {
		if syncPipe == nil {
			return
		}
		b, _ := json.Marshal(&m)
		syncPipe.Write(b)
		syncPipe.Close()
		syncPipe = nil
	}
	if *stateDir == "" {
		report(wire.SyncMsg{Error: "crid-monitor: -state-dir is required"})
		return 2
	}
	o, err := readOptions()
	if errors.Is(err, errNoOptions) {
		return 0
	}
	// crid made the state dir before it sent the options (monitor.Launch
	// starts the monitor before the dir exists, with stderr on /dev/null).
	if lerr := openLog(*stateDir); lerr != nil && err == nil {
		err = lerr
	}
	if err != nil {
		log.error("monitor cannot start", "err", err)
		report(wire.SyncMsg{Error: err.Error()})
		return 1
	}
	log.id = o.ID
	m := &monitor{
		o:         o,
		log:       log,
		rt:        &runc.Runtime{Path: o.RuntimePath, Root: o.RuntimeRoot, SystemdCgroup: o.SystemdCgroup},
		attachers: map[*attacher]struct{}{},
		exited:    make(chan struct{}),
	}
	m.bufs.New = func() any { b := make([]byte, readBuf); return &b }
	if err := m.run(report); err != nil {
		m.log.error("monitor failed", "err", err)
		report(wire.SyncMsg{Error: err.Error()})
		return 1
	}
	return 0
}

// openLog makes the state dir's log the monitor's stderr, where its own
// diagnostics (and those of the processes it starts with its stderr) go.
func openLog(stateDir string) error {
	// Never through a symlink planted in its place: the monitor runs as
	// root, and its log is a file of its own.
	f, err := os.OpenFile(filepath.Join(stateDir, wire.LogName), os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return errors.New("open the monitor's log: " + err.Error())
	}
	defer f.Close()
	if err := unix.Dup3(int(f.Fd()), 2, 0); err != nil {
		return errors.New("open the monitor's log: " + err.Error())
	}
	return nil
}

// errNoOptions is the options pipe's EOF before any options.
var errNoOptions = errors.New("no options: the container was given up")

// readOptions reads the options from fd 4 to its EOF: it blocks until crid
// has the container's bundle ready (monitor.Pending).
func readOptions() (wire.Options, error) {
	var o wire.Options
	if _, err := unix.FcntlInt(4, unix.F_GETFD, 0); err != nil {
		return o, errors.New("read monitor options: no options pipe (fd 4)")
	}
	f := os.NewFile(4, "options")
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return o, errors.New("read monitor options: " + err.Error())
	}
	if len(b) == 0 {
		return o, errNoOptions
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, errors.New("decode monitor options: " + err.Error())
	}
	return o, nil
}

type monitor struct {
	o       wire.Options
	log     *logger
	rt      *runc.Runtime
	logFile *crilog.File
	bufs    sync.Pool // *[]byte of readBuf, only while output flows

	// Monitor-side ends of the container's stdio. With a terminal,
	// console is the pty master and is also stdout and stdin.
	stdout, stderr, console *os.File

	stdinMu     sync.Mutex
	stdin       *os.File // nil: the container has no stdin
	stdinClosed bool

	pid int
	oom oomCounter

	notifier *notifier // the seccomp notifier, or nil

	mu        sync.Mutex
	attachers map[*attacher]struct{}
	exit      *wire.Exit    // set once exited
	exited    chan struct{} // closed when exit is set

	logErrMu   sync.Mutex
	lastLogErr time.Time
}

func (m *monitor) run(report func(wire.SyncMsg)) error {
	if err := os.Chdir(m.o.StateDir); err != nil {
		return errors.New("enter state dir: " + err.Error())
	}
	// Orphans of the container (its init after `runtime create` exits,
	// and daemons it leaves behind) are reparented to us.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return errors.New("become subreaper: " + err.Error())
	}
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, unix.SIGCHLD)
	term := make(chan os.Signal, 4)
	signal.Notify(term, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	signal.Ignore(unix.SIGPIPE)

	// The pid file only has to appear whole; the state dir does not
	// outlive a reboot, so no fsync on the create path.
	if err := wire.WriteFileAtomic(filepath.Join(m.o.StateDir, wire.MonPidName), strconv.AppendInt(nil, int64(os.Getpid()), 10), false); err != nil {
		return errors.New("write monitor pid: " + err.Error())
	}
	lf, err := crilog.Open(m.o.LogPath)
	if err != nil {
		return err
	}
	m.logFile = lf

	closeNotifier, err := m.startNotifier()
	if err != nil {
		return err
	}
	defer closeNotifier()
	if err := m.create(chld, term); err != nil {
		return err
	}
	m.oom = newOOMCounter(m.pid)

	ln, err := listenUnix(wire.SocketName)
	if err != nil {
		m.cleanupCreated()
		return errors.New("listen on monitor socket: " + err.Error())
	}
	report(wire.SyncMsg{ContainerPID: m.pid})
	m.log.info("container created", "pid", m.pid)

	var handlers sync.WaitGroup
	go m.accept(ln, &handlers)

	var pumps sync.WaitGroup
	if m.console != nil {
		pumps.Add(1)
		go m.pump(m.console, crilog.Stdout, wire.FrameStdout, &pumps)
	} else {
		pumps.Add(2)
		go m.pump(m.stdout, crilog.Stdout, wire.FrameStdout, &pumps)
		go m.pump(m.stderr, crilog.Stderr, wire.FrameStderr, &pumps)
	}

	// No debug.FreeOSMemory here: the start-up garbage is well under a
	// heap goal, and the forced collection costs more resident GC
	// metadata (mark bits, work buffers) than it hands back (measured:
	// ~150 KiB more anon per idle monitor with it).

	ws := m.reapUntilExit(chld, term)
	e := &wire.Exit{ExitedAt: time.Now()}
	switch {
	case ws == nil:
		e.Code = 255
	case ws.Signaled():
		e.Signal = int(ws.Signal())
		e.Code = int32(128 + e.Signal)
	default:
		e.Code = int32(ws.ExitStatus())
	}
	e.OOMKilled = oomEnded(e, m.oom.killed())
	if m.notifier != nil {
		e.Reason, e.Message = m.notifier.exitReason()
	}
	m.log.info("container exited", "code", e.Code, "signal", e.Signal, "oomKilled", e.OOMKilled, "reason", e.Reason)

	m.drain(&pumps)
	m.closeStdin()
	if b, err := json.Marshal(e); err != nil {
		m.log.error("encode exit", "err", err)
	} else if err := wire.WriteFileAtomic(filepath.Join(m.o.StateDir, wire.ExitName), b, true); err != nil {
		m.log.error("write exit file", "err", err)
	}

	m.mu.Lock()
	m.exit = e
	close(m.exited)
	frame := exitFrame(e)
	for a := range m.attachers {
		select {
		case a.ch <- frame:
		default:
		}
		m.dropLocked(a)
	}
	m.mu.Unlock()

	// Waiters and attachers get their answers; later clients find the
	// exit file (Wait reads it when the socket is gone).
	ln.Close()
	os.Remove(filepath.Join(m.o.StateDir, wire.SocketName))
	done := make(chan struct{})
	go func() { handlers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	m.logFile.Close()
	return nil
}

// runtimeEnv is the OCI runtime's environment: ours without the monitor's
// Go runtime knobs (the runtime is a Go program too, but not ours to tune).
func runtimeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		keep := true
		for _, knob := range RuntimeEnv {
			k, _, _ := strings.Cut(knob, "=")
			if strings.HasPrefix(kv, k+"=") {
				keep = false
				break
			}
		}
		if keep {
			env = append(env, kv)
		}
	}
	return env
}

// create runs `runtime create` with the container's stdio. SIGTERM while
// it runs aborts the create (Create's ctx ended). The runtime is reaped by
// the SIGCHLD loop here rather than by a thread blocked in wait4.
func (m *monitor) create(chld, term <-chan os.Signal) error {
	o := m.o
	args := []string{o.RuntimePath}
	if o.RuntimeRoot != "" {
		args = append(args, "--root", o.RuntimeRoot)
	}
	if o.SystemdCgroup {
		args = append(args, "--systemd-cgroup")
	}
	runtimeLog := filepath.Join(o.StateDir, wire.RuncLogName)
	args = append(args, "--log", runtimeLog, "--log-format", "json", "create", "--bundle", o.Bundle,
		"--pid-file", filepath.Join(o.StateDir, wire.PidName))

	var theirs []*os.File // container-side ends, closed here once created
	closeTheirs := func() {
		for _, f := range theirs {
			f.Close()
		}
		theirs = nil
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	theirs = append(theirs, devNull)
	stdio := [3]*os.File{devNull, devNull, nil}
	var runtimeStderr *os.File // with a terminal: the runtime's stderr
	var conLn *os.File
	if o.Terminal {
		ln, err := listenUnix(wire.ConsoleName)
		if err != nil {
			closeTheirs()
			return errors.New("listen on console socket: " + err.Error())
		}
		conLn = ln
		defer func() {
			ln.Close()
			os.Remove(filepath.Join(o.StateDir, wire.ConsoleName))
		}()
		sock := filepath.Join(o.StateDir, wire.ConsoleName)
		if len(sock) > wire.SunPathMax {
			sock = wire.ConsoleName // relative to the runtime's working dir
		}
		args = append(args, "--console-socket", sock)
		r, w, err := os.Pipe()
		if err != nil {
			closeTheirs()
			return err
		}
		runtimeStderr = r
		defer r.Close()
		theirs = append(theirs, w)
		stdio[2] = w
	} else {
		outR, outW, err := os.Pipe()
		if err != nil {
			closeTheirs()
			return err
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			outR.Close()
			outW.Close()
			closeTheirs()
			return err
		}
		m.stdout, m.stderr = outR, errR
		theirs = append(theirs, outW, errW)
		stdio[1], stdio[2] = outW, errW
		if o.Stdin {
			inR, inW, err := os.Pipe()
			if err != nil {
				closeTheirs()
				m.closeOurs()
				return err
			}
			m.stdin = inW
			theirs = append(theirs, inR)
			stdio[0] = inR
		}
	}
	args = append(args, o.ID)

	// Fd makes the container-side ends blocking, as a container expects.
	// A group of its own, killed whole on abort: the runtime's hooks
	// (runc runs poststart hooks in create) are in it, its init is not
	// (runc/group.go).
	pid, err := syscall.ForkExec(o.RuntimePath, args, &syscall.ProcAttr{
		Dir:   o.StateDir,
		Env:   runtimeEnv(),
		Files: []uintptr{stdio[0].Fd(), stdio[1].Fd(), stdio[2].Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		closeTheirs()
		m.closeOurs()
		return errors.New("run " + o.RuntimePath + " create: " + err.Error())
	}
	var runErr error
	aborted := false
reap:
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			runErr = errors.New("wait for runtime: " + err.Error())
			break reap
		}
		if wpid == pid {
			switch {
			case ws.Signaled():
				runErr = errors.New("runtime killed by " + ws.Signal().String())
			case ws.ExitStatus() != 0:
				runErr = errors.New("runtime exit status " + strconv.Itoa(ws.ExitStatus()))
			}
			break reap
		}
		select {
		case <-chld:
		case s := <-term:
			if !aborted {
				aborted = true
				m.log.warn("aborting create", "signal", s)
				if err := runc.KillGroup(pid); err != nil {
					m.log.error("kill runtime create", "err", err)
					unix.Kill(pid, unix.SIGKILL)
				}
			}
		}
	}
	closeTheirs()
	if aborted {
		runc.ReapGroup(pid) // its hooks, killed with it and adopted here
	}

	if runErr == nil && !aborted {
		m.pid = runc.ReadPidFile(filepath.Join(o.StateDir, wire.PidName))
		if m.pid <= 0 {
			runErr = errors.New("runtime wrote no container pid")
		}
	}
	if runErr == nil && !aborted && o.Terminal {
		// The runtime sent the console before it exited: it waits in
		// the listen backlog.
		f, err := receiveConsole(conLn, time.Now().Add(5*time.Second))
		if err != nil {
			runErr = err
		} else {
			m.console = f
			m.stdout = f
			if o.Stdin {
				m.stdin = f
			}
		}
	}
	if runErr == nil && !aborted {
		return nil
	}

	// Failed: report the runtime's words, remove whatever it left.
	msg := ""
	if b, err := os.ReadFile(runtimeLog); err == nil {
		msg = runc.LogError(b)
	}
	for _, f := range []*os.File{runtimeStderr, m.stderr} {
		if msg == "" && f != nil {
			f.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			b, _ := io.ReadAll(io.LimitReader(f, 64*1024))
			msg = runc.ErrorMessage(b)
		}
	}
	if msg == "" && runErr != nil {
		msg = runErr.Error()
	}
	if aborted {
		msg = "create aborted"
	}
	m.cleanupCreated()
	return errors.New(filepath.Base(o.RuntimePath) + " create: " + msg)
}

// receiveConsole takes the pty master the runtime passed on the console
// socket.
func receiveConsole(ln *os.File, deadline time.Time) (*os.File, error) {
	ln.SetReadDeadline(deadline)
	conn, err := accept(ln)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, errors.New("runtime sent no console")
		}
		return nil, errors.New("accept console: " + err.Error())
	}
	defer conn.Close()
	conn.SetReadDeadline(deadline)
	fd, err := recvFd(conn)
	if err != nil {
		return nil, errors.New("receive console: " + err.Error())
	}
	// Non-blocking so the runtime poller serves it (read deadlines work).
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, errors.New("console: " + err.Error())
	}
	return os.NewFile(uintptr(fd), "console"), nil
}

// cleanupCreated force-deletes the runtime's container after a failed
// create and closes the stdio.
func (m *monitor) cleanupCreated() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.rt.Delete(ctx, m.o.ID, true); err != nil {
		m.log.error("delete after failed create", "err", err)
	}
	// Reap what the runtime left to us (its init, if it got that far).
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			break
		}
	}
	m.closeOurs()
}

func (m *monitor) closeOurs() {
	for _, f := range []*os.File{m.stdout, m.stderr, m.console, m.stdin} {
		if f != nil {
			f.Close()
		}
	}
}

// pump copies one output stream to the CRI log and the attachers until
// the stream ends. A read buffer is taken from the pool only when the
// kernel reports data waiting (FIONREAD, alias TIOCINQ), so a quiet container costs no
// buffer at all.
func (m *monitor) pump(f *os.File, stream crilog.Stream, typ byte, wg *sync.WaitGroup) {
	defer wg.Done()
	lw := crilog.NewLineWriter(m.logFile, stream, crilog.DefaultMaxLineSize, time.Now)
	lw.OnError = m.logWriteError
	defer lw.Flush()
	rc, err := f.SyscallConn()
	if err != nil {
		m.log.error("output stream", "err", err)
		return
	}
	probe := make([]byte, probeBuf)
	for {
		var buf []byte
		var pooled *[]byte
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			buf = probe
			if avail, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil && avail > probeBuf {
				pooled = m.bufs.Get().(*[]byte)
				buf = *pooled
			}
			for {
				n, rerr = unix.Read(int(fd), buf)
				if rerr != unix.EINTR {
					break
				}
			}
			if rerr == unix.EAGAIN {
				if pooled != nil {
					m.bufs.Put(pooled)
					pooled = nil
				}
				return false
			}
			return true
		})
		if n > 0 {
			lw.Write(buf[:n])
			m.broadcast(typ, buf[:n])
		}
		if pooled != nil {
			m.bufs.Put(pooled)
		}
		// EOF for pipes, EIO for a pty whose slave side is gone, a
		// deadline once draining was cut short.
		if err != nil || rerr != nil || n <= 0 {
			return
		}
	}
}

// logWriteError reports log write failures at most every 10 seconds.
func (m *monitor) logWriteError(err error) {
	m.logErrMu.Lock()
	defer m.logErrMu.Unlock()
	if time.Since(m.lastLogErr) < 10*time.Second {
		return
	}
	m.lastLogErr = time.Now()
	m.log.error("cannot write container log; output is dropped", "path", m.o.LogPath, "err", err)
}

// drain waits for the output streams to end after the init exited.
func (m *monitor) drain(pumps *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { pumps.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(drainTimeout):
	}
	m.log.warn("output still open after the container exited; stop reading it")
	for _, f := range []*os.File{m.stdout, m.stderr, m.console} {
		if f != nil {
			f.SetReadDeadline(time.Now())
		}
	}
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}

// reapUntilExit reaps children until the container's init is among them.
// nil means the init vanished without us seeing its status. Termination
// signals are ignored: only the container's exit ends the monitor.
func (m *monitor) reapUntilExit(chld, term <-chan os.Signal) *unix.WaitStatus {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
			if pid == m.pid {
				return &ws
			}
		}
		select {
		case <-chld:
		case s := <-term:
			m.log.info("ignoring signal", "signal", s)
		case <-tick.C:
			// Safety net should the init not be our child after all.
			if err := unix.Kill(m.pid, 0); errors.Is(err, unix.ESRCH) {
				m.log.error("container init vanished without being reaped here", "pid", m.pid)
				return nil
			}
		}
	}
}

func exitFrame(e *wire.Exit) []byte {
	b, _ := json.Marshal(e)
	return wire.AppendFrame(nil, wire.FrameExit, b)
}

// Container stdin.

func (m *monitor) writeStdin(p []byte) {
	m.stdinMu.Lock()
	defer m.stdinMu.Unlock()
	if m.stdin == nil || m.stdinClosed {
		return
	}
	m.stdin.Write(p) // a container that closed its stdin just loses input
}

// closeStdin gives the container EOF on stdin. A terminal has no EOF to
// give: the console stays open for output.
func (m *monitor) closeStdin() {
	m.stdinMu.Lock()
	defer m.stdinMu.Unlock()
	if m.stdin == nil || m.stdinClosed {
		return
	}
	m.stdinClosed = true
	if m.console == nil {
		m.stdin.Close()
	}
}

func (m *monitor) resize(w, h uint16) {
	if m.console == nil {
		return
	}
	runc.SetWinsize(m.console, runc.Size{Width: w, Height: h})
}

// Socket server.

type attacher struct {
	conn     *os.File
	out, err bool
	ch       chan []byte
	dropped  bool // guarded by monitor.mu
}

func (m *monitor) accept(ln *os.File, handlers *sync.WaitGroup) {
	for {
		conn, err := accept(ln)
		if err != nil {
			// The listener is closed only once the container exited.
			select {
			case <-m.exited:
				return
			default:
			}
			m.log.warn("accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			m.handle(conn)
		}()
	}
}

func (m *monitor) handle(conn *os.File) {
	br := bufio.NewReaderSize(conn, 512)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := br.ReadBytes('\n')
	if err != nil {
		conn.Close() // e.g. an Alive-style probe
		return
	}
	conn.SetReadDeadline(time.Time{})
	var req wire.Request
	if err := json.Unmarshal(line, &req); err != nil {
		wire.WriteJSONLine(conn, wire.Reply{Error: "bad request: " + err.Error()})
		conn.Close()
		return
	}
	switch req.Op {
	case wire.OpWait:
		m.serveWait(conn, br)
	case wire.OpReopen:
		var rep wire.Reply
		if err := m.logFile.Reopen(); err != nil {
			rep.Error = err.Error()
		} else {
			m.log.info("container log reopened", "path", m.o.LogPath)
		}
		wire.WriteJSONLine(conn, rep)
		conn.Close()
	case wire.OpAttach:
		m.serveAttach(conn, br, req)
	default:
		wire.WriteJSONLine(conn, wire.Reply{Error: "unknown op " + strconv.Quote(req.Op)})
		conn.Close()
	}
}

func (m *monitor) serveWait(conn *os.File, br *bufio.Reader) {
	defer conn.Close()
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, br)
		close(gone)
	}()
	select {
	case <-m.exited:
		conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		wire.WriteJSONLine(conn, wire.Reply{Exit: m.exit})
	case <-gone:
	}
}

func (m *monitor) serveAttach(conn *os.File, br *bufio.Reader, req wire.Request) {
	if req.Stdin && m.stdin == nil {
		// Kubelet may ask for stdin of a container created without it;
		// there is nothing to write to, output still flows.
		m.log.info("attach asked for stdin; the container has none")
		req.Stdin = false
	}
	a := &attacher{conn: conn, out: req.Stdout, err: req.Stderr, ch: make(chan []byte, attachQueue)}
	m.mu.Lock()
	if m.exit != nil {
		m.mu.Unlock()
		wire.WriteJSONLine(conn, wire.Reply{})
		conn.Write(exitFrame(m.exit))
		conn.Close()
		return
	}
	if err := wire.WriteJSONLine(conn, wire.Reply{}); err != nil {
		m.mu.Unlock()
		conn.Close()
		return
	}
	m.attachers[a] = struct{}{}
	m.mu.Unlock()

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		failed := false
		for f := range a.ch {
			if failed {
				continue
			}
			conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := conn.Write(f); err != nil {
				failed = true
				m.drop(a)
			}
		}
		conn.Close()
	}()

	sentEOF := false
	for {
		typ, p, err := wire.ReadFrame(br)
		if err != nil {
			break
		}
		switch typ {
		case wire.FrameStdin:
			if req.Stdin {
				m.writeStdin(p)
			}
		case wire.FrameStdinEOF:
			if req.Stdin && !sentEOF {
				sentEOF = true
				if m.o.StdinOnce {
					m.closeStdin()
					if m.console != nil {
						// A terminal cannot signal EOF; like containerd,
						// end the session instead (kubectl#454).
						m.drop(a)
					}
				}
			}
		case wire.FrameResize:
			if len(p) == 4 {
				m.resize(binary.BigEndian.Uint16(p[0:]), binary.BigEndian.Uint16(p[2:]))
			}
		}
	}
	// The client left (or we closed the connection).
	if req.Stdin && !sentEOF && m.o.StdinOnce {
		m.closeStdin()
	}
	m.drop(a)
	<-writerDone
}

func (m *monitor) broadcast(typ byte, p []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.attachers) == 0 {
		return
	}
	var frame []byte
	for a := range m.attachers {
		if (typ == wire.FrameStdout && !a.out) || (typ == wire.FrameStderr && !a.err) {
			continue
		}
		if frame == nil {
			frame = wire.AppendFrame(make([]byte, 0, len(p)+5), typ, p)
		}
		select {
		case a.ch <- frame:
		default:
			m.log.warn("attacher too slow; disconnecting it")
			m.dropLocked(a)
		}
	}
}

func (m *monitor) drop(a *attacher) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dropLocked(a)
}

// dropLocked ends an attach session: its writer flushes what is queued and
// closes the connection, which ends the session's reader too.
func (m *monitor) dropLocked(a *attacher) {
	if a.dropped {
		return
	}
	a.dropped = true
	delete(m.attachers, a)
	close(a.ch)
}
