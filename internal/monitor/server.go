package monitor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/internal/crilog"
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
)

// Main is the crid-monitor program; it returns the process exit status.
//
// Usage: crid-monitor -state-dir DIR, with DIR/options.json (Options) and
// the sync pipe as fd 3, as Spawn sets it up. `crid-monitor runtime-exec
// ...` is the exec helper of runc.Runtime.ExecHelper instead.
func Main(args []string) int {
	if len(args) > 0 && args[0] == runc.ExecHelperCommand {
		runtime.GOMAXPROCS(1)
		return runc.ExecHelperMain(args[1:])
	}
	// A monitor per container: keep each one small. Its work is copying
	// output, so one P and a tight heap cost nothing noticeable.
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(50)

	fs := flag.NewFlagSet("crid-monitor", flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "the container's monitor state directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var syncPipe *os.File
	if _, err := unix.FcntlInt(3, unix.F_GETFD, 0); err == nil {
		syncPipe = os.NewFile(3, "sync")
		unix.CloseOnExec(3)
	}
	report := func(m syncMsg) {
		if syncPipe == nil {
			return
		}
		b, _ := json.Marshal(&m)
		syncPipe.Write(b)
		syncPipe.Close()
		syncPipe = nil
	}
	if *stateDir == "" {
		report(syncMsg{Error: "crid-monitor: -state-dir is required"})
		return 2
	}
	o, err := readOptions(*stateDir)
	if err != nil {
		log.Error("monitor cannot start", "err", err)
		report(syncMsg{Error: err.Error()})
		return 1
	}
	m := &monitor{
		o:         o,
		log:       log.With("id", o.ID),
		rt:        &runc.Runtime{Path: o.RuntimePath, Root: o.RuntimeRoot},
		attachers: map[*attacher]struct{}{},
		exited:    make(chan struct{}),
	}
	if err := m.run(report); err != nil {
		m.log.Error("monitor failed", "err", err)
		report(syncMsg{Error: err.Error()})
		return 1
	}
	return 0
}

func readOptions(dir string) (Options, error) {
	var o Options
	b, err := os.ReadFile(filepath.Join(dir, optionsName))
	if err != nil {
		return o, fmt.Errorf("read monitor options: %w", err)
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, fmt.Errorf("decode monitor options: %w", err)
	}
	return o, nil
}

type monitor struct {
	o       Options
	log     *slog.Logger
	rt      *runc.Runtime
	logFile *crilog.File

	// Monitor-side ends of the container's stdio. With a terminal,
	// console is the pty master and is also stdout and stdin.
	stdout, stderr, console *os.File

	stdinMu     sync.Mutex
	stdin       *os.File // nil: the container has no stdin
	stdinClosed bool

	pid int
	oom oomCounter

	mu        sync.Mutex
	attachers map[*attacher]struct{}
	exit      *Exit         // set once exited
	exited    chan struct{} // closed when exit is set

	logErrMu   sync.Mutex
	lastLogErr time.Time
}

func (m *monitor) run(report func(syncMsg)) error {
	if err := os.Chdir(m.o.StateDir); err != nil {
		return fmt.Errorf("enter state dir: %w", err)
	}
	// Orphans of the container (its init after `runtime create` exits,
	// and daemons it leaves behind) are reparented to us.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become subreaper: %w", err)
	}
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, unix.SIGCHLD)
	term := make(chan os.Signal, 4)
	signal.Notify(term, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	signal.Ignore(unix.SIGPIPE)

	if err := writeFileAtomic(filepath.Join(m.o.StateDir, monPidName), []byte(strconv.Itoa(os.Getpid()))); err != nil {
		return fmt.Errorf("write monitor pid: %w", err)
	}
	lf, err := crilog.Open(m.o.LogPath)
	if err != nil {
		return err
	}
	m.logFile = lf

	if err := m.create(term); err != nil {
		return err
	}
	m.oom = newOOMCounter(m.pid)

	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: socketName, Net: "unix"})
	if err != nil {
		m.cleanupCreated()
		return fmt.Errorf("listen on monitor socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	report(syncMsg{ContainerPID: m.pid})
	m.log.Info("container created", "pid", m.pid)

	// From now on only the container's exit ends the monitor.
	go func() {
		for s := range term {
			m.log.Info("ignoring signal", "signal", s)
		}
	}()

	var handlers sync.WaitGroup
	go m.accept(ln, &handlers)

	var pumps sync.WaitGroup
	if m.console != nil {
		pumps.Add(1)
		go m.pump(m.console, crilog.Stdout, frameStdout, &pumps)
	} else {
		pumps.Add(2)
		go m.pump(m.stdout, crilog.Stdout, frameStdout, &pumps)
		go m.pump(m.stderr, crilog.Stderr, frameStderr, &pumps)
	}

	ws := m.reapUntilExit(chld)
	e := &Exit{ExitedAt: time.Now()}
	switch {
	case ws == nil:
		e.Code = 255
	case ws.Signaled():
		e.Signal = int(ws.Signal())
		e.Code = int32(128 + e.Signal)
	default:
		e.Code = int32(ws.ExitStatus())
	}
	e.OOMKilled = m.oom.killed()
	m.log.Info("container exited", "code", e.Code, "signal", e.Signal, "oomKilled", e.OOMKilled)

	m.drain(&pumps)
	m.closeStdin()
	if b, err := json.Marshal(e); err != nil {
		m.log.Error("encode exit", "err", err)
	} else if err := writeFileAtomic(filepath.Join(m.o.StateDir, exitName), b); err != nil {
		m.log.Error("write exit file", "err", err)
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
	os.Remove(filepath.Join(m.o.StateDir, socketName))
	done := make(chan struct{})
	go func() { handlers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	m.logFile.Close()
	return nil
}

// create runs `runtime create` with the container's stdio. SIGTERM while
// it runs aborts the create (Spawn's ctx ended).
func (m *monitor) create(term <-chan os.Signal) error {
	o := m.o
	var args []string
	if o.RuntimeRoot != "" {
		args = append(args, "--root", o.RuntimeRoot)
	}
	runtimeLog := filepath.Join(o.StateDir, runcLogName)
	args = append(args, "--log", runtimeLog, "--log-format", "json", "create", "--bundle", o.Bundle,
		"--pid-file", filepath.Join(o.StateDir, pidName))

	cmd := exec.Command(o.RuntimePath)
	cmd.Dir = o.StateDir
	var runtimeStderr bytes.Buffer
	var theirs []*os.File // container-side ends, closed here once created
	closeTheirs := func() {
		for _, f := range theirs {
			f.Close()
		}
		theirs = nil
	}
	var consoleCh chan consoleResult
	if o.Terminal {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: consoleName, Net: "unix"})
		if err != nil {
			return fmt.Errorf("listen on console socket: %w", err)
		}
		defer func() {
			ln.Close()
			os.Remove(filepath.Join(o.StateDir, consoleName))
		}()
		sock := filepath.Join(o.StateDir, consoleName)
		if len(sock) > sunPathMax {
			sock = consoleName // relative to cmd.Dir
		}
		args = append(args, "--console-socket", sock)
		consoleCh = make(chan consoleResult, 1)
		go func() { consoleCh <- receiveConsole(ln) }()
		cmd.Stderr = &runtimeStderr
	} else {
		outR, outW, err := os.Pipe()
		if err != nil {
			return err
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			outR.Close()
			outW.Close()
			return err
		}
		m.stdout, m.stderr = outR, errR
		theirs = append(theirs, outW, errW)
		cmd.Stdout, cmd.Stderr = outW, errW
		if o.Stdin {
			inR, inW, err := os.Pipe()
			if err != nil {
				closeTheirs()
				return err
			}
			m.stdin = inW
			theirs = append(theirs, inR)
			cmd.Stdin = inR
		}
	}
	args = append(args, o.ID)
	cmd.Args = append([]string{o.RuntimePath}, args...)

	if err := cmd.Start(); err != nil {
		closeTheirs()
		m.closeOurs()
		return fmt.Errorf("run %s create: %w", o.RuntimePath, err)
	}
	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()
	var runErr error
	aborted := false
	select {
	case runErr = <-waitc:
	case s := <-term:
		aborted = true
		m.log.Warn("aborting create", "signal", s)
		cmd.Process.Kill()
		<-waitc
	}
	closeTheirs()

	if runErr == nil && !aborted {
		m.pid = readPidFile(filepath.Join(o.StateDir, pidName))
		if m.pid <= 0 {
			runErr = errors.New("runtime wrote no container pid")
		}
	}
	if runErr == nil && !aborted && o.Terminal {
		select {
		case r := <-consoleCh:
			if r.err != nil {
				runErr = r.err
			} else {
				m.console = r.f
				m.stdout = r.f
				if o.Stdin {
					m.stdin = r.f
				}
			}
		case <-time.After(5 * time.Second):
			runErr = errors.New("runtime sent no console")
		}
	}
	if runErr == nil && !aborted {
		return nil
	}

	// Failed: report the runtime's words, remove whatever it left.
	msg := ""
	if b, err := os.ReadFile(runtimeLog); err == nil {
		msg = runc.ErrorMessage(onlyJSONLines(b))
	}
	if msg == "" {
		msg = runc.ErrorMessage(runtimeStderr.Bytes())
	}
	if msg == "" && m.stderr != nil {
		m.stderr.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		b, _ := io.ReadAll(io.LimitReader(m.stderr, 64*1024))
		msg = runc.ErrorMessage(b)
	}
	if msg == "" && runErr != nil {
		msg = runErr.Error()
	}
	if aborted {
		msg = "create aborted"
	}
	m.cleanupCreated()
	return fmt.Errorf("%s create: %s", filepath.Base(o.RuntimePath), msg)
}

// cleanupCreated force-deletes the runtime's container after a failed
// create and closes the stdio.
func (m *monitor) cleanupCreated() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.rt.Delete(ctx, m.o.ID, true); err != nil {
		m.log.Error("delete after failed create", "err", err)
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

func onlyJSONLines(b []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if len(l) > 0 && l[0] == '{' {
			out = append(append(out, l...), '\n')
		}
	}
	return out
}

type consoleResult struct {
	f   *os.File
	err error
}

// receiveConsole accepts the runtime's connection on the console socket
// and takes the pty master it passes with SCM_RIGHTS.
func receiveConsole(ln *net.UnixListener) consoleResult {
	conn, err := ln.AcceptUnix()
	if err != nil {
		return consoleResult{err: fmt.Errorf("accept console: %w", err)}
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return consoleResult{err: fmt.Errorf("receive console: %w", err)}
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return consoleResult{err: fmt.Errorf("receive console: %w", err)}
	}
	var fds []int
	for i := range msgs {
		if f, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, f...)
		}
	}
	if len(fds) == 0 {
		return consoleResult{err: errors.New("receive console: no file descriptor")}
	}
	for _, fd := range fds[1:] {
		unix.Close(fd)
	}
	unix.CloseOnExec(fds[0])
	// Non-blocking so the runtime poller serves it (read deadlines work).
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return consoleResult{err: fmt.Errorf("console: %w", err)}
	}
	return consoleResult{f: os.NewFile(uintptr(fds[0]), "console")}
}

