package oci

import (
	"fmt"
	"maps"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/internal/cgroups"
)

// crid's own annotations. They take effect only for pods whose runtime
// handler allows them (runtime.handlers.<name>.allowed_annotations); see
// docs/annotations.md. Pod keys are read from the pod's annotations;
// container keys from the container's annotations, falling back to the
// pod's (kubelet passes a pod's annotations only to its sandbox, so a pod
// annotation is the way to set a container key from a Pod object).
const (
	// AnnotationPrefix starts every crid annotation.
	AnnotationPrefix = "io.crid."
	// AnnotationShmSize is the size of the pod's private /dev/shm tmpfs.
	AnnotationShmSize = "io.crid.shm-size"
	// AnnotationForcePause runs the pod with a pause container even when
	// crid would pin its namespaces without one.
	AnnotationForcePause = "io.crid.force-pause"
	// AnnotationUmask is the umask of a container's processes.
	AnnotationUmask = "io.crid.umask"
	// AnnotationDevices adds host devices to a container.
	AnnotationDevices = "io.crid.devices"
	// AnnotationUnified sets cgroup v2 files (linux.resources.unified).
	AnnotationUnified = "io.crid.unified"
	// AnnotationRlimits sets a container's resource limits.
	AnnotationRlimits = "io.crid.rlimits"
	// AnnotationSeccompNotifier makes the syscalls a container's seccomp
	// profile blocks notify its monitor, which logs them (or stops the
	// container) and fails them as the profile would.
	AnnotationSeccompNotifier = "io.crid.seccomp-notifier"
)

// defaultShmBytes is the /dev/shm size without an io.crid.shm-size
// annotation (defaultShmSize, 64 MiB, as containerd and CRI-O).
const defaultShmBytes = 64 << 20

// AnnotationAllowed reports whether key matches one of patterns, in
// path.Match syntax: '*' matches any run of characters but '/', so
// "io.crid.*" covers crid's keys and "cdi.k8s.io/*" a domain's keys.
// The config validated the patterns (a malformed one matches nothing).
func AnnotationAllowed(key string, patterns []string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, key); ok {
			return true
		}
	}
	return false
}

// FilterAnnotations splits ann into the keys patterns allow and the sorted
// keys they do not.
func FilterAnnotations(ann map[string]string, patterns []string) (allowed map[string]string, ignored []string) {
	allowed = map[string]string{}
	for k, v := range ann {
		if AnnotationAllowed(k, patterns) {
			allowed[k] = v
		} else {
			ignored = append(ignored, k)
		}
	}
	slices.Sort(ignored)
	return allowed, ignored
}

// badAnnotation is the InvalidArgument error for a malformed value: it
// names the annotation and the form it accepts.
func badAnnotation(key, value, want string) error {
	return fmt.Errorf("annotation %s: invalid value %q: want %s: %w", key, value, want, errdefs.ErrInvalidArgument)
}

// PodOptions are a pod's settings from crid's (allowed) annotations.
type PodOptions struct {
	ShmSize    int64 // bytes; 0 = the default
	ForcePause bool
}

// ParsePodOptions validates the pod keys of allowed annotations.
func ParsePodOptions(ann map[string]string) (PodOptions, error) {
	var o PodOptions
	if v, ok := ann[AnnotationShmSize]; ok {
		n, err := parseQuantity(v)
		if err != nil || n <= 0 {
			return o, badAnnotation(AnnotationShmSize, v, `a positive size in bytes with an optional suffix k, M, G, T (powers of 1000) or Ki, Mi, Gi, Ti (powers of 1024), e.g. "256Mi"`)
		}
		o.ShmSize = n
	}
	if v, ok := ann[AnnotationForcePause]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, badAnnotation(AnnotationForcePause, v, `"true" or "false"`)
		}
		o.ForcePause = b
	}
	return o, nil
}

// ShmMountOptions are the tmpfs options of the pod's /dev/shm.
func (o PodOptions) ShmMountOptions() string {
	size := o.ShmSize
	if size == 0 {
		size = defaultShmBytes
	}
	return fmt.Sprintf("mode=1777,size=%d", size)
}

// quantitySuffixes are the multipliers parseQuantity accepts, longest first.
var quantitySuffixes = []struct {
	s string
	m int64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
}

// parseQuantity parses a byte count in the integer subset of Kubernetes
// quantities ("64Mi", "1G", "1048576").
func parseQuantity(v string) (int64, error) {
	num, mult := v, int64(1)
	for _, q := range quantitySuffixes {
		if n, ok := strings.CutSuffix(v, q.s); ok {
			num, mult = n, q.m
			break
		}
	}
	if num == "" || strings.Trim(num, "0123456789") != "" {
		return 0, fmt.Errorf("not a quantity: %q", v)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, err
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("quantity %q overflows", v)
	}
	return n * mult, nil
}

// ContainerOptions are a container's settings from crid's annotations.
type ContainerOptions struct {
	Umask   *uint32
	Devices []*runtime.Device
	Unified map[string]string
	Rlimits []specs.POSIXRlimit
	// SeccompNotifier is NotifierLog, NotifierStop or "" (none). The core
	// applies it (RewriteForNotifier) once the spec is final.
	SeccompNotifier string
}

