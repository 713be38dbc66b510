package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

func TestMountImageVolume(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "registry.k8s.io/one:1", testImage(t, "", baseLayer(t)))
	reg.push(t, "registry.k8s.io/two:1", testImage(t, "", baseLayer(t), testLayer(t, entry{name: "etc/motd", content: "hi"})))
	s, _, _ := newTestService(t, mirrorConfig(reg))
	ctx := context.Background()
	for _, ref := range []string{"registry.k8s.io/one:1", "registry.k8s.io/two:1"} {
		img, err := s.Pull(ctx, ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(t.TempDir(), "vol")
		if err := s.MountImageVolume(ctx, img, target); err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		t.Cleanup(func() { _ = s.UnmountImageVolume(ctx, target) })
		// Idempotent: no second mount stacked.
		if err := s.MountImageVolume(ctx, img, target); err != nil {
			t.Fatal(err)
		}
		mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(target))
		if err != nil || len(mounts) != 1 || mounts[0].FSType != "overlay" {
			t.Fatalf("%s: mounts at target = %+v, %v", ref, mounts, err)
		}
		if _, err := os.Stat(filepath.Join(target, "bin", "sh")); err != nil {
			t.Errorf("%s: base layer content missing: %v", ref, err)
		}
		if _, err := os.Stat(filepath.Join(target, "etc", "motd")); (err == nil) != (ref == "registry.k8s.io/two:1") {
			t.Errorf("%s: etc/motd: %v", ref, err)
		}
		// Read-only: neither new files nor changes to image files.
		if err := os.WriteFile(filepath.Join(target, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
			t.Errorf("%s: write to volume: %v, want EROFS", ref, err)
		}
		if err := os.Remove(filepath.Join(target, "bin", "sh")); !errors.Is(err, unix.EROFS) {
			t.Errorf("%s: remove from volume: %v, want EROFS", ref, err)
		}
		if err := s.UnmountImageVolume(ctx, target); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(target); !os.IsNotExist(err) {
			t.Errorf("%s: mount point kept: %v", ref, err)
		}
		// Unmounting again is fine.
		if err := s.UnmountImageVolume(ctx, target); err != nil {
			t.Errorf("%s: second unmount: %v", ref, err)
		}
	}
}

func TestMountImageVolumeMissingSnapshot(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "registry.k8s.io/one:1", testImage(t, "", baseLayer(t)))
	s, _, _ := newTestService(t, mirrorConfig(reg))
	ctx := context.Background()
	img, err := s.Pull(ctx, "registry.k8s.io/one:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	broken := cloneImage(img)
	broken.DiffIDs = append(broken.DiffIDs, "sha256:0000000000000000000000000000000000000000000000000000000000000000")
	target := filepath.Join(t.TempDir(), "vol")
	if err := s.MountImageVolume(ctx, broken, target); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing snapshot: %v, want NotFound", err)
	}
	if m, _ := mountinfo.Mounted(target); m {
		t.Error("mounted despite the error")
	}
	if err := s.MountImageVolume(ctx, nil, target); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("nil image: %v", err)
	}
}
