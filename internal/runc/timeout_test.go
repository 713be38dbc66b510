package runc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCommandTimeout: a runtime that hangs is killed at Timeout, and the
// error is a DeadlineExceeded naming the config key; the caller's own
// deadline is reported as itself.
func TestCommandTimeout(t *testing.T) {
	dir := t.TempDir()
	// A runtime that never answers, as a wedged hook would leave it; its
	// pid file shows whether it was killed.
	bin := filepath.Join(dir, "hung-runtime")
	pidFile := filepath.Join(dir, "pid")
	script := "#!/bin/sh\necho $$ > " + pidFile + "\nexec sleep 600\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Runtime{Name: "hung", Path: bin, Root: dir, Timeout: 300 * time.Millisecond}
	start := time.Now()
	_, err := r.State(context.Background(), "c1")
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "runtime.command_timeout") {
		t.Fatalf("State of a hung runtime = %v, want DeadlineExceeded naming runtime.command_timeout", err)
	}
	if took > 3*time.Second {
		t.Errorf("State of a hung runtime returned after %v, want about 300ms", took)
	}
	if pid := ReadPidFile(pidFile); pid <= 0 || alive(pid) {
		t.Errorf("the hung runtime (pid %d) was not killed and reaped", pid)
	}

	r.Timeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = r.Kill(ctx, "c1", 15, false)
	if !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "runtime.command_timeout") {
		t.Errorf("Kill past the caller's deadline = %v, want the caller's DeadlineExceeded", err)
	}
}

// TestCommandTimeoutKillsHooks: a runtime command killed at its bound
// takes its children with it (a hook that hangs, in the runtime's process
// group), not only itself.
func TestCommandTimeoutKillsHooks(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "hooked-runtime")
	hookPid := filepath.Join(dir, "hook.pid")
	// The "hook" is a child that hangs; the runtime waits for it.
	script := "#!/bin/sh\nsleep 600 &\necho $! > " + hookPid + "\nwait\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Runtime{Name: "hooked", Path: bin, Root: dir, Timeout: 300 * time.Millisecond}
	err := r.Start(context.Background(), "c1")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start through a runtime whose hook hangs = %v, want DeadlineExceeded", err)
	}
	pid := ReadPidFile(hookPid)
	if pid <= 0 {
		t.Fatal("the runtime's hook left no pid")
	}
	deadline := time.Now().Add(3 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the hook (pid %d) of the killed runtime still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
