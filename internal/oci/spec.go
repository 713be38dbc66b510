// Package oci generates OCI runtime specs for pod sandboxes (pause
// containers) and containers from their CRI configs and image configs.
package oci

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// SandboxParams is what a pause container's spec is made from.
type SandboxParams struct {
	ID     string
	Config *runtime.PodSandboxConfig
	Image  ocispec.ImageConfig // the pause image's config
	// RootfsPath is the mounted root filesystem.
	RootfsPath string
	// NetNSPath is the pinned network namespace; "" with host network.
	NetNSPath string
	// Files crid prepared for the pod, bind-mounted into it. Empty = none.
	ResolvConfPath, HostsPath, HostnamePath string
	// ShmPath is the pod's /dev/shm mount source; "" = private tmpfs
	// (or the host's /dev/shm with host IPC).
	ShmPath string
	// CgroupsPath as the runtime expects it (cgroupfs path or systemd slice:prefix:name).
	CgroupsPath string
	// MinOOMScoreAdj is the lowest oom_score_adj crid may set; lower requests are clamped.
	MinOOMScoreAdj int
	// UsernsPath is the pod's user namespace for the pause to join when
	// the pod has its own (see PodUserNamespace); "" otherwise.
	UsernsPath string
}

// ContainerParams is what a container's spec is made from.
type ContainerParams struct {
	ID, SandboxID string
	Config        *runtime.ContainerConfig
	SandboxConfig *runtime.PodSandboxConfig
	Image         ocispec.ImageConfig
	ImageName     string // for annotations
	RootfsPath    string
	// SandboxPID is the pause process; its ipc/uts/pid namespaces are joined via /proc/<pid>/ns.
	SandboxPID int
	// IPCNSPath and UTSNSPath are the pod's pinned namespaces when it has
	// no pause (SandboxPID 0).
	IPCNSPath, UTSNSPath string
	// TargetPID is the init process of the container named by
	// namespace_options.target_id; its pid namespace is joined when pid
	// mode is TARGET.
	TargetPID                                        int
	NetNSPath                                        string // "" with host network
	ResolvConfPath, HostsPath, HostnamePath, ShmPath string
	CgroupsPath                                      string
	MinOOMScoreAdj                                   int
	// DefaultMaskedPaths applies the default masked and read-only /proc and
	// /sys paths when the request carries none. Off by default, as in
	// containerd: over gRPC an empty list is indistinguishable from none,
	// and kubelet sends empty lists exactly for procMount Unmasked (it
	// always sends the defaults otherwise). Turn it on for clients that
	// never send masked paths and want the safe defaults.
	DefaultMaskedPaths bool
	// ImageVolumes maps the index in Config.Mounts of each image volume
	// (a mount with an image, KEP-4639) to the host directory to bind
	// there: the image mounted read-only, with image_sub_path applied
	// (see ImageSubPath). Every image mount must have an entry.
	ImageVolumes map[int]string
}

// SandboxSpec builds the pause container's spec. Invalid input is an
// error wrapping errdefs.ErrInvalidArgument.
func SandboxSpec(p SandboxParams) (*specs.Spec, error) {
	return sandboxSpec(p, probeHost())
}

// ContainerSpec builds a container's spec: command/args/env/workdir merged
// with the image config, user from the image's /etc/passwd and /etc/group,
// mounts, capabilities, masked/read-only paths, seccomp, resources.
// Invalid input is an error wrapping errdefs.ErrInvalidArgument.
func ContainerSpec(p ContainerParams) (*specs.Spec, error) {
	return containerSpec(p, probeHost())
}

func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

