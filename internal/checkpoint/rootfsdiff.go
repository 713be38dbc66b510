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

	"github.com/containerd/errdefs"
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

	// dirRead, when set, is called with a directory's path after the walk
	// has read its entries: a test changes the tree there, as a running
	// container would.
	dirRead func(rel string)
}

// metacopyXattr marks an upper file that holds only metadata, its data
// still in a lower layer.
const metacopyXattr = "trusted.overlay.metacopy"

// maxOpenDirs bounds the directory descriptors one walk holds besides
// the upper dir's. A container can make a tree thousands of levels deep,
// and a descriptor for every level would run crid out of them: deeper
// than this the walk closes the shallowest it holds and opens them again
// when it comes back up to them.
const maxOpenDirs = 32

// maxPathLen bounds a path in the diff (relative to the rootfs, in
// bytes). A longer one could not be made again by a restore (PATH_MAX),
// and a tree of them would make the archive grow with the square of its
// depth (every entry names all its parents). It bounds the depth to 2048
// levels.
const maxPathLen = unix.PathMax

// Write writes the files the container added or changed as an
// uncompressed tar (names relative to the rootfs, as in CRI-O's
// rootfs-diff.tar) and returns the paths it deleted ("/etc/motd", for
// deleted.files). The container is running while this reads its layer:
// every entry is opened relative to its parent's descriptor with
// O_NOFOLLOW, so a directory swapped for a symlink cannot lead the walk
// out of the layer into the host's files. The walk holds at most
// maxOpenDirs+1 directory descriptors however deep the tree is, and
// refuses (FailedPrecondition) a path longer than maxPathLen.
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
	if err := wk.walk(ctx, root); err != nil {
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
	// stack holds the directories from the upper dir (stack[0], open
	// throughout) down to the one being read.
	stack []*dirFrame
}

// dirFrame is a directory the walk is in.
type dirFrame struct {
	f        *os.File // nil while closed to bound the descriptors held
	rel      string   // relative to the upper dir; "" for the upper dir
	dev, ino uint64   // what f was, to know it again when reopened
	names    []string // entries not visited yet, sorted
}

// walk visits the upper dir's tree depth first, in name order, with an
// explicit stack: a recursion would hold a descriptor for every level.
func (wk *diffWalk) walk(ctx context.Context, root *os.File) error {
	top, err := wk.readDir(root, "")
	if err != nil {
		return err
	}
	wk.stack = []*dirFrame{top}
	defer func() {
		for i, fr := range wk.stack {
			if i > 0 { // the caller owns the upper dir's descriptor
				fr.close()
			}
		}
	}()
	for len(wk.stack) > 0 {
		fr := wk.stack[len(wk.stack)-1]
		if len(fr.names) == 0 {
			if len(wk.stack) > 1 { // the caller owns the upper dir's descriptor
				fr.close()
			}
			wk.stack = wk.stack[:len(wk.stack)-1]
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if fr.f == nil {
			ok, err := wk.reopen()
			if err != nil {
				return err
			}
			if !ok {
				continue // moved or replaced: reopen emptied it
			}
		}
		name := fr.names[0]
		fr.names = fr.names[1:]
		if err := wk.entry(fr, path.Join(fr.rel, name), name); err != nil {
			return err
		}
	}
	return nil
}

// push makes fr the directory being read; it closes the directory
// maxOpenDirs levels above, so that the walk holds at most maxOpenDirs
// descriptors besides the upper dir's.
func (wk *diffWalk) push(fr *dirFrame) {
	wk.stack = append(wk.stack, fr)
	wk.evictAbove(len(wk.stack) - 1)
}

// evictAbove closes the directory maxOpenDirs levels above level, which
// was just opened: the open ones stay the deepest maxOpenDirs.
func (wk *diffWalk) evictAbove(level int) {
	if i := level - maxOpenDirs; i >= 1 {
		wk.stack[i].close()
	}
}

// reopen opens again the directories on the stack that push closed, from
// the deepest one still open (the upper dir at worst), one name at a
// time, never following a symlink, and checks that each is the directory
// it was (device and inode). It reports false when one was moved, removed
// or replaced since the walk read it: what is left of it, and of the
// directories below it, is skipped, as an entry deleted while the walk
// reads is. Where it went, the walk finds it if it has not read that
// directory yet.
func (wk *diffWalk) reopen() (bool, error) {
	i := len(wk.stack) - 1
	for wk.stack[i].f == nil {
		i--
	}
	for i++; i < len(wk.stack); i++ {
		fr := wk.stack[i]
		f, st, err := openDir(wk.stack[i-1].f, path.Base(fr.rel), fr.rel)
		if err == nil && (uint64(st.Dev) != fr.dev || st.Ino != fr.ino) {
			f.Close()
			err = errReplaced
		}
		if errors.Is(err, errReplaced) {
			for _, gone := range wk.stack[i:] {
				gone.names = nil
			}
			return false, nil
		}
		if err != nil {
			return false, err
		}
		fr.f = f
		wk.evictAbove(i)
	}
	return true, nil
}

func (fr *dirFrame) close() {
	if fr.f != nil {
		_ = fr.f.Close() // read only: nothing to lose
		fr.f = nil
	}
}

// errReplaced: an entry was removed, or replaced by one of another kind,
// while the walk read the layer (the container is running).
var errReplaced = errors.New("replaced while read")

// openDir opens the directory name in dir without following a symlink.
// A name that is gone, or is no longer a directory, is errReplaced.
func openDir(dir *os.File, name, rel string) (*os.File, *unix.Stat_t, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return nil, nil, errReplaced
		}
		return nil, nil, fmt.Errorf("open %s: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("stat %s: %w", rel, err)
	}
	return f, &st, nil
}

