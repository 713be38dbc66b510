package oci

import (
	"math"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// User namespaces (KEP-127). A pod either shares the host's user namespace
// (userns_options absent or mode NODE) or has one of its own (mode POD)
// that the pause container and every container of the pod join. crid makes
// that namespace itself, before the pause container, so that the pod's
// network namespace can be owned by it (the pause can then mount sysfs)
// and the rootfs can be idmapped with it; runc is handed paths to join.

// PodUserNamespace returns the pod's user namespace options when the pod
// has a user namespace of its own (mode POD), nil when it shares the host's.
func PodUserNamespace(cfg *runtime.PodSandboxConfig) *runtime.UserNamespace {
	// POD is the enum's zero value: absent options mean the host's.
	u := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions()
	if u == nil || u.GetMode() != runtime.NamespaceMode_POD {
		return nil
	}
	return u
}

// ValidatePodUserNamespace checks a pod's user namespace request: mode NODE
// without mappings, or mode POD with exactly one uid and one gid mapping
// that maps container id 0, on a pod that shares none of the host's
// network, pid and ipc namespaces. Errors wrap errdefs.ErrInvalidArgument.
func ValidatePodUserNamespace(cfg *runtime.PodSandboxConfig) error {
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	u := ns.GetUsernsOptions()
	if u == nil {
		return nil
	}
	switch u.GetMode() {
	case runtime.NamespaceMode_NODE:
		if len(u.GetUids()) > 0 || len(u.GetGids()) > 0 {
			return invalid("user namespace mode NODE takes no uid/gid mappings (got %d uid, %d gid)", len(u.GetUids()), len(u.GetGids()))
		}
		return nil
	case runtime.NamespaceMode_POD:
	default:
		return invalid("user namespace mode %v is not supported for pods (only POD or NODE)", u.GetMode())
	}
	if err := validateMappings("uid", u.GetUids()); err != nil {
		return err
	}
	if err := validateMappings("gid", u.GetGids()); err != nil {
		return err
	}
	// The host namespaces are owned by the host's user namespace: the pod's
	// root could not administer them, and kubelet refuses such pods too.
	for _, n := range []struct {
		what string
		mode runtime.NamespaceMode
	}{{"network", ns.GetNetwork()}, {"pid", ns.GetPid()}, {"ipc", ns.GetIpc()}} {
		if n.mode == runtime.NamespaceMode_NODE {
			return invalid("a pod with its own user namespace cannot use the host %s namespace", n.what)
		}
	}
	return nil
}

// validateMappings accepts exactly one mapping that maps container id 0 to
// a host range that fits in 32 bits. One mapping is what kubelet sends and
// what an idmapped rootfs mount is made from.
func validateMappings(kind string, m []*runtime.IDMapping) error {
	if len(m) != 1 {
		return invalid("user namespace: exactly one %s mapping is supported, got %d", kind, len(m))
	}
	x := m[0]
	if x == nil || x.GetLength() == 0 {
		return invalid("user namespace: %s mapping has length 0", kind)
	}
	if x.GetContainerId() != 0 {
		return invalid("user namespace: %s mapping must map container id 0 (it starts at %d)", kind, x.GetContainerId())
	}
	if uint64(x.GetHostId())+uint64(x.GetLength()) > math.MaxUint32 {
		return invalid("user namespace: %s mapping %d+%d exceeds the id range", kind, x.GetHostId(), x.GetLength())
	}
	return nil
}

func specMappings(m []*runtime.IDMapping) []specs.LinuxIDMapping {
	out := make([]specs.LinuxIDMapping, 0, len(m))
	for _, x := range m {
		out = append(out, specs.LinuxIDMapping{ContainerID: x.GetContainerId(), HostID: x.GetHostId(), Size: x.GetLength()})
	}
	return out
}

// sandboxUserns puts the pause container into the pod's user namespace at
// p.UsernsPath. The mappings are written too: runc derives the host ids of
// container root from them (for the devices it bind-mounts, /dev/pts, ...),
// even when it joins an existing namespace.
func sandboxUserns(s *specs.Spec, p SandboxParams) error {
	u := PodUserNamespace(p.Config)
	if u == nil {
		return nil
	}
	if p.UsernsPath == "" {
		return invalid("sandbox %s: a pod user namespace needs its namespace path", p.ID)
	}
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: p.UsernsPath})
	s.Linux.UIDMappings, s.Linux.GIDMappings = specMappings(u.GetUids()), specMappings(u.GetGids())
	return nil
}

// containerUserns joins a container to its pod's user namespace (through
// the pause process). A container's own userns_options, when present, must
// agree with the pod's: kubelet copies the pod's, and a container cannot
// leave the user namespace its network and ipc namespaces belong to.
func containerUserns(s *specs.Spec, p ContainerParams, ns *runtime.NamespaceOption) error {
	pod := PodUserNamespace(p.SandboxConfig)
	own := ns.GetUsernsOptions()
	if own != nil {
		podMode := runtime.NamespaceMode_NODE
		if pod != nil {
			podMode = runtime.NamespaceMode_POD
		}
		if own.GetMode() != podMode {
			return invalid("user namespaces of container and pod differ: container mode %v, pod mode %v", own.GetMode(), podMode)
		}
		if pod != nil && (len(own.GetUids()) > 0 || len(own.GetGids()) > 0) &&
			(!sameMappings(own.GetUids(), pod.GetUids()) || !sameMappings(own.GetGids(), pod.GetGids())) {
			return invalid("user namespaces of container and pod differ: container mappings are not the pod's")
		}
	}
	if pod == nil {
		return nil
	}
	if p.SandboxPID <= 0 {
		return invalid("joining the sandbox's user namespace needs the sandbox pid")
	}
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: nsPath(p.SandboxPID, "user")})
	s.Linux.UIDMappings, s.Linux.GIDMappings = specMappings(pod.GetUids()), specMappings(pod.GetGids())
	return nil
}

func sameMappings(a, b []*runtime.IDMapping) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].GetContainerId() != b[i].GetContainerId() || a[i].GetHostId() != b[i].GetHostId() || a[i].GetLength() != b[i].GetLength() {
			return false
		}
	}
	return true
}
