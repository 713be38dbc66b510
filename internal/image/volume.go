package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
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
	if err := mountOverlay(lowers, "", "", target); err != nil {
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

// volumeLowers is img's layer snapshots plus the shared empty dir.
func (s *Service) volumeLowers(img *Image) ([]string, error) {
	lowers, err := s.layerLowers(img)
	if err != nil {
		return nil, err
	}
	// A lower-only overlay needs at least two lower dirs.
	return append(lowers, s.emptyDir()), nil
}
