package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestRemoveContainerFreesItsFiles: RemoveContainer takes the container's
// directories (with the writable layer's files) away at once and deletes
// them in the background; nothing stays behind.
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
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := append(entries(t, filepath.Join(h.base, "root", "trash")), entries(t, filepath.Join(h.base, "state", "trash"))...)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trash still holds %v 30s after the removal", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
