package core

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/oci"
	"github.com/crid-dev/crid/internal/runc"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pods with their own user namespace (mode POD).
//
// runc 1.1 (Debian 12) can neither create idmapped mounts nor mount sysfs
// in a new user namespace when the network namespace it joins belongs to
// the host's. So crid does both parts itself, before runc runs:
//
//   - it makes the pod's user namespace, with the requested mappings, by
//     starting a helper that never runs (it stops at exec under
//     PTRACE_TRACEME), cloned into a new user and network namespace: the
//     network namespace is therefore owned by the pod's user namespace and
//     the pause (root there) may mount sysfs in it;
//   - it remounts the rootfs overlay on image layers idmapped with that
//     namespace (mount_setattr MOUNT_ATTR_IDMAP; overlayfs itself cannot be
//     idmapped), so files owned by host root are owned by the pod's root;
//     the writable layer is not idmapped (overlayfs creates its work files
//     there as host root) but its top directory is given to the pod's root,
//     so what the pod writes is stored under the pod's host ids, as
//     containerd does;
//   - runc only joins: the pause joins the helper's namespace by path, the
//     containers join the pause's (/proc/<pause>/ns/user) like its ipc/uts.
//
// The helper is killed once the pause exists; the pause keeps the
// namespace alive. Bind mounts of host files (hosts, resolv.conf, volumes)
// are not idmapped: their host owners show as the overflow id (nobody).

// usernsHelper is a stopped process in a new user namespace (and network
// namespace, when asked) with the pod's mappings.
type usernsHelper struct {
	proc *os.Process
}

// newUsernsHelper clones a helper into a new user namespace with the
// single uid and gid mapping given, and into a new network namespace too
// with withNet.
func newUsernsHelper(uid, gid *runtime.IDMapping, withNet bool) (*usernsHelper, error) {
	flags := uintptr(unix.CLONE_NEWUSER)
	if withNet {
		flags |= unix.CLONE_NEWNET
	}
	// The executable does not matter: with Ptrace the child stops at the
	// exec, before running any of it, until it is killed.
	proc, err := os.StartProcess("/proc/self/exe", []string{"crid-userns-helper"}, &os.ProcAttr{
		Sys: &syscall.SysProcAttr{
			Cloneflags:  flags,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: int(uid.GetContainerId()), HostID: int(uid.GetHostId()), Size: int(uid.GetLength())}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: int(gid.GetContainerId()), HostID: int(gid.GetHostId()), Size: int(gid.GetLength())}},
			// Containers set their supplementary groups: setgroups must
			// stay allowed in the namespace.
			GidMappingsEnableSetgroups: true,
			Ptrace:                     true,
			Pdeathsig:                  syscall.SIGKILL,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create user namespace: %w", err)
	}
	return &usernsHelper{proc: proc}, nil
}

// nsPath is the helper's namespace of kind ("user", "net").
func (u *usernsHelper) nsPath(kind string) string {
	return filepath.Join("/proc", strconv.Itoa(u.proc.Pid), "ns", kind)
}

// close kills and reaps the helper. Namespaces that something else holds
// (the pause, a pin, an idmapped mount) stay.
func (u *usernsHelper) close() {
	if u == nil || u.proc == nil {
		return
	}
	_ = u.proc.Kill()
	_, _ = u.proc.Wait()
	u.proc = nil
}

// pinNS bind-mounts a namespace file at path (created empty), the way
// network.Manager pins the namespaces it creates, so RemoveNetNS (or
// unpinPodNamespaces) unpins it.
func pinNS(src, path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create namespace pin %s: %w", path, err)
	}
	f.Close()
	if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("pin namespace %s at %s: %w", src, path, err)
	}
	return nil
}

// idmapRootfs remounts the overlay at rootfs with its image layers idmapped
// through the user namespace at usernsPath, whose root is rootUID:rootGID
// on the host. Overlayfs itself cannot be idmapped, but its lower layers
// can (Linux 5.19+): files owned by host root on disk are then owned by
// the namespace's root in the overlay. The layers are detached idmapped
// clones handed to overlayfs by fd path, so no intermediate mount is ever
// attached. ReleaseRootfs unmounts the result like any rootfs.
func idmapRootfs(rootfs, usernsPath string, rootUID, rootGID uint32) error {
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(rootfs))
	if err != nil || len(infos) == 0 {
		return fmt.Errorf("idmap rootfs %s: not mounted: %v", rootfs, err)
	}
	top := infos[len(infos)-1]
	if top.FSType != "overlay" {
		return fmt.Errorf("idmap rootfs %s: %s mount is not an overlay", rootfs, top.FSType)
	}
	lowers, upper, work, err := parseOverlayOptions(top.VFSOptions)
	if err != nil {
		return fmt.Errorf("idmap rootfs %s: %w", rootfs, err)
	}
	// The writable layer's top directory is the root directory the pod
	// sees; its root must own it to write there.
	if err := os.Lchown(upper, int(rootUID), int(rootGID)); err != nil {
		return fmt.Errorf("idmap rootfs: %w", err)
	}
	ns, err := os.Open(usernsPath)
	if err != nil {
		return fmt.Errorf("idmap rootfs: open user namespace: %w", err)
	}
	defer ns.Close()
	mfd, err := idmappedOverlay(int(ns.Fd()), lowers, upper, work)
	if err != nil {
		return fmt.Errorf("idmap rootfs %s: %w", rootfs, err)
	}
	defer unix.Close(mfd)
	if err := unix.Unmount(rootfs, 0); err != nil {
		return fmt.Errorf("idmap rootfs: unmount the unmapped overlay: %w", err)
	}
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, rootfs, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("idmap rootfs %s: move_mount: %w", rootfs, err)
	}
	return nil
}