func sandboxSpec(p SandboxParams, h hostFacts) (*specs.Spec, error) {
	cfg := p.Config
	if cfg == nil {
		return nil, invalid("sandbox %s: no config", p.ID)
	}
	if p.ID == "" || p.RootfsPath == "" {
		return nil, invalid("sandbox: id and rootfs path are required")
	}
	sc := cfg.GetLinux().GetSecurityContext()
	ns := sc.GetNamespaceOptions()
	privileged := sc.GetPrivileged()
	hostNet := ns.GetNetwork() == runtime.NamespaceMode_NODE
	hostIPC := ns.GetIpc() == runtime.NamespaceMode_NODE
	if err := ValidatePodUserNamespace(cfg); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", p.ID, err)
	}

	args := append(slices.Clone(p.Image.Entrypoint), p.Image.Cmd...)
	if len(args) == 0 {
		args = []string{defaultPauseCommand}
	}
	cwd := p.Image.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	user, err := resolveUser(p.RootfsPath, userRequest{
		image:        p.Image.User,
		uid:          int64Ptr(sc.GetRunAsUser()),
		gid:          int64Ptr(sc.GetRunAsGroup()),
		supplemental: sc.GetSupplementalGroups(),
		strict:       sc.GetSupplementalGroupsPolicy() == runtime.SupplementalGroupsPolicy_Strict,
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", p.ID, err)
	}
	oom := clampOOM(defaultSandboxOOMScoreAdj, p.MinOOMScoreAdj)
	caps, err := capabilities(nil, privileged, h.caps)
	if err != nil {
		return nil, err
	}
	shares := uint64(defaultSandboxCPUShares)
	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: p.RootfsPath, Readonly: true},
		Process: &specs.Process{
			Args:            args,
			Env:             withDefaultPath(slices.Clone(p.Image.Env)),
			Cwd:             cwd,
			User:            user,
			Capabilities:    caps,
			NoNewPrivileges: true,
			OOMScoreAdj:     &oom,
		},
		Linux: &specs.Linux{
			CgroupsPath: p.CgroupsPath,
			Sysctl:      maps.Clone(cfg.GetLinux().GetSysctls()),
			Resources: &specs.LinuxResources{
				CPU:     &specs.LinuxCPU{Shares: &shares},
				Devices: deviceRules(privileged),
			},
		},
		Annotations: map[string]string{},
	}
	if err := checkProcess(s.Process); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", p.ID, err)
	}
	if !hostNet {
		s.Hostname = cfg.GetHostname()
	}

	// Namespaces. With pid CONTAINER the sandbox still gets its own pid
	// namespace; only NODE shares the host's.
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.MountNamespace})
	if ns.GetPid() != runtime.NamespaceMode_NODE {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	if !hostIPC {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.IPCNamespace})
	}
	if !hostNet {
		s.Linux.Namespaces = append(s.Linux.Namespaces,
			specs.LinuxNamespace{Type: specs.UTSNamespace},
			specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: p.NetNSPath})
	}
	if h.unified && !privileged {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	if err := sandboxUserns(s, p); err != nil {
		return nil, err
	}

	shm := p.ShmPath
	if shm == "" && hostIPC {
		shm = hostShmPath
	}
	s.Mounts = append(baseMounts(privileged), shmMount(shm, true))
	for _, f := range []struct{ src, dst string }{
		{p.ResolvConfPath, etcResolv}, {p.HostsPath, etcHosts}, {p.HostnamePath, etcHostname},
	} {
		if f.src != "" {
			s.Mounts = append(s.Mounts, bindMount(f.src, f.dst, true))
		}
	}

	if !privileged {
		s.Linux.MaskedPaths = defaultMaskedPaths()
		s.Linux.ReadonlyPaths = slices.Clone(defaultReadonlyPaths)
	}
	//lint:ignore SA1019 older kubelets still send the deprecated seccomp_profile_path field
	if s.Linux.Seccomp, err = seccompProfile(sc.GetSeccomp(), sc.GetSeccompProfilePath(), privileged, s); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", p.ID, err)
	}
	if s.Process.ApparmorProfile, err = apparmorProfile(sc.GetApparmor(), "", privileged, h); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", p.ID, err)
	}

	// The config's annotations first, so a request cannot overwrite the
	// ones crid's own tooling relies on.
	maps.Copy(s.Annotations, cfg.GetAnnotations())
	s.Annotations[AnnotationContainerType] = ContainerTypeSandbox
	s.Annotations[AnnotationSandboxID] = p.ID
	s.Annotations[AnnotationSandboxName] = cfg.GetMetadata().GetName()
	s.Annotations[AnnotationSandboxNamespace] = cfg.GetMetadata().GetNamespace()
	s.Annotations[AnnotationSandboxUID] = cfg.GetMetadata().GetUid()
	s.Annotations[AnnotationSandboxLogDir] = cfg.GetLogDirectory()
	return s, nil
}