// pump copies one output stream to the CRI log and the attachers until
// the stream ends.
func (m *monitor) pump(f *os.File, stream crilog.Stream, typ byte, wg *sync.WaitGroup) {
	defer wg.Done()
	lw := crilog.NewLineWriter(m.logFile, stream, crilog.DefaultMaxLineSize, time.Now)
	lw.OnError = m.logWriteError
	buf := make([]byte, 32*1024)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			lw.Write(buf[:n])
			m.broadcast(typ, buf[:n])
		}
		if err != nil {
			// EOF for pipes, EIO for a pty whose slave side is gone, a
			// deadline once draining was cut short.
			break
		}
	}
	lw.Flush()
}

// logWriteError reports log write failures at most every 10 seconds.
func (m *monitor) logWriteError(err error) {
	m.logErrMu.Lock()
	defer m.logErrMu.Unlock()
	if time.Since(m.lastLogErr) < 10*time.Second {
		return
	}
	m.lastLogErr = time.Now()
	m.log.Error("cannot write container log; output is dropped", "path", m.o.LogPath, "err", err)
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
	m.log.Warn("output still open after the container exited; stop reading it")
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
// nil means the init vanished without us seeing its status.
func (m *monitor) reapUntilExit(chld <-chan os.Signal) *unix.WaitStatus {
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
		case <-tick.C:
			// Safety net should the init not be our child after all.
			if err := unix.Kill(m.pid, 0); errors.Is(err, unix.ESRCH) {
				m.log.Error("container init vanished without being reaped here", "pid", m.pid)
				return nil
			}
		}
	}
}

