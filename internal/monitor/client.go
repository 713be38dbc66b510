// Package monitor is the per-container monitor process (crid-monitor) and
// crid's client of it. The monitor, not the daemon, owns the container's
// stdio: it runs `runtime create`, becomes the container's subreaper, writes
// the CRI log, serves attach, records the exit; it outlives crid restarts.
package monitor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"

	"github.com/crid-dev/crid/internal/monitor/shim"
	"github.com/crid-dev/crid/internal/monitor/wire"
	"github.com/crid-dev/crid/internal/pidfd"
	"github.com/crid-dev/crid/internal/runc"
)

// Options describe one container for its monitor.
type Options = wire.Options

// SeccompNotify and NotifiedSyscall configure a container's seccomp
// notifier (Options.SeccompNotify).
type (
	SeccompNotify   = wire.SeccompNotify
	NotifiedSyscall = wire.NotifiedSyscall
)

// SeccompSocketName is the notifier's socket in the state dir: the
// spec's linux.seccomp.listenerPath.
const SeccompSocketName = wire.SeccompSocketName

// SeccompReason is Exit.Reason of a container its seccomp notifier stopped.
const SeccompReason = wire.SeccompReason

// Process is a created container under its monitor.
type Process struct {
	MonitorPID   int
	ContainerPID int
}

// Exit is how a container ended.
type Exit = wire.Exit

// AttachOptions are the streams of one attach session.
type AttachOptions struct {
	Stdin          io.Reader // nil: no stdin
	Stdout, Stderr io.Writer // nil: not wanted
	Resize         <-chan runc.Size
}

// ErrMonitorVanished is returned by Wait when the monitor is gone without
// having recorded an exit (it was killed); the container's fate is unknown.
var ErrMonitorVanished = errors.New("monitor vanished without recording an exit")

// spawnAbortTimeout bounds how long Spawn waits, after ctx ended, for the
// monitor to abort the create and clean up.
const spawnAbortTimeout = 15 * time.Second

// Spawn starts a monitor (binary monitorBin) that creates the container with
// `runtime create`. It returns once the container is created (or creation
// failed, with the runtime's error text; nothing is left behind then).
// It is Start and Create in one.
func Spawn(ctx context.Context, monitorBin string, o Options) (*Process, error) {
	if err := checkOptions(&o); err != nil {
		return nil, err
	}
	p, err := Start(monitorBin, o.StateDir)
	if err != nil {
		return nil, err
	}
	return p.Create(ctx, o)
}

