package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestImageFsInfoContainerFilesystems: ImageFsInfo's ContainerFilesystems
// is what the containers' writable layers use, apart from the image
// store: a container that writes 16 MiB shows up there (after the 10s the
// figure is cached), not in ImageFilesystems.
func TestImageFsInfoContainerFilesystems(t *testing.T) {
	podID, pod := isoPod(t, nil)
	id := createStart(t, podID, pod, containerConfig("writer", "sleep", "600"))
	fs := func() (img, ctr *runtime.FilesystemUsage) {
		r, err := h.img.ImageFsInfo(ctxT(t), &runtime.ImageFsInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.ImageFilesystems) != 1 || len(r.ContainerFilesystems) != 1 {
			t.Fatalf("ImageFsInfo: %d image and %d container filesystems, want 1 and 1", len(r.ImageFilesystems), len(r.ContainerFilesystems))
		}
		return r.ImageFilesystems[0], r.ContainerFilesystems[0]
	}
	img0, ctr0 := fs()
	if got, want := ctr0.FsId.Mountpoint, filepath.Join(h.base, "root", "containers"); got != want {
		t.Errorf("container filesystem %q, want %q", got, want)
	}
	if !strings.HasPrefix(img0.FsId.Mountpoint, filepath.Join(h.base, "root")) || img0.FsId.Mountpoint == ctr0.FsId.Mountpoint {
		t.Errorf("image filesystem %q: want the image store, apart from %q", img0.FsId.Mountpoint, ctr0.FsId.Mountpoint)
	}
	must(t, id, "dd if=/dev/urandom of=/big bs=1M count=16 2>/dev/null && sync")
	deadline := time.Now().Add(25 * time.Second)
	for {
		img, ctr := fs()
		grew := ctr.UsedBytes.Value - ctr0.UsedBytes.Value
		if ctr.UsedBytes.Value >= ctr0.UsedBytes.Value && grew >= 16<<20 {
			if img.UsedBytes.Value > img0.UsedBytes.Value+1<<20 {
				t.Errorf("image store grew by %d bytes with the container's write", img.UsedBytes.Value-img0.UsedBytes.Value)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container filesystem used %d bytes, %d before a 16 MiB write", ctr.UsedBytes.Value, ctr0.UsedBytes.Value)
		}
		time.Sleep(time.Second)
	}
}