func exitFrame(e *Exit) []byte {
	b, _ := json.Marshal(e)
	return appendFrame(nil, frameExit, b)
}

// Container stdin.

func (m *monitor) writeStdin(p []byte) {
	m.stdinMu.Lock()
	defer m.stdinMu.Unlock()
	if m.stdin == nil || m.stdinClosed {
		return
	}
	if _, err := m.stdin.Write(p); err != nil {
		m.log.Debug("write to container stdin", "err", err)
	}
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
	if err := runc.SetWinsize(m.console, runc.Size{Width: w, Height: h}); err != nil {
		m.log.Debug("resize console", "err", err)
	}
}

// Socket server.

type attacher struct {
	conn     net.Conn
	out, err bool
	ch       chan []byte
	dropped  bool // guarded by monitor.mu
}

func (m *monitor) accept(ln *net.UnixListener, handlers *sync.WaitGroup) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			m.log.Warn("accept", "err", err)
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

func (m *monitor) handle(conn net.Conn) {
	br := bufio.NewReader(conn)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := br.ReadBytes('\n')
	if err != nil {
		conn.Close() // e.g. an Alive-style probe
		return
	}
	conn.SetReadDeadline(time.Time{})
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		writeJSONLine(conn, reply{Error: fmt.Sprintf("bad request: %v", err)})
		conn.Close()
		return
	}
	switch req.Op {
	case opWait:
		m.serveWait(conn, br)
	case opReopen:
		var rep reply
		if err := m.logFile.Reopen(); err != nil {
			rep.Error = err.Error()
		} else {
			m.log.Info("container log reopened", "path", m.o.LogPath)
		}
		writeJSONLine(conn, rep)
		conn.Close()
	case opAttach:
		m.serveAttach(conn, br, req)
	default:
		writeJSONLine(conn, reply{Error: fmt.Sprintf("unknown op %q", req.Op)})
		conn.Close()
	}
}

