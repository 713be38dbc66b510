package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nsfsMagic is NSFS_MAGIC from linux/magic.h: the filesystem type of a
// bind-mounted namespace file.
const nsfsMagic = 0x6e736673

// SharedPinDir creates dir for namespace pins and makes it a shared mount
// point, the way iproute2 treats /run/netns: pins made later then
// propagate to (and, more importantly, their unmounts propagate to) mount
// namespaces that copied the directory, so a namespace is really freed
// when crid unpins it.
func SharedPinDir(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("create netns dir: %w", err)
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	// EINVAL: not a mount point yet. Bind it onto itself (once; after a crid
	// restart the first attempt above succeeds) and retry.
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s onto itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	return nil
}

// NetNSPath is where CreateNetNS pins sandbox id's network namespace: a
// caller can record it before the pin exists.
func (m *Manager) NetNSPath(id string) string { return filepath.Join(m.netnsDir, id) }

// CreateNetNS creates a network namespace for sandbox id and pins it by
// bind mount at NetNSPath(id).
func (m *Manager) CreateNetNS(id string) (string, error) {
	if id == "" || filepath.Base(id) != id || id == "." || id == ".." {
		return "", fmt.Errorf("create netns: invalid sandbox id %q: %w", id, errdefs.ErrInvalidArgument)
	}
	path := m.NetNSPath(id)
	if IsNSMount(path) {
		return "", fmt.Errorf("create netns %s: %w", path, errdefs.ErrAlreadyExists)
	}
	// An empty file may be left by a crash between create and mount; reuse it.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o444)
	if err != nil {
		return "", fmt.Errorf("create netns pin %s: %w", path, err)
	}
	f.Close()

	errc := make(chan error, 1)
	go func() {
		// The thread is switched back to the host namespace once the pin
		// exists. Were it left to die locked instead, the runtime would
		// park rather than end the process's main thread if it happened to
		// run this goroutine, keeping the pod namespace alive forever.
		goruntime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			goruntime.UnlockOSThread()
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			goruntime.UnlockOSThread() // unshare failed: still in the host namespace
			errc <- fmt.Errorf("unshare netns: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		mountErr := unix.Mount(src, path, "none", unix.MS_BIND, "")
		if err := netns.Set(orig); err != nil {
			// Stay locked: the thread is discarded, never reused in the
			// pod's namespace.
			errc <- errors.Join(mountErr, fmt.Errorf("restore netns: %w", err))
			return
		}
		goruntime.UnlockOSThread()
		if mountErr != nil {
			errc <- fmt.Errorf("bind %s: %w", src, mountErr)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		if rerr := m.RemoveNetNS(path); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return "", fmt.Errorf("create netns %s: %w", id, err)
	}
	return path, nil
}

// SweepNetNS unpins every network namespace pinned in the pin dir for a
// sandbox id that keep rejects, and returns their ids. crid pins a pod's
// namespace while it writes the pod's first record, so a crash in between
// leaves a pin no record names; recovery removes it here.
func (m *Manager) SweepNetNS(keep func(id string) bool) ([]string, error) {
	entries, err := os.ReadDir(m.netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sweep netns pins: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		if keep(e.Name()) {
			continue
		}
		if err := Unpin(filepath.Join(m.netnsDir, e.Name())); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}

// RemoveNetNS unpins and removes a namespace; a missing one is not an error.
func (m *Manager) RemoveNetNS(path string) error { return Unpin(path) }

// Unpin unmounts the namespace pinned at path and removes its placeholder
// file; a missing pin is not an error.
func Unpin(path string) error {
	if path == "" {
		return nil
	}
	// Unmount every layer (a pin bind-mounted twice by a confused caller
	// would otherwise keep the namespace alive), but only namespace mounts,
	// so a wrong path never unmounts something else.
	for IsNSMount(path) {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				break
			}
			return fmt.Errorf("unpin namespace %s: %w", path, err)
		}
	}
	// What is left must be the empty placeholder file the pin was mounted on.
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove namespace pin %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != 0 {
		return fmt.Errorf("remove namespace pin %s: not a namespace pin: %w", path, errdefs.ErrInvalidArgument)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove namespace pin %s: %w", path, err)
	}
	return nil
}

// IsNSMount reports whether path is a mounted namespace file.
func IsNSMount(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == nsfsMagic
}

// WithNetNS runs fn on an OS thread inside the namespace at path.
//
// fn runs in a goroutine of its own: its thread is locked, switched into the
// namespace and switched back; if switching back fails the thread stays
// locked and the runtime ends it (or, for the main thread, parks it) when
// that goroutine ends, so no other goroutine ever runs in the pod's namespace. Goroutines fn starts do not
// inherit the namespace, but sockets fn creates stay in it.
func WithNetNS(path string, fn func() error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()

	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			goruntime.UnlockOSThread()
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			// setns failed, so the thread is still where it was.
			goruntime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(fnErr, fmt.Errorf("restore netns: %w", err))
			return
		}
		goruntime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}