// parseOverlayOptions reads the layers of an overlay from its mount
// options, in either form the kernel shows ("lowerdir=a:b" or one
// "lowerdir+=a" per layer). crid's layer paths contain no ',' or ':'.
func parseOverlayOptions(opts string) (lowers []string, upper, work string, err error) {
	for _, o := range strings.Split(opts, ",") {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "lowerdir":
			lowers = append(lowers, strings.Split(v, ":")...)
		case "lowerdir+":
			lowers = append(lowers, v)
		case "upperdir":
			upper = v
		case "workdir":
			work = v
		}
	}
	if len(lowers) == 0 || upper == "" || work == "" {
		return nil, "", "", fmt.Errorf("overlay options %q lack lowerdir, upperdir or workdir", opts)
	}
	return lowers, upper, work, nil
}

// idmappedOverlay creates a detached overlay mount (its fd) from idmapped
// clones of the lower layers and the (unmapped) upper and work dirs.
func idmappedOverlay(nsFd int, lowers []string, upper, work string) (int, error) {
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	clone := func(path string) (string, error) {
		fd, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			return "", fmt.Errorf("open_tree %s: %w", path, err)
		}
		fds = append(fds, fd)
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(nsFd)}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, attr); err != nil {
			return "", fmt.Errorf("idmap %s: %w", path, err)
		}
		return "/proc/self/fd/" + strconv.Itoa(fd), nil
	}
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	for _, l := range lowers {
		p, err := clone(l)
		if err != nil {
			return -1, err
		}
		if err := unix.FsconfigSetString(fsfd, "lowerdir+", p); err != nil {
			return -1, fmt.Errorf("overlay lowerdir+ %s: %w", l, err)
		}
	}
	if err := unix.FsconfigSetString(fsfd, "upperdir", upper); err != nil {
		return -1, fmt.Errorf("overlay upperdir: %w", err)
	}
	if err := unix.FsconfigSetString(fsfd, "workdir", work); err != nil {
		return -1, fmt.Errorf("overlay workdir: %w", err)
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, fmt.Errorf("create overlay on idmapped layers: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("fsmount overlay: %w", err)
	}
	return mfd, nil
}

// idmapContainerRootfs maps a container's freshly mounted rootfs into its
// pod's user namespace (through the pause process), when the pod has one.
// CreateContainer calls it right after mounting the rootfs.
func (s *Service) idmapContainerRootfs(sbCfg *runtime.PodSandboxConfig, sandboxPID int, rootfs string) error {
	// Mode POD is the enum's zero value: absent options are not POD.
	u := oci.PodUserNamespace(sbCfg)
	if u == nil {
		return nil
	}
	if len(u.GetUids()) != 1 || len(u.GetGids()) != 1 {
		return fmt.Errorf("pod user namespace: %w", oci.ValidatePodUserNamespace(sbCfg))
	}
	if sandboxPID <= 0 {
		return fmt.Errorf("pod user namespace: the pause is not running: %w", errdefs.ErrFailedPrecondition)
	}
	return idmapRootfs(rootfs, filepath.Join("/proc", strconv.Itoa(sandboxPID), "ns", "user"), u.GetUids()[0].GetHostId(), u.GetGids()[0].GetHostId())
}

// usernsSupported reports whether pods with their own user namespace work
// with runtime rt on this host (nil) or why not.
func (s *Service) usernsSupported(ctx context.Context, rt *runc.Runtime) error {
	if err := runtimeJoinsUserns(ctx, rt); err != nil {
		return err
	}
	return s.idmapProbe()
}

// runtimeJoinsUserns checks that the runtime knows user namespaces; it
// needs nothing more, since crid makes the namespace and idmaps the rootfs.
func runtimeJoinsUserns(ctx context.Context, rt *runc.Runtime) error {
	feat, err := rt.Features(ctx)
	if err != nil {
		return fmt.Errorf("runtime %s features: %w", rt.Name, err)
	}
	if feat.Linux == nil || !slices.Contains(feat.Linux.Namespaces, "user") {
		return fmt.Errorf("runtime %s does not support user namespaces", rt.Name)
	}
	return nil
}

// probeIdmappedOverlay checks that the kernel can build an overlay on
// idmapped layers of the filesystem under root (crid's root, where layers
// live), exactly as idmapRootfs does. Every mount it makes stays detached,
// so nothing is left mounted whatever happens.
func probeIdmappedOverlay(root string) error {
	dir, err := os.MkdirTemp(root, ".userns-probe-")
	if err != nil {
		return fmt.Errorf("idmap probe: %w", err)
	}
	defer os.RemoveAll(dir)
	lower, upper, work := filepath.Join(dir, "l"), filepath.Join(dir, "u"), filepath.Join(dir, "w")
	for _, d := range []string{lower, upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("idmap probe: %w", err)
		}
	}
	m := &runtime.IDMapping{ContainerId: 0, HostId: 1 << 20, Length: 65536}
	h, err := newUsernsHelper(m, m, false)
	if err != nil {
		return fmt.Errorf("idmap probe: %w", err)
	}
	defer h.close()
	ns, err := os.Open(h.nsPath("user"))
	if err != nil {
		return fmt.Errorf("idmap probe: %w", err)
	}
	defer ns.Close()
	mfd, err := idmappedOverlay(int(ns.Fd()), []string{lower}, upper, work)
	if err != nil {
		return fmt.Errorf("idmap probe: %w", err)
	}
	unix.Close(mfd)
	return nil
}

// errUsernsUnsupported wraps why a user namespace pod cannot run here.
func errUsernsUnsupported(err error) error {
	return fmt.Errorf("pod user namespaces are not supported on this host: %w: %w", err, errdefs.ErrNotImplemented)
}
