package runc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/pidfd"
	"golang.org/x/sys/unix"
)

// deadPid is the pid of a process that has exited and been reaped.
func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestStartFifo(t *testing.T) {
	tests := []struct {
		name    string
		writer  func(path string) // plays the container's init
		pid     func(t *testing.T) int
		wantErr error // nil: the start succeeds
	}{
		{
			name:    "init died before opening the fifo",
			pid:     deadPid,
			wantErr: errdefs.ErrFailedPrecondition,
		},
		{
			name: "init opened the fifo but died without writing",
			writer: func(path string) {
				f, err := os.OpenFile(path, os.O_WRONLY, 0)
				if err == nil {
					f.Close()
				}
			},
			// The pid stays alive: only the writer that came and went
			// without the byte can tell that the init failed.
			pid:     func(t *testing.T) int { return os.Getpid() },
			wantErr: errdefs.ErrFailedPrecondition,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			r := &Runtime{Name: "test", Path: "/bin/false", Root: root}
			path := filepath.Join(root, "c1", execFifo)
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
			if tt.writer != nil {
				go tt.writer(path)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			calls := 0
			_, err := r.StartFifoThen(ctx, "c1", tt.pid(t), func() { calls++ })
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("StartFifo = %v, want %v", err, tt.wantErr)
				}
				if calls != 0 {
					t.Errorf("a failed start called started %d times", calls)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("fifo still there after start: %v", err)
			}
		})
	}
}

// TestStartFifoWaitsForExec plays runc 1.1.12 and later: the init writes
// its byte, closes the FIFO, and only then (after closing its fds and
// running startContainer hooks) execs the container's process.
// StartFifoThen returns at the release, while the hooks still run (here
// they wait for the test to open a gate), and its execd closes once the
// container's process runs, not at the FIFO's end.
func TestStartFifoWaitsForExec(t *testing.T) {
	for _, tt := range []struct {
		name  string
		hooks bool // the init waits for the gate between the FIFO and the exec
	}{
		{"exec right after the fifo", false},
		{"hooks before the exec", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			r := &Runtime{Name: "test", Path: "/bin/false", Root: root}
			path := filepath.Join(root, "c1", execFifo)
			gate := filepath.Join(root, "gate")
			for _, p := range []string{path, gate} {
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := unix.Mkfifo(p, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			before := ":"
			if tt.hooks {
				before = `read x < "$2"`
			}
			init := exec.Command("sh", "-c", `exec 3>"$1"; printf 0 >&3; exec 3>&-; `+before+`; exec sleep 30`, "sh", path, gate)
			if err := init.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = init.Process.Kill(); _ = init.Wait() }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// started runs once, after the release: the FIFO is gone.
			calls := 0
			started := func() {
				calls++
				if _, err := os.Stat(path); !os.IsNotExist(err) {
					t.Errorf("started called before the release: fifo %v", err)
				}
			}
			execd, err := r.StartFifoThen(ctx, "c1", init.Process.Pid, started)
			if err != nil {
				t.Fatal(err)
			}
			if calls != 1 {
				t.Errorf("started called %d times, want 1", calls)
			}
			if tt.hooks {
				select {
				case <-execd:
					t.Fatal("execd closed while the init still ran its hooks")
				default:
				}
				if err := os.WriteFile(gate, []byte("go\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			<-execd
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", init.Process.Pid))
			if err != nil || string(b) != "sleep\x0030\x00" {
				t.Errorf("once execd closed the init runs %q (%v), want the container's process, sleep 30", b, err)
			}
		})
	}
}

func TestStartFifoFallsBackWithoutFifo(t *testing.T) {
	// No fifo: the runtime's own start command runs (a script recording
	// its arguments stands in for runc).
	dir := t.TempDir()
	rt := filepath.Join(dir, "fake-runc")
	args := filepath.Join(dir, "args")
	if err := os.WriteFile(rt, []byte("#!/bin/sh\necho \"$@\" > "+args+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Runtime{Name: "test", Path: rt, Root: t.TempDir()}
	if err := r.StartFifo(context.Background(), "c1", os.Getpid()); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(args)
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(got)), "start c1") {
		t.Fatalf("runtime ran with %q (%v), want ... start c1", got, err)
	}
}

func TestCheckInit(t *testing.T) {
	self := os.Getpid()
	start, err := pidfd.StartTime(self)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file, record string
		wantErr            bool
	}{
		{"runc, this init", "state.json", fmt.Sprintf(`{"id":"c","init_process_pid":%d,"init_process_start":%d}`, self, start), false},
		{"runc, another pid", "state.json", fmt.Sprintf(`{"init_process_pid":%d,"init_process_start":%d}`, self+1, start), true},
		{"runc, pid reused", "state.json", fmt.Sprintf(`{"init_process_pid":%d,"init_process_start":%d}`, self, start+1), true},
		{"crun, this init", "status", fmt.Sprintf(`{"pid":%d,"process-start-time":%d}`, self, start), false},
		{"crun, pid reused", "status", fmt.Sprintf(`{"pid":%d,"process-start-time":%d}`, self, start+7), true},
		{"garbled record", "state.json", `{"init_process_pid":`, true},
		{"no record", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Runtime{Root: t.TempDir()}
			if tt.file != "" {
				if err := os.MkdirAll(filepath.Join(r.Root, "c"), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(r.Root, "c", tt.file), []byte(tt.record), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := r.checkInit("c", self)
			if (err != nil) != tt.wantErr {
				t.Fatalf("checkInit = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && strings.Contains(tt.name, "pid") && !errors.Is(err, errdefs.ErrFailedPrecondition) {
				t.Fatalf("checkInit = %v, want FailedPrecondition", err)
			}
		})
	}
}

// TestStartFifoInitExitsAtOnce plays a container whose process exits right
// after its release (kubelet's `id -u` specs): StartFifo must check the
// runtime's record of the init before it opens the FIFO, because opening
// the read side is what releases the init. Checking afterwards raced with
// the init's exit and failed the start of a container that had run ("init
// N is gone"). The record here is a FIFO too, filled only once the init
// has exited (or after a second): a check made after the release reads it
// then, every time, while a check made before blocks until the second is up.
func TestStartFifoInitExitsAtOnce(t *testing.T) {
	root := t.TempDir()
	r := &Runtime{Name: "test", Path: "/bin/false", Root: root}
	path := filepath.Join(root, "c1", execFifo)
	statePath := filepath.Join(root, "c1", "state.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, statePath} {
		if err := unix.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The init: blocks opening the FIFO for writing, writes its byte and
	// exits at once; reaped as soon as it exits, as the monitor (its
	// subreaper) does.
	init := exec.Command("sh", "-c", `exec 3>"$1"; printf 0 >&3; exit 0`, "sh", path)
	if err := init.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	var waitErr error
	go func() { waitErr = init.Wait(); close(reaped) }()
	pid := init.Process.Pid
	start, err := pidfd.StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	stateWritten := make(chan error, 1)
	go func() {
		select {
		case <-reaped:
		case <-time.After(time.Second):
		}
		state := fmt.Sprintf(`{"init_process_pid":%d,"init_process_start":%d}`, pid, start)
		stateWritten <- os.WriteFile(statePath, []byte(state), 0o600)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = r.StartFifo(ctx, "c1", pid)
	<-reaped
	if waitErr != nil {
		t.Fatalf("init: %v", waitErr)
	}
	if werr := <-stateWritten; werr != nil {
		t.Fatalf("write the runtime's record: %v", werr)
	}
	if err != nil {
		t.Fatalf("StartFifo of an init that exits once released = %v, want success", err)
	}
}