// deviceRules starts the device cgroup from deny-all (runc then allows its
// standard set: null, zero, full, tty, random, urandom, ptmx, pts) or,
// for privileged containers, allow-all.
func deviceRules(privileged bool) []specs.LinuxDeviceCgroup {
	return []specs.LinuxDeviceCgroup{{Allow: privileged, Access: "rwm"}}
}

func int64Ptr(v *runtime.Int64Value) *int64 {
	if v == nil {
		return nil
	}
	x := v.GetValue()
	return &x
}

// processArgs merges the request's command and args with the image's
// entrypoint and cmd the way kubelet documents it (and docker did):
// command replaces the entrypoint and discards the image's cmd; args alone
// replace only the cmd.
func processArgs(cfg *runtime.ContainerConfig, img ocispec.ImageConfig) ([]string, error) {
	command, args := cfg.GetCommand(), cfg.GetArgs()
	if len(command) == 0 {
		if len(args) == 0 {
			args = img.Cmd
		}
		// An entrypoint of [""] is docker's way of saying "reset".
		if !(len(img.Entrypoint) == 1 && img.Entrypoint[0] == "") {
			command = img.Entrypoint
		}
	}
	out := append(slices.Clone(command), args...)
	if len(out) == 0 {
		return nil, invalid("no command specified: neither the container config nor the image has a command, args, entrypoint or cmd")
	}
	return out, nil
}

// checkProcess refuses what runc would refuse only when it starts the
// process, with an error that does not say InvalidArgument: an
// environment entry that is not NAME=value (from the request or from the
// untrusted image), a relative working directory, a NUL byte (EINVAL to
// execve and chdir).
func checkProcess(p *specs.Process) error {
	for _, a := range p.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return invalid("argument %q has a NUL byte", a)
		}
	}
	for _, e := range p.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" || strings.IndexByte(e, 0) >= 0 {
			return invalid("environment entry %q is not NAME=value", e)
		}
	}
	if !path.IsAbs(p.Cwd) || strings.IndexByte(p.Cwd, 0) >= 0 {
		return invalid("working directory %q is not an absolute path", p.Cwd)
	}
	return nil
}

