package oci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// imageVolumeMount is the bind mount of the image volume ms[i] (KEP-4639).
// The image itself was mounted read-only by the caller at
// imageVolumes[i]; the bind is read-only too, so a remount cannot make it
// writable. Propagation is always private: nothing is ever mounted inside
// an image, so there are no events to share.
func imageVolumeMount(m *runtime.Mount, imageVolumes map[int]string, i int) (specs.Mount, error) {
	dst := m.GetContainerPath()
	if m.GetHostPath() != "" {
		return specs.Mount{}, fmt.Errorf("mount %s: image volume with a host_path %q: %w", dst, m.GetHostPath(), errdefs.ErrInvalidArgument)
	}
	if !m.GetReadonly() {
		return specs.Mount{}, fmt.Errorf("mount %s: image volume must be read-only: %w", dst, errdefs.ErrInvalidArgument)
	}
	src, ok := imageVolumes[i]
	if !ok || src == "" {
		return specs.Mount{}, fmt.Errorf("mount %s: image volume of %q was not mounted: %w", dst, m.GetImage().GetImage(), errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(src) {
		return specs.Mount{}, fmt.Errorf("mount %s: image volume source %q is not absolute: %w", dst, src, errdefs.ErrInvalidArgument)
	}
	if _, err := os.Stat(src); err != nil {
		return specs.Mount{}, fmt.Errorf("mount %s: image volume source: %w", dst, err)
	}
	ro := "ro"
	if m.GetRecursiveReadOnly() {
		ro = "rro"
	}
	// nosuid, nodev: as on crid's own mount of the image (see
	// image.mountOverlay), and kept on the container's bind whatever the
	// runtime does with the source's flags when it remounts.
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rprivate", ro, "nosuid", "nodev"}}, nil
}

// ImageSubPath is the host path of subPath inside an image mounted at root:
// root itself for "", else the file or directory subPath names, with
// symlinks in the image resolved as if root were "/" so that none leads
// out of the image. subPath must be relative and must not climb out with
// "..": errdefs.ErrInvalidArgument. A subPath the image lacks is
// errdefs.ErrNotFound.
func ImageSubPath(root, subPath string) (string, error) {
	if subPath == "" {
		return root, nil
	}
	if !filepath.IsLocal(subPath) {
		return "", fmt.Errorf("image sub path %q must be a relative path inside the image: %w", subPath, errdefs.ErrInvalidArgument)
	}
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open image volume root %s: %w", root, err)
	}
	defer unix.Close(rootFd)
	realRoot, err := fdPath(rootFd)
	if err != nil {
		return "", err
	}
	fd, err := openat2Retry(rootFd, subPath, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return "", fmt.Errorf("image sub path %q does not exist in the image: %w", subPath, errdefs.ErrNotFound)
		}
		return "", fmt.Errorf("image sub path %q: %w", subPath, err)
	}
	defer unix.Close(fd)
	p, err := fdPath(fd)
	if err != nil {
		return "", err
	}
	// RESOLVE_IN_ROOT already guarantees this; checked again because a
	// path outside the image would expose the host.
	if p != realRoot && !strings.HasPrefix(p, strings.TrimSuffix(realRoot, "/")+"/") {
		return "", fmt.Errorf("image sub path %q resolves to %s, outside the image at %s: %w", subPath, p, realRoot, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// openat2Retry retries openat2 on EAGAIN, which RESOLVE_IN_ROOT returns
// when a rename raced with the lookup.
func openat2Retry(dirfd int, path string, how *unix.OpenHow) (int, error) {
	for range 16 {
		fd, err := unix.Openat2(dirfd, path, how)
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
	return -1, fmt.Errorf("openat2 %s: %w", path, unix.EAGAIN)
}

// fdPath is the path the kernel has for an open file.
func fdPath(fd int) (string, error) {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", fmt.Errorf("resolve open file: %w", err)
	}
	return p, nil
}
