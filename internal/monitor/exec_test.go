package monitor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crid-dev/crid/internal/runc"
)

// Exec and terminal tests: runc.Runtime.Exec against containers run by
// the monitor.

// idleContainer runs `cat` on an open stdin: it never exits by itself and
// leaves no other process around.
func idleContainer(t *testing.T) *testCtr {
	o := prepare(t, []string{"cat"}, nil)
	o.Stdin = true
	return spawn(t, o, true)
}

func execProc(args ...string) *specs.Process {
	return &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}}
}

func TestExec(t *testing.T) {
	c := idleContainer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var out, errOut bytes.Buffer
	code, err := c.rt.Exec(ctx, c.id, execProc("sh", "-c", "echo out; echo err >&2; exit 5"),
		runc.ExecIO{Stdout: &out, Stderr: &errOut}, time.Second)
	if err != nil || code != 5 {
		t.Errorf("Exec = %d, %v; want 5, nil", code, err)
	}
	if out.String() != "out\n" || errOut.String() != "err\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errOut.String())
	}

	out.Reset()
	code, err = c.rt.Exec(ctx, c.id, execProc("cat"), runc.ExecIO{Stdin: strings.NewReader("abc"), Stdout: &out}, time.Second)
	if err != nil || code != 0 || out.String() != "abc" {
		t.Errorf("Exec cat = %d, %v, %q; want 0, nil, abc", code, err, out.String())
	}

	// Failures of runc itself are errors, not exit codes.
	code, err = c.rt.Exec(ctx, c.id, execProc("/no/such/binary"), runc.ExecIO{Stdout: io.Discard, Stderr: io.Discard}, time.Second)
	if err == nil || !strings.Contains(err.Error(), "/no/such/binary") {
		t.Errorf("Exec of a missing binary = %d, %v; want runc's error", code, err)
	}
	code, err = c.rt.Exec(ctx, "cmt-no-such-container", execProc("true"), runc.ExecIO{}, time.Second)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Exec in a missing container = %d, %v; want an error", code, err)
	}

	// A process killed by a signal: 128+signal.
	code, err = c.rt.Exec(ctx, c.id, execProc("sh", "-c", "kill -9 $$"), runc.ExecIO{}, time.Second)
	if err != nil || code != 137 {
		t.Errorf("Exec killed by SIGKILL = %d, %v; want 137", code, err)
	}

	// A stopped container: runc refuses.
	c.rt.Kill(ctx, c.id, 9, false)
	c.wait(10 * time.Second)
	code, err = c.rt.Exec(ctx, c.id, execProc("true"), runc.ExecIO{}, time.Second)
	if err == nil {
		t.Errorf("Exec in a stopped container = %d, nil; want an error", code)
	}
}

func TestExecBackgroundChild(t *testing.T) {
	c := idleContainer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	code, err := c.rt.Exec(ctx, c.id, execProc("sh", "-c", "sleep 30 & echo started"),
		runc.ExecIO{Stdout: &out, Stderr: io.Discard}, 500*time.Millisecond)
	took := time.Since(start)
	if err != nil || code != 0 || out.String() != "started\n" {
		t.Errorf("Exec = %d, %v, %q; want 0, nil, started", code, err, out.String())
	}
	if took > 5*time.Second {
		t.Errorf("Exec took %v with a background child holding stdout; drain is 500ms", took)
	}
}

func TestExecCancel(t *testing.T) {
	c := idleContainer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.rt.Exec(ctx, c.id, execProc("sleep", "30"), runc.ExecIO{}, time.Second)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Exec after ctx end: %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("cancelled Exec took %v", took)
	}
	// The exec'd sleep is gone from the container (pidof fails).
	bg, bcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer bcancel()
	var out bytes.Buffer
	code, err := c.rt.Exec(bg, c.id, execProc("pidof", "sleep"), runc.ExecIO{Stdout: &out}, time.Second)
	if err != nil || code != 1 {
		t.Errorf("pgrep sleep = %d, %v, %q; want 1 (no sleep left)", code, err, out.String())
	}
}

func TestExecTTY(t *testing.T) {
	c := idleContainer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resize := make(chan runc.Size, 2)
	resize <- runc.Size{Width: 100, Height: 30}
	pr, pw := io.Pipe()
	defer pw.Close()
	var out lockedBuffer
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := c.rt.Exec(ctx, c.id, execProc("sh", "-c", "tty; stty size; read x; stty size; echo got:$x; exit 2"),
			runc.ExecIO{Stdin: pr, Stdout: &out, Terminal: true, Resize: resize}, time.Second)
		done <- result{code, err}
	}()
	waitFor(t, "first size", 10*time.Second, func() bool { return strings.Contains(out.String(), "30 100") })
	resize <- runc.Size{Width: 120, Height: 40}
	// Give runc time to relay the new size before the shell reads it.
	time.Sleep(300 * time.Millisecond)
	pw.Write([]byte("hi\n"))
	r := <-done
	if r.err != nil || r.code != 2 {
		t.Errorf("Exec = %d, %v; want 2, nil", r.code, r.err)
	}
	got := out.String()
	for _, want := range []string{"/dev/pts/", "30 100", "40 120", "got:hi"} {
		if !strings.Contains(got, want) {
			t.Errorf("tty output lacks %q: %q", want, got)
		}
	}
}

func TestTerminalContainer(t *testing.T) {
	o := prepare(t, []string{"sh", "-c", "tty; read x; stty size; echo tty:$x; exit 6"}, func(s *specs.Spec) {
		s.Process.Terminal = true
	})
	o.Terminal, o.Stdin, o.StdinOnce = true, true, true
	c := spawn(t, o, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resize := make(chan runc.Size, 1)
	pr, pw := io.Pipe()
	defer pw.Close()
	var out lockedBuffer
	done := make(chan error, 1)
	go func() { done <- Attach(ctx, c.stateDir, AttachOptions{Stdin: pr, Stdout: &out, Resize: resize}) }()
	waitFor(t, "tty line in the log", 10*time.Second, func() bool { return len(readLog(t, c.logPath)) > 0 })
	if lines := readLog(t, c.logPath); !hasLine(lines, "stdout", "F", "/dev/pts/0") {
		t.Fatalf("log does not start with the tty name:\n%s", logText(lines))
	}
	resize <- runc.Size{Width: 90, Height: 20}
	time.Sleep(200 * time.Millisecond)
	pw.Write([]byte("yo\n"))
	e := c.wait(10 * time.Second)
	if e.Code != 6 {
		t.Errorf("exit = %+v, want 6", e)
	}
	if err := <-done; err != nil {
		t.Errorf("Attach: %v", err)
	}
	lines := readLog(t, c.logPath)
	for _, want := range []string{"20 90", "tty:yo"} {
		if !hasLine(lines, "stdout", "F", want) {
			t.Errorf("log lacks %q:\n%s", want, logText(lines))
		}
	}
	for _, l := range lines {
		if l.stream != "stdout" || strings.HasSuffix(l.content, "\r") {
			t.Errorf("tty log line %q: want stdout without CR", l.text)
		}
	}
	if !strings.Contains(out.String(), "tty:yo") {
		t.Errorf("attach output %q lacks tty:yo", out.String())
	}
}
