package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// PrepareRootfs mounts a writable overlay of img at target, with its upper
// and work dirs under rwDir. Idempotent: an existing mount is kept.
func (s *Service) PrepareRootfs(ctx context.Context, img *Image, rwDir, target string) error {
	if img == nil {
		return fmt.Errorf("prepare rootfs: no image: %w", errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("prepare rootfs: %w", err)
	}
	if mounted, err := mountinfo.Mounted(target); err != nil {
		return fmt.Errorf("prepare rootfs: %w", err)
	} else if mounted {
		return nil
	}
	lowers, err := s.layerLowers(img)
	if err != nil {
		return fmt.Errorf("prepare rootfs of image %s: %w", img.ID, err)
	}
	if len(lowers) == 0 {
		lowers = []string{s.emptyDir()}
	}
	upper, work := filepath.Join(rwDir, "upper"), filepath.Join(rwDir, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("prepare rootfs: %w", err)
		}
	}
	for _, p := range []string{upper, work, s.emptyDir()} {
		if strings.ContainsAny(p, ",:") {
			return fmt.Errorf("prepare rootfs: path %q has a character overlayfs options cannot carry: %w", p, errdefs.ErrInvalidArgument)
		}
	}
	if err := mountOverlay(lowers, upper, work, target); err != nil {
		return fmt.Errorf("prepare rootfs of image %s at %s: %w", img.ID, target, err)
	}
	return nil
}

// mountOverlay mounts an overlay at target; with upper "" it is a
// read-only, lower-only overlay (image volumes). The classic mount(2) data
// is limited to a page; images with many layers are mounted through the
// fsconfig API, passing one lower dir at a time ("lowerdir+", Linux 6.8).
func mountOverlay(lowers []string, upper, work, target string) error {
	data := "lowerdir=" + strings.Join(lowers, ":")
	// A read-only overlay is an image volume: data for the container,
	// where an image's setuid binaries and device nodes have no business
	// (a container's own rootfs keeps them: runc's bind of it would
	// inherit nosuid and break su/ping inside).
	var flags uintptr = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV
	if upper != "" {
		data += ",upperdir=" + upper + ",workdir=" + work
		flags = 0
	}
	if len(data) < unix.Getpagesize()-1 {
		if err := unix.Mount("overlay", target, "overlay", flags, data); err != nil {
			return fmt.Errorf("mount overlay: %w", err)
		}
		return nil
	}
	return mountOverlayFsconfig(lowers, upper, work, target)
}

func mountOverlayFsconfig(lowers []string, upper, work, target string) error {
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
	var attrs int
	if upper == "" {
		attrs = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	} else {
		if err := unix.FsconfigSetString(fsfd, "upperdir", upper); err != nil {
			return fmt.Errorf("overlay upperdir: %w", err)
		}
		if err := unix.FsconfigSetString(fsfd, "workdir", work); err != nil {
			return fmt.Errorf("overlay workdir: %w", err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("create overlay: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move overlay mount to %s: %w", target, err)
	}
	return nil
}

// layerLowers is the image's layer snapshot dirs, topmost first as
// overlayfs wants them; a missing snapshot, or an image whose record was
// removed since the caller resolved it, is ErrNotFound. The record check is
// what keeps the layers from the collector once the caller's container is
// registered (gc.go).
func (s *Service) layerLowers(img *Image) ([]string, error) {
	s.mu.Lock()
	_, recorded := s.images[img.ID]
	s.mu.Unlock()
	if !recorded {
		return nil, fmt.Errorf("image was removed: %w", errdefs.ErrNotFound)
	}
	chains := chainIDs(img.DiffIDs)
	lowers := make([]string, 0, len(chains)+1)
	for i := len(chains) - 1; i >= 0; i-- {
		p := s.snapshotFs(chains[i])
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("layer %d snapshot: %v: %w", i, err, errdefs.ErrNotFound)
		}
		if strings.ContainsAny(p, ",:") {
			return nil, fmt.Errorf("path %q has a character overlayfs options cannot carry: %w", p, errdefs.ErrInvalidArgument)
		}
		lowers = append(lowers, p)
	}
	return lowers, nil
}

// ReleaseRootfs unmounts target and removes rwDir; missing ones are fine.
func (s *Service) ReleaseRootfs(ctx context.Context, rwDir, target string) error {
	if target != "" {
		if err := unmountAll(target); err != nil {
			return fmt.Errorf("release rootfs %s: %w", target, err)
		}
	}
	if rwDir != "" {
		if err := os.RemoveAll(rwDir); err != nil {
			return fmt.Errorf("release rootfs: remove %s: %w", rwDir, err)
		}
	}
	return nil
}

// unmountAll unmounts every mount stacked on target, lazily when busy.
func unmountAll(target string) error {
	for range 16 {
		err := unix.Unmount(target, 0)
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			// Not (or no longer) a mount point.
			return nil
		case errors.Is(err, unix.EBUSY):
			if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("lazy unmount: %w", err)
			}
		default:
			return fmt.Errorf("unmount: %w", err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted: %w", target, errdefs.ErrFailedPrecondition)
}

// WritableUsage reports bytes and inodes used by a container's writable layer.
func WritableUsage(rwDir string) (bytes, inodes uint64, err error) {
	return diskUsage(filepath.Join(rwDir, "upper"))
}

// FsInfo reports the image filesystem's usage.
func (s *Service) FsInfo(ctx context.Context) (FsUsage, error) {
	s.fsMu.Lock()
	defer s.fsMu.Unlock()
	if !s.fsAt.IsZero() && time.Since(s.fsAt) < fsInfoMaxAge {
		return s.fsLast, nil
	}
	var u FsUsage
	u.Mountpoint = s.snapshotDir
	for _, d := range []string{s.snapshotDir, s.contentDir} {
		b, n, err := diskUsage(d)
		if err != nil {
			return FsUsage{}, fmt.Errorf("image fs usage: %w", err)
		}
		u.UsedBytes += b
		u.InodesUsed += n
	}
	s.fsLast, s.fsAt = u, time.Now()
	return u, nil
}

// diskUsage sums allocated bytes and counts inodes under root, counting
// hard-linked files once. A missing root is empty.
func diskUsage(root string) (bytes, inodes uint64, err error) {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if st.Nlink > 1 && !fi.IsDir() {
			k := inode{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		bytes += uint64(st.Blocks) * 512
		inodes++
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil
	}
	return bytes, inodes, err
}
