package diskfull

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
)

func TestWrap(t *testing.T) {
	dir := t.TempDir()
	full := fmt.Errorf("write blob: %w", &fs.PathError{Op: "write", Path: dir + "/missing/file", Err: syscall.ENOSPC})
	err := Wrap(full, "/nowhere")
	if !errdefs.IsResourceExhausted(err) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Wrap = %v: not ResourceExhausted wrapping ENOSPC", err)
	}
	if !strings.Contains(err.Error(), "holding "+dir+"/missing/file") || !strings.Contains(err.Error(), "free") {
		t.Errorf("Wrap = %q: does not name the path and free space", err)
	}
	if again := Wrap(err, "/"); again != err {
		t.Errorf("Wrap of a wrapped error changed it: %v", again)
	}
	other := errors.New("permission denied")
	if Wrap(other, "/") != other {
		t.Error("Wrap changed an error that is not a full disk")
	}
	if !Is(errors.New("runc create: write /x: no space left on device")) {
		t.Error("Is misses ENOSPC flattened into text")
	}
	if Is(nil) {
		t.Error("Is(nil)")
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 14 << 20: "14.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
