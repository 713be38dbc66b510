package oci

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crid-dev/crid/internal/apparmor"
	"github.com/crid-dev/crid/internal/cgroups"
)

// Annotations crid puts on every spec. The keys are the ones containerd's
// CRI plugin uses, so tools that look for them (NRI plugins, hooks) work.
const (
	AnnotationContainerType          = "io.kubernetes.cri.container-type"
	AnnotationSandboxID              = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName            = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace       = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID             = "io.kubernetes.cri.sandbox-uid"
	AnnotationSandboxLogDir          = "io.kubernetes.cri.sandbox-log-directory"
	AnnotationContainerName          = "io.kubernetes.cri.container-name"
	AnnotationImageName              = "io.kubernetes.cri.image-name"
	ContainerTypeSandbox             = "sandbox"
	ContainerTypeContainer           = "container"
	defaultPathEnv                   = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	defaultSandboxOOMScoreAdj        = -998
	defaultSandboxCPUShares          = 2
	defaultShmSize                   = "size=65536k"
	defaultCgroupfsParent            = "/crid"
	defaultSystemdSlice              = "system.slice"
	systemdScopePrefix               = "crid"
	defaultPauseCommand              = "/pause"
	hostShmPath                      = "/dev/shm"
	etcHosts, etcResolv, etcHostname = "/etc/hosts", "/etc/resolv.conf", "/etc/hostname"
)

// defaultCaps is Docker's default capability set, which Kubernetes users
// expect from every CRI runtime.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// capNames maps capability bit numbers to names (linux/capability.h).
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

var defaultReadonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

// defaultMaskedPaths is the set runtimes hide from unprivileged containers.
// The per-CPU thermal_throttle directories leak host CPU state (and allow
// denial of service through sysfs writes on some kernels), so they are
// masked too, as containerd and CRI-O do.
func defaultMaskedPaths() []string {
	paths := []string{
		"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore",
		"/proc/keys", "/proc/latency_stats", "/proc/timer_list",
		"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
	throttle, _ := filepath.Glob("/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle")
	return append(paths, throttle...)
}

// hostFacts is what spec generation needs to know about the machine. It is
// gathered per call by probeHost; tests build their own.
type hostFacts struct {
	caps            []string // capabilities crid itself holds (CapEff)
	unified         bool
	hugetlb         bool
	swap            bool
	apparmor        bool
	apparmorLoaded  func(profile string) (bool, error)
	hostname        func() (string, error)
	hostDevices     func() ([]specs.LinuxDevice, error)
	ensurePropagate func(path string, shared bool) error
}

func probeHost() hostFacts {
	return hostFacts{
		caps:            currentCaps(),
		unified:         cgroups.Unified(),
		hugetlb:         cgroups.HugetlbAvailable(),
		swap:            cgroups.SwapAvailable(),
		apparmor:        apparmor.Enabled(),
		apparmorLoaded:  apparmor.Loaded,
		hostname:        os.Hostname,
		hostDevices:     hostDevices,
		ensurePropagate: checkPropagation,
	}
}

// currentCaps returns the effective capabilities of this process. A
// privileged container (or add_capabilities ALL) gets these, not every
// known capability: runc cannot grant what crid lacks (this host withholds
// CAP_SYS_RESOURCE even from root).
func currentCaps() []string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return slices.Clone(defaultCaps)
	}
	for _, line := range strings.Split(string(b), "\n") {
		hex, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		var mask uint64
		for _, c := range strings.TrimSpace(hex) {
			mask <<= 4
			switch {
			case c >= '0' && c <= '9':
				mask |= uint64(c - '0')
			case c >= 'a' && c <= 'f':
				mask |= uint64(c-'a') + 10
			}
		}
		return capsFromMask(mask)
	}
	return slices.Clone(defaultCaps)
}

func capsFromMask(mask uint64) []string {
	var out []string
	for i, name := range capNames {
		if mask&(1<<uint(i)) != 0 {
			out = append(out, name)
		}
	}
	return out
}

// baseMounts are the filesystems every container gets. /dev/shm and the
// pod's /etc files are added by the callers.
func baseMounts(privileged bool) []specs.Mount {
	roRW := "ro"
	if privileged {
		roRW = "rw"
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", roRW}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", roRW}},
	}
}

func shmMount(shmPath string, readonly bool) specs.Mount {
	if shmPath == "" {
		return specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm",
			Options: []string{"nosuid", "noexec", "nodev", "mode=1777", defaultShmSize}}
	}
	return bindMount(shmPath, "/dev/shm", readonly)
}

func bindMount(src, dst string, readonly bool) specs.Mount {
	mode := "rw"
	if readonly {
		mode = "ro"
	}
	return specs.Mount{Destination: dst, Type: "bind", Source: src,
		Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec", mode}}
}

// mergeEnv returns base with each of overrides replacing the entry with the
// same name in place, or appended when new.
func mergeEnv(base []string, overrides ...string) []string {
	out := slices.Clone(base)
	index := map[string]int{}
	for i, e := range out {
		k, _, _ := strings.Cut(e, "=")
		index[k] = i
	}
	for _, e := range overrides {
		k, _, _ := strings.Cut(e, "=")
		if i, ok := index[k]; ok {
			out[i] = e
			continue
		}
		index[k] = len(out)
		out = append(out, e)
	}
	return out
}

// withDefaultPath adds PATH when neither the image nor the request set one.
func withDefaultPath(env []string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			return env
		}
	}
	return append(env, defaultPathEnv)
}

func clampOOM(adj, min int) int {
	if adj < min {
		adj = min
	}
	if adj > 1000 {
		adj = 1000
	}
	if adj < -1000 {
		adj = -1000
	}
	return adj
}

func nsPath(pid int, ns string) string {
	return "/proc/" + itoa(pid) + "/ns/" + ns
}
