package checkpoint

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// RootfsDiff describes a container's overlay writable layer.
type RootfsDiff struct {
	// Upper is the overlay's upper dir: what the container added, changed
	// (copied up) or deleted (whiteouts).
	Upper string
	// Merged is the overlay mount, read for a file whose upper copy holds
	// only metadata (overlayfs metacopy).
	Merged string
	// Skip are paths (relative to the rootfs, "etc/hosts") left out of
	// the tar: mount points runc created for the spec's mounts, whose
	// content is the mount's, not the container's.
	Skip map[string]bool
}

// metacopyXattr marks an upper file that holds only metadata, its data
// still in a lower layer.
const metacopyXattr = "trusted.overlay.metacopy"

// Write writes the files the container added or changed as an
// uncompressed tar (names relative to the rootfs, as in CRI-O's
// rootfs-diff.tar) and returns the paths it deleted ("/etc/motd", for
// deleted.files). The container is running while this reads its layer:
// every entry is opened relative to its parent's descriptor with
// O_NOFOLLOW, so a directory swapped for a symlink cannot lead the walk
// out of the layer into the host's files.
//
// A directory the container removed and created again (opaque) is
// recorded as the new directory; the image's entries it hid are not
// listed as deleted.
func (d RootfsDiff) Write(ctx context.Context, w io.Writer) (deleted []string, err error) {
	root, err := os.OpenFile(d.Upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("rootfs diff: %w", err)
	}
	defer root.Close()
	wk := &diffWalk{d: d, tw: tar.NewWriter(w)}
	if err := wk.dir(ctx, root, ""); err != nil {
		return nil, fmt.Errorf("rootfs diff of %s: %w", d.Upper, err)
	}
	if err := wk.tw.Close(); err != nil {
		return nil, fmt.Errorf("rootfs diff: %w", err)
	}
	if wk.deleted == nil {
		wk.deleted = []string{}
	}
	return wk.deleted, nil
}

type diffWalk struct {
	d       RootfsDiff
	tw      *tar.Writer
	deleted []string
}

func (wk *diffWalk) dir(ctx context.Context, dir *os.File, rel string) error {
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := wk.entry(ctx, dir, path.Join(rel, name), name); err != nil {
			return err
		}
	}
	return nil
}

func (wk *diffWalk) entry(ctx context.Context, dir *os.File, rel, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil // deleted while we read: the container is running
		}
		return fmt.Errorf("stat %s: %w", rel, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		if st.Rdev == 0 { // an overlay whiteout: deleted from the image
			wk.deleted = append(wk.deleted, "/"+rel)
			return nil
		}
	case unix.S_IFSOCK:
		return nil // tar cannot hold a socket; criu recreates bound ones
	case unix.S_IFDIR:
		return wk.subdir(ctx, dir, rel, name)
	case unix.S_IFLNK:
		if wk.d.Skip[rel] {
			return nil
		}
		target, err := readlinkat(dir, name)
		if err != nil {
			return fmt.Errorf("readlink %s: %w", rel, err)
		}
		return wk.header(rel, &st, target)
	case unix.S_IFREG:
		if wk.d.Skip[rel] {
			return nil
		}
		return wk.file(dir, rel, name)
	}
	if wk.d.Skip[rel] {
		return nil
	}
	return wk.header(rel, &st, "") // fifo, device node
}

func (wk *diffWalk) subdir(ctx context.Context, dir *os.File, rel, name string) error {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return nil // replaced while we read
		}
		return fmt.Errorf("open %s: %w", rel, err)
	}
	sub := os.NewFile(uintptr(fd), rel)
	defer sub.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", rel, err)
	}
	if !wk.d.Skip[rel] {
		if err := wk.header(rel, &st, ""); err != nil {
			return err
		}
	}
	return wk.dir(ctx, sub, rel)
}

// file writes a regular file from a descriptor opened without following
// a symlink, sized by what that descriptor's fstat says.
func (wk *diffWalk) file(dir *os.File, rel, name string) error {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) {
			return nil
		}
		return fmt.Errorf("open %s: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	if isMetacopy(fd) {
		mf, err := wk.openMerged(rel)
		if err != nil {
			return fmt.Errorf("open %s in the merged rootfs: %w", rel, err)
		}
		defer mf.Close()
		f, fd = mf, int(mf.Fd())
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", rel, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	if err := wk.header(rel, &st, ""); err != nil {
		return err
	}
	// The file may shrink while it is read (the container is running);
	// the tar entry has the size fstat gave, so the rest is zeros.
	if _, err := io.CopyN(wk.tw, io.MultiReader(io.LimitReader(f, st.Size), zeros{}), st.Size); err != nil {
		return fmt.Errorf("copy %s: %w", rel, err)
	}
	return nil
}

// openMerged opens rel in the merged rootfs, never leaving it.
func (wk *diffWalk) openMerged(rel string) (*os.File, error) {
	root, err := os.OpenFile(wk.d.Merged, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	fd, err := unix.Openat2(int(root.Fd()), rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), rel), nil
}

func (wk *diffWalk) header(rel string, st *unix.Stat_t, link string) error {
	hdr := &tar.Header{
		Name: rel, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
		ModTime: timespec(st.Mtim), Format: tar.FormatPAX,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
	case unix.S_IFREG:
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	case unix.S_IFLNK:
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, link
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	default:
		return nil
	}
	if err := wk.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("tar %s: %w", rel, err)
	}
	return nil
}

func isMetacopy(fd int) bool {
	_, err := unix.Fgetxattr(fd, metacopyXattr, nil)
	return err == nil
}

func readlinkat(dir *os.File, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(int(dir.Fd()), name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func timespec(ts unix.Timespec) time.Time { return time.Unix(ts.Unix()) }

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// SkipMounts turns mount destinations ("/etc/hosts") into RootfsDiff.Skip
// keys.
func SkipMounts(destinations []string) map[string]bool {
	skip := map[string]bool{}
	for _, d := range destinations {
		if rel := strings.TrimPrefix(path.Clean("/"+d), "/"); rel != "" {
			skip[rel] = true
		}
	}
	return skip
}