// checkOptions checks that o names what a monitor cannot do without.
func checkOptions(o *Options) error {
	if o.ID == "" || o.Bundle == "" || o.StateDir == "" || o.RuntimePath == "" {
		return fmt.Errorf("spawn monitor: ID, Bundle, StateDir and RuntimePath are required: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// Pending is a monitor started ahead of its container: it waits for its
// options on a pipe, so that its exec and Go runtime start-up (1.5-3 ms)
// overlap crid's record, rootfs mount and spec. Create hands it the
// options; Abort, or crid's death (the pipe's EOF), makes it exit having
// done nothing.
type Pending struct {
	dir      string
	cmd      *exec.Cmd
	optsW    *os.File // nil once Create or Abort closed it
	exited   chan struct{}
	msgc     chan syncMsg
	prepared bool // the state dir is made (prepareDir)
}

// Start starts a monitor for the state dir stateDir, waiting for Create,
// and makes the state dir.
//
// The monitor runs in its own session and is not killed with crid. Start
// starts a goroutine that waits for it, so while this crid process lives an
// exited monitor does not linger as a zombie; after a crid restart the
// orphaned monitors belong to init (or crid's subreaper), which reaps them.
func Start(monitorBin, stateDir string) (*Pending, error) {
	p, err := Launch(monitorBin, stateDir)
	if err != nil {
		return nil, err
	}
	if err := p.prepareDir(); err != nil {
		p.Abort()
		return nil, err
	}
	return p, nil
}

// Launch is Start without the state dir: it starts the monitor and
// touches no file, so a caller can launch it before its own record of
// the container exists. A crash of crid then leaves only a monitor that
// exits at its options pipe's EOF, and nothing on disk. Create makes the
// state dir before it hands over the options; the monitor opens its log
// there once it has them (until then its stderr is /dev/null).
func Launch(monitorBin, stateDir string) (*Pending, error) {
	dir, err := cleanStateDir(stateDir)
	if err != nil {
		return nil, fmt.Errorf("spawn monitor: %w", err)
	}
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("spawn monitor: %w", err)
	}
	defer syncW.Close()
	optsR, optsW, err := os.Pipe()
	if err != nil {
		syncR.Close()
		return nil, fmt.Errorf("spawn monitor: %w", err)
	}
	defer optsR.Close()

	cmd := exec.Command(monitorBin, "-state-dir", dir)
	cmd.Dir = "/"
	// The monitor's own diagnostics go to its log in dir, which it opens
	// once it has its options; never to crid's stdio, which dies with crid.
	cmd.Stderr = nil
	cmd.ExtraFiles = []*os.File{syncW, optsR} // fds 3 and 4
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Only PATH: crid's environment may hold NOTIFY_SOCKET or LISTEN_FDS,
	// which the runtime would act upon.
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	// The Go runtime sizes itself before main runs: its knobs must be in
	// the environment at exec (one P, a tight heap; see shim.RuntimeEnv).
	cmd.Env = append([]string{"PATH=" + path}, shim.RuntimeEnv...)
	if err := cmd.Start(); err != nil {
		syncR.Close()
		optsW.Close()
		return nil, fmt.Errorf("spawn monitor: %w", err)
	}
	p := &Pending{dir: dir, cmd: cmd, optsW: optsW, exited: make(chan struct{}), msgc: make(chan syncMsg, 1)}
	go p.reap()
	go p.readReport(syncR)
	return p, nil
}

// prepareDir makes the monitor's state dir, refusing one where another
// monitor runs, and clears what a previous monitor left there.
func (p *Pending) prepareDir() error {
	if p.prepared {
		return nil
	}
	if Alive(p.dir) {
		return fmt.Errorf("spawn monitor: a monitor already runs in %s: %w", p.dir, errdefs.ErrAlreadyExists)
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return fmt.Errorf("spawn monitor: %w", err)
	}
	removeStateFiles(p.dir)
	p.prepared = true
	return nil
}

// Launching is a Launch under way in a goroutine of its own, so that the
// monitor's fork and exec (most of a millisecond of the caller's thread)
// overlap the caller's own work, such as a fsynced record.
type Launching struct {
	done chan struct{}
	p    *Pending
	err  error
}

// LaunchAsync starts Launch in a goroutine. The caller must call Abort
// (a no-op once Create took the monitor), whatever happens.
func LaunchAsync(monitorBin, stateDir string) *Launching {
	l := &Launching{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		l.p, l.err = Launch(monitorBin, stateDir)
	}()
	return l
}

// Wait returns the launched monitor.
func (l *Launching) Wait() (*Pending, error) {
	<-l.done
	return l.p, l.err
}

// Abort waits for the launch and ends the monitor unless Create took it.
func (l *Launching) Abort() {
	<-l.done
	if l.p != nil {
		l.p.Abort()
	}
}

// reap waits for the monitor's exit.
func (p *Pending) reap() {
	// On the poller, not in a blocking wait: that would hold an OS
	// thread for the monitor's whole life (see package pidfd).
	if f, err := pidfd.Open(p.cmd.Process.Pid); err == nil {
		_ = pidfd.WaitExit(context.Background(), f)
		f.Close()
	}
	p.cmd.Wait() // exited by now, or no pidfd: reaps it
	close(p.exited)
}

// readReport reads the monitor's one report from the sync pipe r.
func (p *Pending) readReport(r *os.File) {
	defer r.Close()
	var m syncMsg
	b, err := io.ReadAll(r)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		m.Error = "monitor exited before reporting"
	} else if err := json.Unmarshal(b, &m); err != nil {
		m.Error = fmt.Sprintf("bad report from monitor %q: %v", b, err)
	}
	p.msgc <- m
}

// Abort ends a monitor Create was not called for (a no-op after Create):
// it exits at the options pipe's EOF; Abort waits for that.
func (p *Pending) Abort() {
	if p.optsW == nil {
		return
	}
	p.optsW.Close()
	p.optsW = nil
	if !waitExited(p.exited, spawnAbortTimeout) {
		p.cmd.Process.Kill()
		waitExited(p.exited, time.Second)
	}
	// Only a dir this monitor prepared: one that another monitor holds
	// (prepareDir refused it) keeps that monitor's files.
	if p.prepared {
		removeStateFiles(p.dir)
	}
}

// Create hands the monitor its options (o.StateDir is Start's) and waits
// until it has created the container with `runtime create`. It returns
// once the container is created (or creation failed, with the runtime's
// error text; nothing is left behind then).
func (p *Pending) Create(ctx context.Context, o Options) (*Process, error) {
	o.StateDir = p.dir
	if err := checkOptions(&o); err != nil {
		p.Abort()
		return nil, err
	}
	if err := p.prepareDir(); err != nil {
		p.Abort()
		return nil, err
	}
	opts, err := json.Marshal(&o)
	if err != nil {
		p.Abort()
		return nil, fmt.Errorf("spawn monitor for %s: %w", o.ID, err)
	}
	// A monitor that died already (EPIPE) reports nothing; the wait
	// below says so, with its log's tail.
	_, _ = p.optsW.Write(opts)
	p.optsW.Close()
	p.optsW = nil

	var m syncMsg
	select {
	case m = <-p.msgc:
	case <-ctx.Done():
		// The monitor aborts the create on SIGTERM and cleans up.
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.msgc:
		case <-time.After(spawnAbortTimeout):
			p.cmd.Process.Kill()
		}
		waitExited(p.exited, spawnAbortTimeout)
		removeStateFiles(p.dir)
		return nil, fmt.Errorf("spawn monitor for %s: %w", o.ID, context.Cause(ctx))
	}
	if m.Error != "" || m.ContainerPID <= 0 {
		return nil, p.failed(o.ID, m.Error)
	}
	return &Process{MonitorPID: p.cmd.Process.Pid, ContainerPID: m.ContainerPID}, nil
}

