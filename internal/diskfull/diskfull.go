// Package diskfull recognises a filesystem that ran out of room (ENOSPC,
// or EDQUOT for a quota) in an error, and turns it into the error crid
// answers with: errdefs.ErrResourceExhausted (gRPC ResourceExhausted)
// with a message naming the filesystem, its mount point and what is left
// on it, so that an operator knows which disk to look at.
package diskfull

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
)

// noSpaceText is how ENOSPC reads once a library or a child process (the
// OCI runtime, a CNI plugin) flattened it into text.
const noSpaceText = "no space left on device"

// Is reports whether err comes from a filesystem out of blocks, inodes or
// quota.
func Is(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	return strings.Contains(err.Error(), noSpaceText)
}

// Wrap returns err as a ResourceExhausted error naming the filesystem that
// is full: the one of the path err names (a *fs.PathError or the target
// of an *os.LinkError), else the one of fallback. An err that
// is not a full disk is returned as it is.
func Wrap(err error, fallback string) error {
	if !Is(err) || errdefs.IsResourceExhausted(err) {
		return err
	}
	path := fallback
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe) && filepath.IsAbs(pe.Path):
		path = pe.Path
	case errors.As(err, &le) && filepath.IsAbs(le.New):
		path = le.New
	}
	return fmt.Errorf("%w (%s): %w", err, Describe(path), errdefs.ErrResourceExhausted)
}

// Describe says which filesystem holds path and how full it is, e.g.
// "no space on tmpfs /var/lib/crid (holding /var/lib/crid/x): 1.0 MiB of
// 14.0 MiB free now, 3580 of 3584 inodes" (now: a failed pull has freed
// its files by the time this is said).
// What cannot be measured is left out rather than failing: it is a message.
func Describe(path string) string {
	dir := existingAncestor(path)
	mp, fstype := mountOf(dir)
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Sprintf("no space on %s %s (holding %s)", fstype, mp, path)
	}
	// Bavail: what an unprivileged writer gets; crid runs as root, but
	// the kernel's reserve is what ext4 keeps back for it and is no room
	// to plan with.
	free := st.Bavail * uint64(st.Bsize)
	total := st.Blocks * uint64(st.Bsize)
	return fmt.Sprintf("no space on %s %s (holding %s): %s of %s free now, %d of %d inodes",
		fstype, mp, path, Bytes(free), Bytes(total), st.Ffree, st.Files)
}

// existingAncestor is path or its closest existing parent: the file that
// could not be written may not exist.
func existingAncestor(path string) string {
	p := filepath.Clean(path)
	for {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err == nil || p == "/" || p == "." {
			return p
		}
		p = filepath.Dir(p)
	}
}

// mountOf returns the mount point and type of the filesystem holding dir
// (the deepest mount that is a parent of it).
func mountOf(dir string) (mountpoint, fstype string) {
	mounts, err := mountinfo.GetMounts(mountinfo.ParentsFilter(dir))
	if err != nil || len(mounts) == 0 {
		return dir, "filesystem"
	}
	best := mounts[0]
	for _, m := range mounts[1:] {
		// Later entries of the same mount point are mounted over earlier ones.
		if len(m.Mountpoint) >= len(best.Mountpoint) {
			best = m
		}
	}
	return best.Mountpoint, best.FSType
}

// Bytes formats n for people (binary units).
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
