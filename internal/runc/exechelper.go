package runc

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"time"

	"github.com/crid-dev/crid/internal/pidfd"
	"golang.org/x/sys/unix"
)

// ExecHelperCommand is the first argument that makes a helper binary
// (crid-monitor) run ExecHelperMain.
//
// Why a helper: in the foreground without a terminal, runc exec copies the
// process's output through pipes of its own and does not exit before they
// close, so a background child of the exec'd process (`sh -c 'daemon &'`)
// holding stdout keeps runc, and the exec, alive for that child's whole
// life. The helper runs `runc exec --detach`, which hands our stdio to the
// process directly, and, being a child subreaper, inherits and reaps the
// process when runc exits. It exits with the process's status; the caller's
// drain deadline then bounds how long output is still read.
const ExecHelperCommand = "runtime-exec"

// ExecHelperMain is the helper's program (args after ExecHelperCommand):
//
//	--runtime PATH [--root DIR] --log FILE --process FILE --pid-file FILE ID
//
// It exits with the process's exit code (128+signal if killed), or with
// runtime's own status if `runtime exec` failed (its JSON log says why).
func ExecHelperMain(args []string) int {
	fs := flag.NewFlagSet(ExecHelperCommand, flag.ContinueOnError)
	rt := fs.String("runtime", "", "OCI runtime binary")
	root := fs.String("root", "", "runtime state root")
	logPath := fs.String("log", "", "runtime log file")
	procPath := fs.String("process", "", "process spec file")
	pidPath := fs.String("pid-file", "", "pid file")
	if err := fs.Parse(args); err != nil {
		return 125
	}
	if *rt == "" || *procPath == "" || *pidPath == "" || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "crid exec helper: --runtime, --process, --pid-file and a container id are required")
		return 125
	}
	id := fs.Arg(0)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "crid exec helper: become subreaper:", err)
		return 125
	}
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, unix.SIGCHLD)
	// Signals meant for the exec are passed on once the process exists.
	fwd := make(chan os.Signal, 4)
	signal.Notify(fwd, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT)

	var rargs []string
	if *root != "" {
		rargs = append(rargs, "--root", *root)
	}
	if *logPath != "" {
		rargs = append(rargs, "--log", *logPath)
	}
	rargs = append(rargs, "--log-format", "json", "exec", "--detach", "--process", *procPath, "--pid-file", *pidPath, id)
	cmd := exec.Command(*rt, rargs...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "crid exec helper:", err)
		return 125
	}
	pid := ReadPidFile(*pidPath)
	if pid <= 0 {
		fmt.Fprintln(os.Stderr, "crid exec helper: runtime wrote no pid")
		return 125
	}
	// Signals go through a pidfd: adopted by us, the process keeps its pid
	// until we reap it, but should it not have become our child, its pid
	// could go to another process once it exits.
	pf, err := pidfd.Open(pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crid exec helper: process vanished without being reaped here:", err)
		return 255
	}
	defer pf.Close()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		for {
			var ws unix.WaitStatus
			p, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || p <= 0 {
				break
			}
			if p == pid {
				if ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return ws.ExitStatus()
			}
		}
		select {
		case <-chld:
		case s := <-fwd:
			_ = pidfdSignal(pf, s.(unix.Signal)) // fails only once it has exited
		case <-tick.C:
			// Should the process not have become our child, do not wait
			// for it forever.
			if err := pidfdSignal(pf, 0); errors.Is(err, unix.ESRCH) {
				fmt.Fprintln(os.Stderr, "crid exec helper: process vanished without being reaped here")
				return 255
			}
		}
	}
}
