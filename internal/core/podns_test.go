package core

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestPinnedPod(t *testing.T) {
	ns := func(pid runtime.NamespaceMode) *runtime.PodSandboxConfig {
		return &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Pid: pid},
		}}}
	}
	tests := []struct {
		name   string
		cfg    *runtime.PodSandboxConfig
		userns *runtime.UserNamespace
		want   bool
	}{
		{"kubelet default: pid per container", ns(runtime.NamespaceMode_CONTAINER), nil, true},
		{"host pid", ns(runtime.NamespaceMode_NODE), nil, true},
		{"shared pid namespace needs a pid 1", ns(runtime.NamespaceMode_POD), nil, false},
		{"no options means POD", &runtime.PodSandboxConfig{}, nil, false},
		{"user namespace keeps the pause", ns(runtime.NamespaceMode_CONTAINER), &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pinnedPod(tt.cfg, tt.userns); got != tt.want {
				t.Fatalf("pinnedPod = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestPinPodNamespaces pins real namespaces (needs root), checks the
// hostname and an IPC sysctl inside them with nsenter, and unpins.
func TestPinPodNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (namespaces and mounts)")
	}
	dir := t.TempDir()
	cfg := &runtime.PodSandboxConfig{
		Hostname: "pinned-test",
		Linux:    &runtime.LinuxPodSandboxConfig{Sysctls: map[string]string{"kernel.shm_rmid_forced": "1"}},
	}
	// Host network: only IPC is new, UTS stays the host's.
	hostNet := &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE},
	}}}
	hn, err := pinPodNamespaces(podNamespacePins(dir, "hostnet"), hostNet, "")
	if err != nil {
		t.Fatal(err)
	}
	if hn.uts != "" || hn.ipc == "" {
		t.Errorf("host network pod pins %+v, want only ipc", hn)
	}
	if err := unpinPodNamespaces(hn); err != nil {
		t.Fatal(err)
	}

	ns, err := pinPodNamespaces(podNamespacePins(dir, "pod"), cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	defer unpinPodNamespaces(ns)
	if !pinsAlive(sandboxRecord{IPCNSPath: ns.ipc, UTSNSPath: ns.uts}) {
		t.Fatal("pins not alive right after pinning")
	}
	out, err := exec.Command("nsenter", "--uts="+ns.uts, "--ipc="+ns.ipc, "sh", "-c", "hostname; cat /proc/sys/kernel/shm_rmid_forced").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter: %v: %s", err, out)
	}
	if got := strings.Fields(string(out)); len(got) != 2 || got[0] != "pinned-test" || got[1] != "1" {
		t.Errorf("inside the pins: %q, want hostname pinned-test and shm_rmid_forced 1", out)
	}
	// crid's own namespaces are untouched.
	if h, _ := os.Hostname(); h == "pinned-test" {
		t.Error("crid's own hostname changed")
	}
	var own, pinned unix.Stat_t
	if err := unix.Stat("/proc/self/ns/ipc", &own); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(ns.ipc, &pinned); err != nil {
		t.Fatal(err)
	}
	if own.Ino == pinned.Ino {
		t.Error("the pinned IPC namespace is crid's own")
	}
	if err := unpinPodNamespaces(ns); err != nil {
		t.Fatal(err)
	}
	if pinsAlive(sandboxRecord{IPCNSPath: ns.ipc, UTSNSPath: ns.uts}) {
		t.Error("pins alive after unpinning")
	}
	for _, p := range []string{ns.ipc, ns.uts} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("pin file %s left: %v", p, err)
		}
	}
}

func TestOwnPIDNamespace(t *testing.T) {
	withNS := func(ns ...specs.LinuxNamespace) *specs.Spec { return &specs.Spec{Linux: &specs.Linux{Namespaces: ns}} }
	tests := []struct {
		name string
		spec *specs.Spec
		want bool
	}{
		{"new pid namespace", withNS(specs.LinuxNamespace{Type: specs.MountNamespace}, specs.LinuxNamespace{Type: specs.PIDNamespace}), true},
		{"joins the pod's", withNS(specs.LinuxNamespace{Type: specs.PIDNamespace, Path: "/proc/42/ns/pid"}), false},
		{"host pid namespace", withNS(specs.LinuxNamespace{Type: specs.MountNamespace}), false},
		{"no linux section", &specs.Spec{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ownPIDNamespace(tt.spec); got != tt.want {
				t.Fatalf("ownPIDNamespace = %v, want %v", got, tt.want)
			}
		})
	}
}
