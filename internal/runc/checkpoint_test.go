package runc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeCheckpointRuntime is a runtime whose checkpoint hangs, with a child
// of its own standing in for criu, and that reports the container paused
// (as a killed criu leaves it) until it is resumed.
func fakeCheckpointRuntime(t *testing.T) (*Runtime, string) {
	t.Helper()
	dir := t.TempDir()
	script := `#!/bin/sh
d=` + dir + `
for a; do last=$a; done
case " $* " in
*" checkpoint "*)
	echo "$*" > $d/args
	sleep 600 & echo $! > $d/criu.pid
	wait ;;
*" state "*)
	if [ -e $d/resumed ]; then s=running; else s=paused; fi
	echo "{\"status\":\"$s\",\"pid\":1}" ;;
*" resume "*)
	echo "$last" > $d/resumed ;;
esac
`
	path := filepath.Join(dir, "runc")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return &Runtime{Name: "fake", Path: path, Root: dir}, dir
}

func TestCheckpointTimeoutKillsCriuAndThaws(t *testing.T) {
	r, dir := fakeCheckpointRuntime(t)
	// As crid is: criu, orphaned by runc's death, comes to this process
	// and must be reaped by Checkpoint.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := r.Checkpoint(ctx, "c1", CheckpointOptions{ImagePath: "/img", WorkPath: "/work"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Checkpoint = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Checkpoint took %v after its deadline", d)
	}
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	for _, want := range []string{"checkpoint --leave-running --image-path /img --work-path /work c1", "--root " + dir} {
		if !strings.Contains(string(args), want) {
			t.Errorf("runtime args %q lack %q", args, want)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "criu.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 {
		t.Fatalf("criu.pid = %q", b)
	}
	// The stand-in for criu was killed with runc, not left running.
	deadline := time.Now().Add(5 * time.Second)
	for unix.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("criu stand-in %d still alive after the checkpoint was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "resumed")); err != nil || strings.TrimSpace(string(got)) != "c1" {
		t.Errorf("the frozen container was not resumed: %q %v", got, err)
	}
}

func TestCheckpointFailureReportsRuntimeError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "runc")
	script := "#!/bin/sh\necho '{\"level\":\"error\",\"msg\":\"criu failed: type NOTIFY errno 0\"}' >&2\nexit 1\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Runtime{Name: "fake", Path: path}
	err := r.Checkpoint(context.Background(), "c1", CheckpointOptions{ImagePath: "/img", WorkPath: "/work"})
	var re *Error
	if !errors.As(err, &re) || !strings.Contains(re.Message, "criu failed") {
		t.Errorf("Checkpoint = %v, want the runtime's error text", err)
	}
}