func containerSpec(p ContainerParams, h hostFacts) (*specs.Spec, error) {
	cfg := p.Config
	if cfg == nil {
		return nil, invalid("container %s: no config", p.ID)
	}
	if p.ID == "" || p.SandboxID == "" || p.RootfsPath == "" {
		return nil, invalid("container: id, sandbox id and rootfs path are required")
	}
	wrap := func(err error) error { return fmt.Errorf("container config: %w", err) }
	sc := cfg.GetLinux().GetSecurityContext()
	ns := sc.GetNamespaceOptions()
	privileged := sc.GetPrivileged()
	if privileged && !p.SandboxConfig.GetLinux().GetSecurityContext().GetPrivileged() {
		return nil, wrap(invalid("privileged container in a sandbox that is not privileged"))
	}
	hostIPC := ns.GetIpc() == runtime.NamespaceMode_NODE

	args, err := processArgs(cfg, p.Image)
	if err != nil {
		return nil, wrap(err)
	}

	// HOSTNAME first so the image or the request may still set it.
	hostname := p.SandboxConfig.GetHostname()
	if hostname == "" {
		if hostname, err = h.hostname(); err != nil {
			return nil, fmt.Errorf("container %s: host name: %w", p.ID, err)
		}
	}
	env := mergeEnv([]string{"HOSTNAME=" + hostname}, p.Image.Env...)
	for _, kv := range cfg.GetEnvs() {
		env = mergeEnv(env, kv.GetKey()+"="+string(kv.GetValue()))
	}
	env = withDefaultPath(env)

	cwd := cfg.GetWorkingDir()
	if cwd == "" {
		cwd = p.Image.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}

	user, err := resolveUser(p.RootfsPath, userRequest{
		image:        p.Image.User,
		uid:          int64Ptr(sc.GetRunAsUser()),
		username:     sc.GetRunAsUsername(),
		gid:          int64Ptr(sc.GetRunAsGroup()),
		supplemental: sc.GetSupplementalGroups(),
		strict:       sc.GetSupplementalGroupsPolicy() == runtime.SupplementalGroupsPolicy_Strict,
	})
	if err != nil {
		return nil, wrap(err)
	}
	caps, err := capabilities(sc.GetCapabilities(), privileged, h.caps)
	if err != nil {
		return nil, wrap(err)
	}

	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: p.RootfsPath, Readonly: sc.GetReadonlyRootfs()},
		Process: &specs.Process{
			Terminal:        cfg.GetTty(),
			Args:            args,
			Env:             env,
			Cwd:             cwd,
			User:            user,
			Capabilities:    caps,
			NoNewPrivileges: sc.GetNoNewPrivs(),
		},
		Linux: &specs.Linux{
			CgroupsPath: p.CgroupsPath,
		},
		Annotations: map[string]string{},
	}
	if err := checkProcess(s.Process); err != nil {
		return nil, wrap(err)
	}

	res := cfg.GetLinux().GetResources()
	if res != nil {
		oom := clampOOM(int(res.GetOomScoreAdj()), p.MinOOMScoreAdj)
		s.Process.OOMScoreAdj = &oom
		if len(res.GetUnified()) > 0 && !h.unified {
			return nil, wrap(invalid("unified cgroup resources need cgroup v2, this host runs cgroup v1"))
		}
	}
	s.Linux.Resources = resourcesFromCRI(res, h.hugetlb, h.swap)
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	s.Linux.Resources.Devices = deviceRules(privileged)

	if err := containerNamespaces(s, p, ns, privileged, h); err != nil {
		return nil, wrap(err)
	}

	// Mounts: defaults, then the pod's files, then the request's, which win.
	shm := p.ShmPath
	if shm == "" && hostIPC {
		shm = hostShmPath
	}
	ro := sc.GetReadonlyRootfs()
	defaults := append(baseMounts(privileged), shmMount(shm, false))
	for _, f := range []struct{ src, dst string }{
		{p.ResolvConfPath, etcResolv}, {p.HostsPath, etcHosts}, {p.HostnamePath, etcHostname},
	} {
		if f.src != "" {
			defaults = append(defaults, bindMount(f.src, f.dst, ro))
		}
	}
	requested, err := criMounts(cfg.GetMounts(), p.ImageVolumes, s, h)
	if err != nil {
		return nil, wrap(err)
	}
	s.Mounts = mergeMounts(defaults, requested)

	devs, rules, err := requestedDevices(cfg.GetDevices())
	if err != nil {
		return nil, wrap(err)
	}
	if privileged {
		hostDevs, err := h.hostDevices()
		if err != nil {
			return nil, fmt.Errorf("container %s: %w", p.ID, err)
		}
		// Requested devices keep their container paths; host devices fill in the rest.
		have := map[string]bool{}
		for _, d := range devs {
			have[d.Path] = true
		}
		for _, d := range hostDevs {
			if !have[d.Path] {
				devs = append(devs, d)
			}
		}
	} else {
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, rules...)
	}
	s.Linux.Devices = devs

	switch {
	case privileged:
		// No masking: privileged containers see the host's /proc and /sys.
	case len(sc.GetMaskedPaths()) > 0 || len(sc.GetReadonlyPaths()) > 0 || !p.DefaultMaskedPaths:
		s.Linux.MaskedPaths = slices.Clone(sc.GetMaskedPaths())
		s.Linux.ReadonlyPaths = slices.Clone(sc.GetReadonlyPaths())
	default:
		s.Linux.MaskedPaths = defaultMaskedPaths()
		s.Linux.ReadonlyPaths = slices.Clone(defaultReadonlyPaths)
	}
	for _, mp := range append(slices.Clone(s.Linux.MaskedPaths), s.Linux.ReadonlyPaths...) {
		if strings.IndexByte(mp, 0) >= 0 {
			// runc's mount on it would fail at start with EINVAL.
			return nil, wrap(invalid("masked or read-only path %q has a NUL byte", mp))
		}
	}

	//lint:ignore SA1019 older kubelets still send the deprecated seccomp_profile_path field
	if s.Linux.Seccomp, err = seccompProfile(sc.GetSeccomp(), sc.GetSeccompProfilePath(), privileged, s); err != nil {
		return nil, wrap(err)
	}
	//lint:ignore SA1019 older kubelets still send the deprecated apparmor_profile field
	if s.Process.ApparmorProfile, err = apparmorProfile(sc.GetApparmor(), sc.GetApparmorProfile(), privileged, h); err != nil {
		return nil, wrap(err)
	}

	maps.Copy(s.Annotations, cfg.GetAnnotations())
	s.Annotations[AnnotationContainerType] = ContainerTypeContainer
	s.Annotations[AnnotationSandboxID] = p.SandboxID
	s.Annotations[AnnotationContainerName] = cfg.GetMetadata().GetName()
	s.Annotations[AnnotationImageName] = p.ImageName
	s.Annotations[AnnotationSandboxName] = p.SandboxConfig.GetMetadata().GetName()
	s.Annotations[AnnotationSandboxNamespace] = p.SandboxConfig.GetMetadata().GetNamespace()
	s.Annotations[AnnotationSandboxUID] = p.SandboxConfig.GetMetadata().GetUid()
	return s, nil
}

