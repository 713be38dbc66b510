package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// MountImageVolume mounts img read-only at target for an image volume
// (KEP-4639): an overlay of the image's layer snapshots with no upper dir,
// so nothing can be written and the shared snapshots stay pristine. The
// image must already be stored (kubelet pulls it first). Idempotent: an
// existing mount at target is kept.
func (s *Service) MountImageVolume(ctx context.Context, img *Image, target string) error {
	if img == nil {
		return fmt.Errorf("mount image volume: no image: %w", errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("mount image volume: %w", err)
	}
	if mounted, err := mountinfo.Mounted(target); err != nil {
		return fmt.Errorf("mount image volume: %w", err)
	} else if mounted {
		return nil
	}
	lowers, err := s.volumeLowers(img)
	if err != nil {
		return fmt.Errorf("mount image volume of image %s: %w", img.ID, err)
	}
	if err := mountReadOnlyOverlay(lowers, target); err != nil {
		return fmt.Errorf("mount image volume of image %s at %s: %w", img.ID, target, err)
	}
	return nil
}

// UnmountImageVolume unmounts an image volume and removes its mount point.
// A target that is not mounted or does not exist is fine.
func (s *Service) UnmountImageVolume(ctx context.Context, target string) error {
	if err := unmountAll(target); err != nil {
		return fmt.Errorf("unmount image volume %s: %w", target, err)
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unmount image volume: remove %s: %w", target, err)
	}
	return nil
}

// volumeLowers lists img's layer snapshots topmost first, as overlayfs
// wants them. Overlayfs without an upper dir needs at least two lower
// dirs on older kernels, so the shared empty dir goes at the bottom; it
// also stands in for an image without layers.
func (s *Service) volumeLowers(img *Image) ([]string, error) {
	chains := chainIDs(img.DiffIDs)
	lowers := make([]string, 0, len(chains)+1)
	for i := len(chains) - 1; i >= 0; i-- {
		p := s.snapshotFs(chains[i])
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("layer %d snapshot: %v: %w", i, err, errdefs.ErrNotFound)
		}
		lowers = append(lowers, p)
	}
	lowers = append(lowers, s.emptyDir())
	for _, p := range lowers {
		if strings.ContainsAny(p, ",:") {
			return nil, fmt.Errorf("path %q has a character overlayfs options cannot carry: %w", p, errdefs.ErrInvalidArgument)
		}
	}
	return lowers, nil
}

// mountReadOnlyOverlay mounts a lower-only overlay at target, read-only.
// Like mountOverlay it falls back to the fsconfig API when the lower dirs
// do not fit in a page of mount data.
func mountReadOnlyOverlay(lowers []string, target string) error {
	data := "lowerdir=" + strings.Join(lowers, ":")
	if len(data) < unix.Getpagesize()-1 {
		if err := unix.Mount("overlay", target, "overlay", unix.MS_RDONLY, data); err != nil {
			return fmt.Errorf("mount overlay: %w", err)
		}
		return nil
	}
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	for _, l := range lowers {
		if err := unix.FsconfigSetString(fsfd, "lowerdir+", l); err != nil {
			return fmt.Errorf("overlay with %d layers: lowerdir+ %s (needs Linux 6.8+): %w", len(lowers), l, err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("create overlay: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move overlay mount to %s: %w", target, err)
	}
	return nil
}
