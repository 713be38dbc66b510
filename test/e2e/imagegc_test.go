package e2e

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crid-dev/crid/test/images"
	digest "github.com/opencontainers/go-digest"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// storedImage is what ImageStatus' verbose info says of an image's files.
type storedImage struct {
	ID      string          `json:"id"`
	DiffIDs []digest.Digest `json:"diffIDs"`
	Blobs   []digest.Digest `json:"blobs"`
}

func imageInfo(t *testing.T, ref string) storedImage {
	t.Helper()
	st, err := h.img.ImageStatus(ctxT(t), &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: ref}, Verbose: true})
	if err != nil || st.Image == nil {
		t.Fatalf("ImageStatus %s: %v, %v", ref, st, err)
	}
	var img storedImage
	if err := json.Unmarshal([]byte(st.Info["info"]), &img); err != nil {
		t.Fatalf("ImageStatus %s info: %v", ref, err)
	}
	return img
}

// chains are the chain IDs of diffIDs: the names of the layers' snapshots.
func chains(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		out[i] = d
		if i > 0 {
			out[i] = digest.FromString(out[i-1].String() + " " + d.String())
		}
	}
	return out
}

// du is the allocated bytes under root, hard-linked files counted once.
func du(t *testing.T, root string) int64 {
	t.Helper()
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	var total int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Nlink > 1 && !fi.IsDir() {
			k := inode{st.Dev, st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += st.Blocks * 512
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// imageStoreDu is what crid's image store takes on disk, measured here.
func imageStoreDu(t *testing.T) int64 {
	root := filepath.Join(h.base, "root")
	return du(t, filepath.Join(root, "content")) + du(t, filepath.Join(root, "snapshots"))
}

func imageFsUsed(t *testing.T) int64 {
	t.Helper()
	fsi, err := h.img.ImageFsInfo(ctxT(t), &runtime.ImageFsInfoRequest{})
	if err != nil || len(fsi.ImageFilesystems) != 1 {
		t.Fatalf("ImageFsInfo: %v, %v", fsi, err)
	}
	return int64(fsi.ImageFilesystems[0].UsedBytes.GetValue())
}

// waitImageFs waits until ImageFsInfo reports what the disk holds and cond
// holds for it (crid caches the walk for up to 10s).
func waitImageFs(t *testing.T, what string, cond func(used int64) bool) int64 {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for {
		used, disk := imageFsUsed(t), imageStoreDu(t)
		if used == disk && cond(used) {
			return used
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: ImageFsInfo says %d bytes used, the disk %d\ncrid log:\n%s", what, used, disk, h.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestImageGC: nginx and httpd share the busybox layer. Removing nginx
// frees, in the background, exactly its own layers and blobs (ImageFsInfo
// drops by that much and agrees with the disk), and httpd still runs.
func TestImageGC(t *testing.T) {
	ctx := ctxT(t)
	pod := podConfig(t)
	podID := runPod(t, pod, "") // the pause image is in place before measuring
	pull(t, images.NginxE2E)
	pull(t, images.HttpdE2E)
	nginx, httpd := imageInfo(t, images.NginxE2E), imageInfo(t, images.HttpdE2E)
	httpdChains := chains(httpd.DiffIDs)
	if shared := chains(nginx.DiffIDs)[0]; shared != httpdChains[0] {
		t.Fatalf("nginx and httpd share no base layer (%s, %s)", shared, httpdChains[0])
	}
	others := map[digest.Digest]bool{}
	list, err := h.img.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range list.Images {
		if img.Id == nginx.ID {
			continue
		}
		info := imageInfo(t, img.Id)
		for _, c := range chains(info.DiffIDs) {
			others[c] = true
		}
		for _, b := range info.Blobs {
			others[b] = true
		}
	}
	root := filepath.Join(h.base, "root")
	var own int64
	for _, c := range chains(nginx.DiffIDs) {
		if !others[c] {
			own += du(t, filepath.Join(root, "snapshots", c.Encoded()))
		}
	}
	for _, b := range nginx.Blobs {
		if !others[b] {
			own += du(t, filepath.Join(root, "content", "blobs", "sha256", b.Encoded()))
		}
	}
	if own == 0 {
		t.Fatal("nginx has nothing of its own to free")
	}
	before := waitImageFs(t, "ImageFsInfo to agree with the disk", func(int64) bool { return true })

	if _, err := h.img.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: images.NginxE2E}}); err != nil {
		t.Fatal(err)
	}
	after := waitImageFs(t, "the background collection", func(used int64) bool { return used < before })
	t.Logf("ImageFsInfo: %d -> %d bytes; nginx's own layers and blobs: %d", before, after, own)
	if before-after != own {
		t.Errorf("ImageFsInfo dropped by %d bytes, want exactly nginx's own %d", before-after, own)
	}
	if !slices.ContainsFunc(readLines(t, h.logPath), func(l string) bool {
		return strings.Contains(l, `msg="image gc"`) && strings.Contains(l, "freed_bytes=")
	}) {
		t.Error("crid logged no collection")
	}
	for _, c := range httpdChains {
		if _, err := os.Stat(filepath.Join(root, "snapshots", c.Encoded(), "fs")); err != nil {
			t.Errorf("httpd lost its layer %s: %v", c, err)
		}
	}

	// httpd still runs: its own layer's file and the shared busybox's sh.
	cfg := containerConfig("httpd-after-gc", "sh", "-c", "test -x /usr/local/bin/httpd-foreground && exit 7")
	cfg.Image = &runtime.ImageSpec{Image: images.HttpdE2E}
	id := createStart(t, podID, pod, cfg)
	if st := waitExited(t, id, 30*time.Second); st.ExitCode != 7 {
		t.Errorf("container of httpd exited %d (%s), want 7", st.ExitCode, st.Message)
	}
}