// containerNamespaces joins the pod's namespaces. The container never sets
// a hostname: it shares the sandbox's uts namespace (or the host's).
func containerNamespaces(s *specs.Spec, p ContainerParams, ns *runtime.NamespaceOption, privileged bool, h hostFacts) error {
	needPID := func(what string) error {
		if p.SandboxPID <= 0 {
			return invalid("joining the sandbox's %s namespace needs the sandbox pid", what)
		}
		return nil
	}
	add := func(t specs.LinuxNamespaceType, path string) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: t, Path: path})
	}
	add(specs.MountNamespace, "")
	if ns.GetNetwork() != runtime.NamespaceMode_NODE {
		path := p.NetNSPath
		if path == "" {
			if err := needPID("network"); err != nil {
				return err
			}
			path = nsPath(p.SandboxPID, "net")
		}
		add(specs.NetworkNamespace, path)
		if p.UTSNSPath != "" {
			add(specs.UTSNamespace, p.UTSNSPath)
		} else {
			if err := needPID("uts"); err != nil {
				return err
			}
			add(specs.UTSNamespace, nsPath(p.SandboxPID, "uts"))
		}
	}
	if ns.GetIpc() != runtime.NamespaceMode_NODE {
		if p.IPCNSPath != "" {
			add(specs.IPCNamespace, p.IPCNSPath)
		} else {
			if err := needPID("ipc"); err != nil {
				return err
			}
			add(specs.IPCNamespace, nsPath(p.SandboxPID, "ipc"))
		}
	}
	switch ns.GetPid() {
	case runtime.NamespaceMode_POD:
		switch podPID := p.SandboxConfig.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid(); {
		case p.SandboxPID <= 0 && podPID == runtime.NamespaceMode_CONTAINER:
			// The pod asked for no shared PID namespace, so crid runs it
			// without a pause and there is none to join. POD is the
			// CRI's zero value: a client that leaves the container's
			// options empty gets the namespace of its own that the pod
			// asked for (CRI-O does the same without an infra container).
			add(specs.PIDNamespace, "")
		case p.SandboxPID <= 0 && podPID == runtime.NamespaceMode_NODE:
			// The pod's PID namespace is the host's (hostPID).
		default:
			if err := needPID("pid"); err != nil {
				return err
			}
			add(specs.PIDNamespace, nsPath(p.SandboxPID, "pid"))
		}
	case runtime.NamespaceMode_CONTAINER:
		add(specs.PIDNamespace, "")
	case runtime.NamespaceMode_NODE:
	case runtime.NamespaceMode_TARGET:
		if ns.GetTargetId() == "" {
			return invalid("pid namespace mode TARGET without target_id")
		}
		if p.TargetPID <= 0 {
			return invalid("pid namespace target %s: target container is not running", ns.GetTargetId())
		}
		add(specs.PIDNamespace, nsPath(p.TargetPID, "pid"))
	default:
		return invalid("unknown pid namespace mode %v", ns.GetPid())
	}
	if err := containerUserns(s, p, ns); err != nil {
		return err
	}
	if h.unified && !privileged {
		add(specs.CgroupNamespace, "")
	}
	return nil
}
