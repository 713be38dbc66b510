package e2e

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestRemoveContainerFreesItsFiles: RemoveContainer takes the container's
// directories (with the writable layer's files) away at once and deletes
// them in the background; nothing stays behind, not even after a crash.
func TestRemoveContainerFreesItsFiles(t *testing.T) {
	pull(t, busybox)
	pod := podConfig(t)
	podID := runPod(t, pod, "")
	id := createStart(t, podID, pod, containerConfig("writer", "sh", "-c", "dd if=/dev/zero of=/big bs=1M count=32 2>/dev/null; sleep 300"))
	if r := execSync(t, id, 30, "sh", "-c", "for i in $(seq 200); do [ \"$(stat -c %s /big 2>/dev/null)\" = 33554432 ] && exit 0; sleep 0.1; done; exit 1"); r.ExitCode != 0 {
		t.Fatal("the container did not write /big")
	}
	ctrDir := filepath.Join(h.base, "root", "containers", id)
	bundle := filepath.Join(h.base, "state", "containers", id)
	for _, d := range []string{ctrDir, bundle} {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("before removal: %v", err)
		}
	}
	if _, err := h.rt.RemoveContainer(ctxT(t), &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{ctrDir, bundle} {
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Errorf("%s still there after RemoveContainer: %v", d, err)
		}
	}
	trashDir := filepath.Join(h.base, "root", "trash")
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := entries(t, trashDir)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trash still holds %v 30s after the removal", left)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// What a crash leaves in the trash is emptied at the next start.
	leftover := filepath.Join(trashDir, "crashed-"+randHex(4), "rw", "upper")
	if err := os.MkdirAll(leftover, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(leftover, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.stop(syscall.SIGKILL)
	if err := h.start(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for len(entries(t, trashDir)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("trash still holds %v 30s after a restart", entries(t, trashDir))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
