package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

func TestPrepareRootfs(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "registry.k8s.io/base:1", testImage(t, "", baseLayer(t), testLayer(t, entry{name: "etc/motd", content: "hi"})))
	s, _, _ := newTestService(t, mirrorConfig(reg))
	ctx := context.Background()
	img, err := s.Pull(ctx, "registry.k8s.io/base:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	rw, target := filepath.Join(t.TempDir(), "rw"), filepath.Join(t.TempDir(), "rootfs")
	if err := s.PrepareRootfs(ctx, img, rw, target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.ReleaseRootfs(ctx, rw, target) })
	// Idempotent.
	if err := s.PrepareRootfs(ctx, img, rw, target); err != nil {
		t.Fatal(err)
	}
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(target))
	if err != nil || len(mounts) != 1 || mounts[0].FSType != "overlay" {
		t.Fatalf("mounts at target = %+v, %v", mounts, err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "etc", "motd")); err != nil || string(b) != "hi" {
		t.Errorf("merged etc/motd = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(target, "bin", "sh")); err != nil {
		t.Errorf("base layer file missing from merged tree: %v", err)
	}
	// Writes land in the upper dir and are counted.
	if err := os.WriteFile(filepath.Join(target, "newfile"), make([]byte, 10000), 0o644); err != nil {
		t.Fatal(err)
	}
	bytes, inodes, err := WritableUsage(rw)
	if err != nil || bytes < 10000 || inodes < 2 {
		t.Errorf("WritableUsage = %d bytes, %d inodes, %v", bytes, inodes, err)
	}
	if err := s.ReleaseRootfs(ctx, rw, target); err != nil {
		t.Fatal(err)
	}
	if m, _ := mountinfo.Mounted(target); m {
		t.Error("target still mounted after release")
	}
	if _, err := os.Stat(rw); !os.IsNotExist(err) {
		t.Errorf("rw dir kept: %v", err)
	}
	// Releasing again is fine.
	if err := s.ReleaseRootfs(ctx, rw, target); err != nil {
		t.Errorf("second release: %v", err)
	}
}

func TestPrepareRootfsBusyTargetLazyUnmount(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "registry.k8s.io/base:1", testImage(t, "", baseLayer(t)))
	s, _, _ := newTestService(t, mirrorConfig(reg))
	ctx := context.Background()
	img, err := s.Pull(ctx, "registry.k8s.io/base:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	rw, target := filepath.Join(t.TempDir(), "rw"), filepath.Join(t.TempDir(), "rootfs")
	if err := s.PrepareRootfs(ctx, img, rw, target); err != nil {
		t.Fatal(err)
	}
	// An open directory fd on the mount keeps it busy.
	f, err := os.Open(filepath.Join(target, "etc"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := s.ReleaseRootfs(ctx, rw, target); err != nil {
		t.Fatal(err)
	}
	if m, _ := mountinfo.Mounted(target); m {
		t.Error("busy target still mounted")
	}
}

func TestPrepareRootfsNoLayers(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "registry.k8s.io/scratch:1", testImage(t, ""))
	s, _, _ := newTestService(t, mirrorConfig(reg))
	ctx := context.Background()
	img, err := s.Pull(ctx, "registry.k8s.io/scratch:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.DiffIDs) != 0 {
		t.Fatalf("scratch image has %d layers", len(img.DiffIDs))
	}
	rw, target := filepath.Join(t.TempDir(), "rw"), filepath.Join(t.TempDir(), "rootfs")
	if err := s.PrepareRootfs(ctx, img, rw, target); err != nil {
		t.Fatal(err)
	}
	defer s.ReleaseRootfs(ctx, rw, target)
	if err := os.WriteFile(filepath.Join(target, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.emptyDir(), "x")); !os.IsNotExist(err) {
		t.Errorf("write reached the shared empty lower dir: %v", err)
	}
}

// TestPrepareRootfsManyLayers mounts an image whose lowerdir list does not
// fit in one page of mount options.
func TestPrepareRootfsManyLayers(t *testing.T) {
	reg := newTestRegistry(t)
	img := empty.Image
	var n int
	layers := 60
	for i := range layers {
		img = appendLayer(t, img, testLayer(t, entry{name: fmt.Sprintf("f%02d", i), content: fmt.Sprint(i)}))
		n++
	}
	reg.push(t, "registry.k8s.io/tall:1", img)
	s, _, _ := newTestService(t, mirrorConfig(reg))
	ctx := context.Background()
	rec, err := s.Pull(ctx, "registry.k8s.io/tall:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	var optLen int
	for _, c := range chainIDs(rec.DiffIDs) {
		optLen += len(s.snapshotFs(c)) + 1
	}
	if optLen < unix.Getpagesize() {
		t.Fatalf("test does not exceed a page (%d bytes of lowerdirs)", optLen)
	}
	rw, target := filepath.Join(t.TempDir(), "rw"), filepath.Join(t.TempDir(), "rootfs")
	if err := s.PrepareRootfs(ctx, rec, rw, target); err != nil {
		t.Fatal(err)
	}
	defer s.ReleaseRootfs(ctx, rw, target)
	entries, err := os.ReadDir(target)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "f") {
			files = append(files, e.Name())
		}
	}
	if len(files) != n {
		t.Errorf("merged tree has %d of %d layer files", len(files), n)
	}
}