// failed waits for a monitor that reported a failed create (it has
// already deleted the runtime's container) to finish exiting, so nothing
// of it remains, and returns the error.
func (p *Pending) failed(id, msg string) error {
	if !waitExited(p.exited, spawnAbortTimeout) {
		p.cmd.Process.Kill()
		waitExited(p.exited, time.Second)
	}
	if msg == "" {
		msg = "monitor reported no container pid"
	}
	if strings.HasPrefix(msg, "monitor exited") {
		if tail := logTail(filepath.Join(p.dir, logName)); tail != "" {
			msg += ": " + tail
		}
	}
	removeStateFiles(p.dir)
	return fmt.Errorf("create container %s: %s", id, msg)
}

func waitExited(exited <-chan struct{}, d time.Duration) bool {
	select {
	case <-exited:
		return true
	case <-time.After(d):
		return false
	}
}

// removeStateFiles clears what a previous monitor left in dir (not its log).
func removeStateFiles(dir string) {
	for _, n := range []string{socketName, consoleName, wire.SeccompSocketName, pidName, monPidName, exitName, exitName + ".tmp", runcLogName} {
		os.Remove(filepath.Join(dir, n))
	}
}

func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 1024 {
		s = s[len(s)-1024:]
	}
	return s
}

// Wait blocks until the container exits and returns its exit. It works for
// monitors spawned by an earlier crid process too.
func Wait(ctx context.Context, stateDir string) (*Exit, error) {
	for {
		if e, err := ReadExit(stateDir); err == nil {
			return e, nil
		}
		if e, err := waitSocket(ctx, stateDir); err == nil {
			return e, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("wait for container in %s: %w", stateDir, ctx.Err())
		}
		// The monitor hung up or cannot be reached: it has exited (then the
		// exit file is there) or was killed.
		if e, err := ReadExit(stateDir); err == nil {
			return e, nil
		}
		if !Alive(stateDir) {
			if e, err := ReadExit(stateDir); err == nil {
				return e, nil
			}
			return nil, fmt.Errorf("wait for container in %s: %w", stateDir, ErrMonitorVanished)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for container in %s: %w", stateDir, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func waitSocket(ctx context.Context, stateDir string) (*Exit, error) {
	conn, err := dial(ctx, stateDir)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := wire.WriteJSONLine(conn, request{Op: opWait}); err != nil {
		return nil, err
	}
	var rep reply
	if err := json.NewDecoder(conn).Decode(&rep); err != nil {
		return nil, err
	}
	if rep.Error != "" {
		return nil, errors.New(rep.Error)
	}
	if rep.Exit == nil {
		return nil, errors.New("monitor answered wait without an exit")
	}
	return rep.Exit, nil
}

// ReadExit returns the recorded exit; errdefs.ErrNotFound if not exited yet.
func ReadExit(stateDir string) (*Exit, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, exitName))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("exit of container in %s: %w", stateDir, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("exit of container in %s: %w", stateDir, err)
	}
	var e Exit
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("exit of container in %s: decode: %w", stateDir, err)
	}
	return &e, nil
}

