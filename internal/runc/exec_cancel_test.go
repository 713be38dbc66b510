package runc

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// startSleep starts `sleep 60` (as a child of the test) and kills it when
// the test ends.
func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// runnerOf starts a shell that starts sleep (depth 1) or a shell running
// sleep (depth 2) and writes its pid to a pid file, as runc exec does; it
// returns the shell and the pid file.
func runnerOf(t *testing.T, depth int) (*exec.Cmd, string) {
	t.Helper()
	pidPath := filepath.Join(t.TempDir(), "pid")
	script := `sleep 60 & echo $! > "$1.tmp"; mv "$1.tmp" "$1"; wait`
	if depth == 2 {
		script = `sh -c 'sleep 60 & echo $! > "$1.tmp"; mv "$1.tmp" "$1"; wait' sh "$1" & wait`
	}
	cmd := exec.Command("sh", "-c", script, "sh", pidPath)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for ReadPidFile(pidPath) <= 0 {
		if time.Now().After(deadline) {
			t.Fatal("no pid file")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cmd, pidPath
}

func waitDead(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKillExecProcess: a cancelled exec kills the process its pid file
// names when runc (or the helper) is its parent or grandparent, and never
// a process the pid names that is not theirs: a pid reused after the exec'd
// process exited (finding 6d).
func TestKillExecProcess(t *testing.T) {
	for _, depth := range []int{1, 2} {
		runner, pidPath := runnerOf(t, depth)
		pid := ReadPidFile(pidPath)
		if err := killExecProcess(pidPath, runner.Process.Pid); err != nil {
			t.Fatalf("depth %d: %v", depth, err)
		}
		waitDead(t, pid)
	}

	// The pid file now names a process that is not the runner's: what a
	// reused pid looks like.
	runner, pidPath := runnerOf(t, 1)
	stranger := startSleep(t)
	if err := os.WriteFile(pidPath, []byte(strconv.Itoa(stranger.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := killExecProcess(pidPath, runner.Process.Pid); err == nil {
		t.Error("killExecProcess signalled a process that is not the exec's")
	}
	time.Sleep(50 * time.Millisecond)
	if !alive(stranger.Process.Pid) {
		t.Error("the unrelated process was killed")
	}

	// No pid file yet: nothing to kill but runc.
	if err := killExecProcess(filepath.Join(t.TempDir(), "none"), runner.Process.Pid); err == nil {
		t.Error("killExecProcess without a pid file succeeded")
	}
}

// TestExecTTYCancelHungRuntime: a terminal exec whose runtime never
// returns, even once its process is killed, ends at the cancellation all
// the same, with no drain time configured: the runtime is killed too.
func TestExecTTYCancelHungRuntime(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "hung-exec")
	// The process is the runtime's child (its pid in the pid file); the
	// runtime outlives it for ever.
	script := "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = --pid-file ] && f=$2; shift; done\n" +
		"sleep 60 & echo $! > \"$f\"; echo $$ > " + filepath.Join(dir, "runtime.pid") + "; wait $!; exec sleep 600\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Runtime{Name: "hung", Path: bin, Root: dir}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := r.Exec(ctx, "c1", &specs.Process{Args: []string{"sleep", "60"}}, ExecIO{Terminal: true, Stdout: io.Discard}, 0)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("cancelled exec = %v, want the context's DeadlineExceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a terminal exec whose runtime hangs did not end at its cancellation")
	}
	if pid := ReadPidFile(filepath.Join(dir, "runtime.pid")); pid <= 0 || alive(pid) {
		t.Errorf("the hung runtime (pid %d) is still there", pid)
	}
}