func (m *monitor) serveWait(conn net.Conn, br *bufio.Reader) {
	defer conn.Close()
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, br)
		close(gone)
	}()
	select {
	case <-m.exited:
		conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		writeJSONLine(conn, reply{Exit: m.exit})
	case <-gone:
	}
}

func (m *monitor) serveAttach(conn net.Conn, br *bufio.Reader, req request) {
	if req.Stdin && m.stdin == nil {
		// Kubelet may ask for stdin of a container created without it;
		// there is nothing to write to, output still flows.
		m.log.Info("attach asked for stdin; the container has none")
		req.Stdin = false
	}
	a := &attacher{conn: conn, out: req.Stdout, err: req.Stderr, ch: make(chan []byte, attachQueue)}
	m.mu.Lock()
	if m.exit != nil {
		m.mu.Unlock()
		writeJSONLine(conn, reply{})
		conn.Write(exitFrame(m.exit))
		conn.Close()
		return
	}
	if err := writeJSONLine(conn, reply{}); err != nil {
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
		typ, p, err := readFrame(br)
		if err != nil {
			break
		}
		switch typ {
		case frameStdin:
			if req.Stdin {
				m.writeStdin(p)
			}
		case frameStdinEOF:
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
		case frameResize:
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
		if (typ == frameStdout && !a.out) || (typ == frameStderr && !a.err) {
			continue
		}
		if frame == nil {
			frame = appendFrame(make([]byte, 0, len(p)+5), typ, p)
		}
		select {
		case a.ch <- frame:
		default:
			m.log.Warn("attacher too slow; disconnecting it")
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