// Alive reports whether the monitor for stateDir is running. It checks the
// pid the monitor recorded against that process's command line, so a
// recycled pid is not mistaken for the monitor.
func Alive(stateDir string) bool {
	dir, err := cleanStateDir(stateDir)
	if err != nil {
		return false
	}
	pid := runc.ReadPidFile(filepath.Join(dir, monPidName))
	if pid <= 0 {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false // gone, or a zombie (empty cmdline below)
	}
	args := strings.Split(string(cmdline), "\x00")
	for i, a := range args {
		if a == "-state-dir" && i+1 < len(args) && args[i+1] == dir {
			return true
		}
		if a == "-state-dir="+dir || a == "--state-dir="+dir {
			return true
		}
	}
	return false
}

// MonitorPID returns the pid the monitor of stateDir recorded, 0 if none.
func MonitorPID(stateDir string) int {
	return runc.ReadPidFile(filepath.Join(stateDir, monPidName))
}

// ContainerPID returns the container init's pid written by the runtime, 0
// if none.
func ContainerPID(stateDir string) int {
	return runc.ReadPidFile(filepath.Join(stateDir, pidName))
}

// notRunning wraps a failure to reach the monitor: the container has exited
// (or its monitor is gone), so live operations are impossible.
func notRunning(op, stateDir string, err error) error {
	return fmt.Errorf("%s: monitor in %s not reachable (container not running?): %w: %v", op, stateDir, errdefs.ErrFailedPrecondition, err)
}

// Attach connects to the container's live stdio until the container exits,
// the client's stdin ends (with StdinOnce), or ctx is done.
func Attach(ctx context.Context, stateDir string, o AttachOptions) error {
	conn, err := dial(ctx, stateDir)
	if err != nil {
		return notRunning("attach", stateDir, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	req := request{Op: opAttach, Stdin: o.Stdin != nil, Stdout: o.Stdout != nil, Stderr: o.Stderr != nil}
	if err := wire.WriteJSONLine(conn, req); err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadBytes('\n')
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("attach: %w", ctx.Err())
		}
		return notRunning("attach", stateDir, err)
	}
	var rep reply
	if err := json.Unmarshal(line, &rep); err != nil {
		return fmt.Errorf("attach: bad reply %q: %w", line, err)
	}
	if rep.Error != "" {
		return fmt.Errorf("attach: %s: %w", rep.Error, errdefs.ErrFailedPrecondition)
	}

	var wmu sync.Mutex // frames from the stdin and resize goroutines
	send := func(typ byte, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return writeFrame(conn, typ, p)
	}
	done := make(chan struct{})
	defer close(done)
	if o.Stdin != nil {
		go func() {
			buf := make([]byte, 32*1024)
			for {
				n, err := o.Stdin.Read(buf)
				if n > 0 {
					if send(frameStdin, buf[:n]) != nil {
						return
					}
				}
				if err != nil {
					send(frameStdinEOF, nil)
					return
				}
			}
		}()
	}
	if o.Resize != nil {
		go func() {
			for {
				select {
				case sz, ok := <-o.Resize:
					if !ok {
						return
					}
					var p [4]byte
					binary.BigEndian.PutUint16(p[0:], sz.Width)
					binary.BigEndian.PutUint16(p[2:], sz.Height)
					if send(frameResize, p[:]) != nil {
						return
					}
				case <-done:
					return
				}
			}
		}()
	}
	for {
		typ, p, err := readFrame(br)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("attach: %w", ctx.Err())
			}
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil // the monitor ended the session
			}
			return fmt.Errorf("attach: %w", err)
		}
		switch typ {
		case frameStdout:
			if o.Stdout != nil {
				if _, err := o.Stdout.Write(p); err != nil {
					return fmt.Errorf("attach: write stdout: %w", err)
				}
			}
		case frameStderr:
			if o.Stderr != nil {
				if _, err := o.Stderr.Write(p); err != nil {
					return fmt.Errorf("attach: write stderr: %w", err)
				}
			}
		case frameExit:
			return nil
		}
	}
}

// ReopenLog makes the monitor reopen the log path (after kubelet rotated it).
func ReopenLog(ctx context.Context, stateDir string) error {
	conn, err := dial(ctx, stateDir)
	if err != nil {
		return notRunning("reopen container log", stateDir, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := wire.WriteJSONLine(conn, request{Op: opReopen}); err != nil {
		return fmt.Errorf("reopen container log: %w", err)
	}
	var rep reply
	if err := json.NewDecoder(conn).Decode(&rep); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("reopen container log: %w", ctx.Err())
		}
		return notRunning("reopen container log", stateDir, err)
	}
	if rep.Error != "" {
		return fmt.Errorf("reopen container log: %s", rep.Error)
	}
	return nil
}