// ParseContainerOptions validates the container keys of allowed
// annotations.
func ParseContainerOptions(ann map[string]string) (ContainerOptions, error) {
	var o ContainerOptions
	var err error
	if v, ok := ann[AnnotationUmask]; ok {
		if o.Umask, err = parseUmask(v); err != nil {
			return o, err
		}
	}
	if v, ok := ann[AnnotationDevices]; ok {
		if o.Devices, err = parseDevices(v); err != nil {
			return o, err
		}
	}
	if v, ok := ann[AnnotationUnified]; ok {
		if o.Unified, err = parseUnified(v); err != nil {
			return o, err
		}
	}
	if v, ok := ann[AnnotationRlimits]; ok {
		if o.Rlimits, err = parseRlimits(v); err != nil {
			return o, err
		}
	}
	if v, ok := ann[AnnotationSeccompNotifier]; ok {
		if o.SeccompNotifier, err = parseNotifier(v); err != nil {
			return o, err
		}
	}
	return o, nil
}

func parseUmask(v string) (*uint32, error) {
	n, err := strconv.ParseUint(v, 8, 32)
	if err != nil || n > 0o777 || len(v) > 4 {
		return nil, badAnnotation(AnnotationUmask, v, `an octal umask 0000 to 0777, e.g. "0027"`)
	}
	u := uint32(n)
	return &u, nil
}

// parseDevices parses "host[:container][:perms]" entries separated by
// commas, as docker run --device.
func parseDevices(v string) ([]*runtime.Device, error) {
	const want = `comma-separated host-path[:container-path][:permissions] with absolute paths and permissions of "rwm", e.g. "/dev/fuse:rwm"`
	var out []*runtime.Device
	for _, entry := range strings.Split(v, ",") {
		parts := strings.Split(entry, ":")
		d := &runtime.Device{HostPath: parts[0]}
		switch len(parts) {
		case 1:
		case 2:
			if isPerms(parts[1]) {
				d.Permissions = parts[1]
			} else {
				d.ContainerPath = parts[1]
			}
		case 3:
			d.ContainerPath, d.Permissions = parts[1], parts[2]
		default:
			return nil, badAnnotation(AnnotationDevices, v, want)
		}
		if !path.IsAbs(d.HostPath) || (d.ContainerPath != "" && !path.IsAbs(d.ContainerPath)) ||
			(d.Permissions != "" && !isPerms(d.Permissions)) || strings.ContainsRune(entry, 0) {
			return nil, badAnnotation(AnnotationDevices, v, want)
		}
		out = append(out, d)
	}
	return out, nil
}

func isPerms(s string) bool { return s != "" && strings.Trim(s, "rwm") == "" }

// parseUnified parses "file=value" pairs separated by ';' (values such as
// cpu.max's "max 100000" hold spaces and commas).
func parseUnified(v string) (map[string]string, error) {
	const want = `semicolon-separated cgroup v2 file=value pairs, e.g. "memory.high=268435456;pids.max=100"`
	out := map[string]string{}
	for _, kv := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || !validCgroupFile(k) || strings.ContainsAny(val, "\n\x00") {
			return nil, badAnnotation(AnnotationUnified, v, want)
		}
		out[k] = val
	}
	return out, nil
}

// validCgroupFile accepts "controller.file" names: no path separators, so
// a key cannot leave the container's cgroup directory.
func validCgroupFile(k string) bool {
	ctrl, file, ok := strings.Cut(k, ".")
	if !ok || ctrl == "" || file == "" {
		return false
	}
	return strings.Trim(k, "abcdefghijklmnopqrstuvwxyz0123456789_.") == "" && !strings.Contains(k, "..")
}

// rlimitNames maps the annotation's names to the OCI rlimit types.
var rlimitNames = map[string]string{
	"as": "RLIMIT_AS", "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA",
	"fsize": "RLIMIT_FSIZE", "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK",
	"msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE",
	"nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO",
	"rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK",
}

// parseRlimits parses "name=soft[:hard]" entries separated by commas; a
// single value sets both limits, "unlimited" is no limit.
func parseRlimits(v string) ([]specs.POSIXRlimit, error) {
	const want = `comma-separated name=soft[:hard] with names such as nofile, nproc, memlock, core and values as numbers or "unlimited", e.g. "nofile=4096:8192"`
	var out []specs.POSIXRlimit
	seen := map[string]bool{}
	for _, entry := range strings.Split(v, ",") {
		name, val, ok := strings.Cut(entry, "=")
		typ, known := rlimitNames[strings.TrimSpace(name)]
		if !ok || !known || seen[typ] {
			return nil, badAnnotation(AnnotationRlimits, v, want)
		}
		seen[typ] = true
		softS, hardS, pair := strings.Cut(val, ":")
		if !pair {
			hardS = softS
		}
		soft, err1 := parseRlimitValue(softS)
		hard, err2 := parseRlimitValue(hardS)
		if err1 != nil || err2 != nil || soft > hard {
			return nil, badAnnotation(AnnotationRlimits, v, want+" (soft not above hard)")
		}
		out = append(out, specs.POSIXRlimit{Type: typ, Soft: soft, Hard: hard})
	}
	return out, nil
}

