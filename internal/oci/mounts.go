package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criMounts converts the request's mounts to bind mounts. It creates missing
// host directories (kubelet relies on this for hostPath DirectoryOrCreate
// semantics in some paths, and containerd does it), resolves symlinks in
// host paths so runc binds what the user meant, and sets the rootfs
// propagation a shared or slave mount needs to work at all.
//
// Image volumes (mounts with an image) were mounted by the caller;
// imageVolumes maps their index in ms to the host directory to bind.
func criMounts(ms []*runtime.Mount, imageVolumes map[int]string, s *specs.Spec, h hostFacts) ([]specs.Mount, error) {
	// Indexes, so image volumes keep their position in ms for imageVolumes.
	order := make([]int, len(ms))
	for i := range order {
		order[i] = i
	}
	// Shallow destinations first so /a does not hide /a/b.
	slices.SortStableFunc(order, func(a, b int) int {
		return depth(ms[a].GetContainerPath()) - depth(ms[b].GetContainerPath())
	})
	var out []specs.Mount
	for _, i := range order {
		m := ms[i]
		dst, src := m.GetContainerPath(), m.GetHostPath()
		if !filepath.IsAbs(dst) {
			return nil, fmt.Errorf("mount %q: container_path must be absolute: %w", dst, errdefs.ErrInvalidArgument)
		}
		if strings.IndexByte(dst, 0) >= 0 || strings.IndexByte(src, 0) >= 0 {
			// Every system call on such a path fails with EINVAL.
			return nil, fmt.Errorf("mount %q: path with a NUL byte: %w", dst, errdefs.ErrInvalidArgument)
		}
		if m.GetImage() != nil {
			im, err := imageVolumeMount(m, imageVolumes, i)
			if err != nil {
				return nil, err
			}
			out = append(out, im)
			continue
		}
		if src == "" {
			return nil, fmt.Errorf("mount %s: host_path is empty: %w", dst, errdefs.ErrInvalidArgument)
		}
		if _, err := os.Stat(src); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("mount %s: stat host path %s: %w", dst, src, err)
			}
			if err := os.MkdirAll(src, 0o755); err != nil {
				return nil, fmt.Errorf("mount %s: create host path %s: %w", dst, src, err)
			}
		}
		resolved, err := filepath.EvalSymlinks(src)
		if err != nil {
			return nil, fmt.Errorf("mount %s: resolve host path %s: %w", dst, src, err)
		}
		opts := []string{"rbind"}
		switch m.GetPropagation() {
		case runtime.MountPropagation_PROPAGATION_PRIVATE:
			opts = append(opts, "rprivate")
		case runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			if err := h.ensurePropagate(resolved, false); err != nil {
				return nil, fmt.Errorf("mount %s: %w", dst, err)
			}
			opts = append(opts, "rslave")
			if s.Linux.RootfsPropagation != "rshared" {
				s.Linux.RootfsPropagation = "rslave"
			}
		case runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			if err := h.ensurePropagate(resolved, true); err != nil {
				return nil, fmt.Errorf("mount %s: %w", dst, err)
			}
			opts = append(opts, "rshared")
			s.Linux.RootfsPropagation = "rshared"
		default:
			return nil, fmt.Errorf("mount %s: unknown propagation %v: %w", dst, m.GetPropagation(), errdefs.ErrInvalidArgument)
		}
		switch {
		case m.GetRecursiveReadOnly() && !m.GetReadonly():
			return nil, fmt.Errorf("mount %s: recursive_read_only needs readonly: %w", dst, errdefs.ErrInvalidArgument)
		case m.GetRecursiveReadOnly() && m.GetPropagation() != runtime.MountPropagation_PROPAGATION_PRIVATE:
			return nil, fmt.Errorf("mount %s: recursive_read_only needs private propagation, got %v: %w", dst, m.GetPropagation(), errdefs.ErrInvalidArgument)
		case m.GetRecursiveReadOnly():
			opts = append(opts, "rro")
		case m.GetReadonly():
			opts = append(opts, "ro")
		default:
			opts = append(opts, "rw")
		}
		out = append(out, specs.Mount{Destination: dst, Type: "bind", Source: resolved, Options: opts})
	}
	return out, nil
}

func depth(p string) int {
	return strings.Count(filepath.Clean(p), "/")
}

// mergeMounts puts the request's mounts over the defaults: a default whose
// destination the request mounts is dropped, and a requested /dev replaces
// every default under /dev.
func mergeMounts(defaults, requested []specs.Mount) []specs.Mount {
	dests := map[string]bool{}
	for _, m := range requested {
		dests[filepath.Clean(m.Destination)] = true
	}
	var out []specs.Mount
	for _, m := range defaults {
		d := filepath.Clean(m.Destination)
		if dests[d] || (dests["/dev"] && strings.HasPrefix(d, "/dev/")) {
			continue
		}
		out = append(out, m)
	}
	return append(out, requested...)
}

// checkPropagation makes sure the host mount holding path propagates:
// shared for bidirectional, shared or slave for host-to-container. Without
// it the runtime would set up the mount but events would silently not
// propagate, which is worse than failing.
func checkPropagation(path string, shared bool) error {
	infos, err := mountinfo.GetMounts(mountinfo.ParentsFilter(path))
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	var best *mountinfo.Info
	for _, m := range infos {
		if best == nil || len(m.Mountpoint) >= len(best.Mountpoint) {
			best = m
		}
	}
	if best == nil {
		return fmt.Errorf("no mount found for %s: %w", path, errdefs.ErrFailedPrecondition)
	}
	for _, o := range strings.Fields(best.Optional) {
		if strings.HasPrefix(o, "shared:") || (!shared && strings.HasPrefix(o, "master:")) {
			return nil
		}
	}
	want := "shared"
	if !shared {
		want = "shared or slave"
	}
	return fmt.Errorf("host path %s is on mount %s which is not %s (make it with `mount --make-rshared`): %w",
		path, best.Mountpoint, want, errdefs.ErrFailedPrecondition)
}
