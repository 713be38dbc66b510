package image

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/config"
)

// smallFs mounts a tmpfs of size bytes on a temp dir for the test.
func smallFs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.Itoa(size)); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// On a 4 MiB store, an image of 6 MiB fails with ResourceExhausted naming
// the filesystem, is not listed and leaves nothing; one of 1.5 MiB then
// fits.
func TestPullOutOfSpace(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "registry.k8s.io/big:1", testImage(t, "", testLayer(t, entry{name: "big", content: filler(21, 6<<20)})))
	reg.push(t, "registry.k8s.io/small:1", testImage(t, "", testLayer(t, entry{name: "small", content: filler(22, 1536<<10)})))
	cfg := mirrorConfig(reg)
	cfg.GCInterval = config.Duration{}
	root := smallFs(t, 4<<20)
	s := openService(t, cfg, root)
	ctx := context.Background()
	baseline := storeUsage(t, s)

	_, err := s.Pull(ctx, "registry.k8s.io/big:1", nil)
	if !errdefs.IsResourceExhausted(err) {
		t.Fatalf("pull of an image larger than the disk: %v, want ResourceExhausted", err)
	}
	t.Logf("error: %v", err)
	for _, want := range []string{"no space on tmpfs " + root, "retried after freeing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if imgs := s.List(); len(imgs) != 0 {
		t.Errorf("listed after the failed pull: %v", imgs[0].RepoTags)
	}
	if got := storeUsage(t, s); got != baseline {
		t.Errorf("store takes %d bytes after the failed pull, %d before", got, baseline)
	}
	checkConsistent(t, s)
	if _, err := s.Pull(ctx, "registry.k8s.io/small:1", nil); err != nil {
		t.Fatalf("pull of an image that fits, after the failed one: %v", err)
	}
	checkConsistent(t, s)
}

// Garbage nothing collected yet (a removed image, no background
// collector) stands in the way of a pull: the pull frees it when it runs
// out of room and succeeds on its retry.
func TestPullFreesGarbageAndRetries(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "registry.k8s.io/old:1", testImage(t, "", testLayer(t, entry{name: "old", content: filler(23, 2<<20)})))
	reg.push(t, "registry.k8s.io/new:1", testImage(t, "", testLayer(t, entry{name: "new", content: filler(24, 2<<20)})))
	cfg := mirrorConfig(reg)
	cfg.GCInterval = config.Duration{}
	s := openService(t, cfg, smallFs(t, 5<<20))
	var logBuf strings.Builder
	s.SetLogger(slog.New(slog.NewTextHandler(&logBuf, nil)))
	ctx := context.Background()
	if _, err := s.Pull(ctx, "registry.k8s.io/old:1", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "registry.k8s.io/old:1", nil); err != nil {
		t.Fatal(err)
	}
	// RunCollector is not running: old's 2 MiB layer is still on disk.
	if _, err := s.Pull(ctx, "registry.k8s.io/new:1", nil); err != nil {
		t.Fatalf("pull that fits once the removed image is freed: %v", err)
	}
	// The room was made by the retry, not found: the test means that.
	if !strings.Contains(logBuf.String(), "retrying once") {
		t.Errorf("the pull did not run out of room first; log:\n%s", logBuf.String())
	}
	checkConsistent(t, s)
}

// Two pulls sharing a base layer run at once on a small disk; the big one
// cannot fit. Whatever the interleaving, the store ends consistent (every
// listed image has all its files, nothing else is left), the big image is
// not listed, and the small one is there or pulls afterwards.
func TestConcurrentPullsOneOutOfSpace(t *testing.T) {
	reg := newTestRegistry(t)
	base := testLayer(t, entry{name: "base", content: filler(31, 512<<10)})
	reg.push(t, "registry.k8s.io/fits:1", testImage(t, "", base, testLayer(t, entry{name: "fits", content: filler(32, 512<<10)})))
	reg.push(t, "registry.k8s.io/huge:1", testImage(t, "", base, testLayer(t, entry{name: "huge", content: filler(33, 8<<20)})))
	cfg := mirrorConfig(reg)
	cfg.GCInterval = config.Duration{}
	root := smallFs(t, 6<<20)
	s := openService(t, cfg, root)
	ctx := context.Background()
	errs := make(chan error, 2)
	for _, ref := range []string{"registry.k8s.io/fits:1", "registry.k8s.io/huge:1"} {
		go func() {
			_, err := s.Pull(ctx, ref, nil)
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil && !errdefs.IsResourceExhausted(err) {
			t.Errorf("a pull failed otherwise than for room: %v", err)
		}
	}
	checkConsistent(t, s)
	if _, err := s.Resolve("registry.k8s.io/huge:1"); !errdefs.IsNotFound(err) {
		t.Errorf("the image too big for the disk resolves: %v", err)
	}
	if _, err := s.Pull(ctx, "registry.k8s.io/fits:1", nil); err != nil {
		t.Errorf("pull of the image that fits, afterwards: %v", err)
	}
	checkConsistent(t, s)
}