func parseRlimitValue(s string) (uint64, error) {
	if s == "unlimited" {
		return math.MaxUint64, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// ApplyContainerOptions changes spec s as o asks. unifiedHost says whether
// the host's cgroups are v2 only: a runtime on a v1 or hybrid hierarchy
// cannot apply linux.resources.unified (runc refuses it there), so the
// annotation is refused with FailedPrecondition rather than failing later
// in the runtime.
func ApplyContainerOptions(s *specs.Spec, o ContainerOptions, unifiedHost bool) error {
	if o.Umask != nil {
		s.Process.User.Umask = o.Umask
	}
	if len(o.Unified) > 0 {
		if !unifiedHost {
			return fmt.Errorf("annotation %s: this host's cgroups are not cgroup v2 only (v1 or hybrid), where runtimes cannot apply linux.resources.unified: %w", AnnotationUnified, errdefs.ErrFailedPrecondition)
		}
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		if s.Linux.Resources.Unified == nil {
			s.Linux.Resources.Unified = map[string]string{}
		}
		maps.Copy(s.Linux.Resources.Unified, o.Unified)
	}
	for _, r := range o.Rlimits {
		i := slices.IndexFunc(s.Process.Rlimits, func(x specs.POSIXRlimit) bool { return x.Type == r.Type })
		if i >= 0 {
			s.Process.Rlimits[i] = r
		} else {
			s.Process.Rlimits = append(s.Process.Rlimits, r)
		}
	}
	if len(o.Devices) > 0 {
		return addAnnotatedDevices(s, o.Devices)
	}
	return nil
}

// addAnnotatedDevices adds the devices as config.devices would, skipping
// nodes the spec already has at that path (a privileged container has the
// host's).
func addAnnotatedDevices(s *specs.Spec, ds []*runtime.Device) error {
	devs, rules, err := requestedDevices(ds)
	if err != nil {
		return fmt.Errorf("annotation %s: %w", AnnotationDevices, err)
	}
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	for i, d := range devs {
		if slices.ContainsFunc(s.Linux.Devices, func(x specs.LinuxDevice) bool { return x.Path == d.Path }) {
			continue
		}
		s.Linux.Devices = append(s.Linux.Devices, d)
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, rules[i])
	}
	return nil
}

// UnifiedCgroupHost reports whether the host's cgroups are v2 only.
func UnifiedCgroupHost() bool { return cgroups.Unified() }

// Pause-spec annotations containerd sets too, with its names: VM
// runtimes (Kata) size the sandbox from the pod's resources kubelet sends.
const (
	AnnotationSandboxImageName = "io.kubernetes.cri.podsandbox.image-name"
	AnnotationSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
	AnnotationSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	AnnotationSandboxCPUShares = "io.kubernetes.cri.sandbox-cpu-shares"
	AnnotationSandboxMemory    = "io.kubernetes.cri.sandbox-memory"
)

// crisKeys are the annotations crid itself sets on specs.
var crisKeys = []string{
	AnnotationContainerType, AnnotationSandboxID, AnnotationSandboxName, AnnotationSandboxNamespace,
	AnnotationSandboxUID, AnnotationSandboxLogDir, AnnotationContainerName, AnnotationImageName,
	AnnotationSandboxImageName, AnnotationSandboxCPUPeriod, AnnotationSandboxCPUQuota,
	AnnotationSandboxCPUShares, AnnotationSandboxMemory,
}

// AddSandboxAnnotations adds to a pause's spec the pause image's name and
// the pod's resources (when kubelet sent them) under containerd's keys.
func AddSandboxAnnotations(s *specs.Spec, cfg *runtime.PodSandboxConfig, sandboxImage string) {
	s.Annotations[AnnotationSandboxImageName] = sandboxImage
	r := cfg.GetLinux().GetResources()
	if r == nil {
		return
	}
	s.Annotations[AnnotationSandboxCPUPeriod] = strconv.FormatInt(r.GetCpuPeriod(), 10)
	s.Annotations[AnnotationSandboxCPUQuota] = strconv.FormatInt(r.GetCpuQuota(), 10)
	s.Annotations[AnnotationSandboxCPUShares] = strconv.FormatInt(r.GetCpuShares(), 10)
	s.Annotations[AnnotationSandboxMemory] = strconv.FormatInt(r.GetMemoryLimitInBytes(), 10)
}

// RestrictSpecAnnotations leaves in s only crid's own io.kubernetes.cri.*
// keys and the allowed pod, then container annotations (as containerd's
// pod_annotations and container_annotations): OCI runtimes act on their
// own keys (run.oci.*, gVisor's, Kata's), so only what the handler allows
// may reach them.
func RestrictSpecAnnotations(s *specs.Spec, pod, ctr map[string]string) {
	out := map[string]string{}
	maps.Copy(out, pod)
	maps.Copy(out, ctr)
	for _, k := range crisKeys {
		if v, ok := s.Annotations[k]; ok {
			out[k] = v
		}
	}
	s.Annotations = out
}