// readDir makes a frame of the open directory f, its entries read.
func (wk *diffWalk) readDir(f *os.File, rel string) (*dirFrame, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", rel, err)
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", rel, err)
	}
	sort.Strings(names)
	if wk.d.dirRead != nil {
		wk.d.dirRead(rel)
	}
	return &dirFrame{f: f, rel: rel, dev: uint64(st.Dev), ino: st.Ino, names: names}, nil
}

func (wk *diffWalk) entry(dir *dirFrame, rel, name string) error {
	if len(rel) > maxPathLen {
		return fmt.Errorf("the writable layer has a path of %d bytes, longer than the %d (PATH_MAX) a checkpoint takes: %s: %w",
			len(rel), maxPathLen, abbreviate(rel), errdefs.ErrFailedPrecondition)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.f.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
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
		return wk.subdir(dir.f, rel, name)
	case unix.S_IFLNK:
		if wk.d.Skip[rel] {
			return nil
		}
		target, err := readlinkat(dir.f, name)
		if err != nil {
			return fmt.Errorf("readlink %s: %w", rel, err)
		}
		return wk.header(rel, &st, target)
	case unix.S_IFREG:
		if wk.d.Skip[rel] {
			return nil
		}
		return wk.file(dir.f, rel, name)
	}
	if wk.d.Skip[rel] {
		return nil
	}
	return wk.header(rel, &st, "") // fifo, device node
}

// subdir writes the directory name's header and pushes it, its entries
// read, for the walk to visit.
func (wk *diffWalk) subdir(dir *os.File, rel, name string) error {
	f, st, err := openDir(dir, name, rel)
	if errors.Is(err, errReplaced) {
		return nil
	}
	if err != nil {
		return err
	}
	if !wk.d.Skip[rel] {
		if err := wk.header(rel, st, ""); err != nil {
			f.Close()
			return err
		}
	}
	fr, err := wk.readDir(f, rel)
	if err != nil {
		f.Close()
		return err
	}
	wk.push(fr)
	return nil
}

// abbreviate shortens a long path for a message: its start and its end.
func abbreviate(p string) string {
	const keep = 60
	if len(p) <= 2*keep+3 {
		return p
	}
	return p[:keep] + "..." + p[len(p)-keep:]
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
