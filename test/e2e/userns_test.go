package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func usernsPod(t *testing.T, u *runtime.UserNamespace) *runtime.PodSandboxConfig {
	pod := podConfig(t)
	podSecCtx(pod).NamespaceOptions = &runtime.NamespaceOption{UsernsOptions: u}
	return pod
}

// usernsKernel reports whether the kernel is one Kubernetes runs pods with
// their own user namespace on: Linux 6.3 or later (idmapped tmpfs; crid
// also stacks overlayfs on idmapped layers, which Debian 12's 6.1 cannot).
// On an older kernel crid must refuse such pods, and the tests check that
// instead (test/vm runs them on 6.1).
func usernsKernel(t *testing.T) bool {
	t.Helper()
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var rel strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		rel.WriteByte(byte(c))
	}
	var major, minor int
	if _, err := fmt.Sscanf(rel.String(), "%d.%d", &major, &minor); err != nil {
		t.Fatalf("kernel release %q: %v", rel.String(), err)
	}
	return major > 6 || major == 6 && minor >= 3
}

// wantUsernsRefused checks that a pod with its own user namespace is
// refused as unsupported on a kernel that cannot run it.
func wantUsernsRefused(t *testing.T, pod *runtime.PodSandboxConfig) {
	t.Helper()
	err := tryRunPod(t, pod)
	wantCode(t, "a user namespace pod on a kernel before 6.3", err, codes.Unimplemented)
	if err != nil && !strings.Contains(err.Error(), "not supported on this host") {
		t.Errorf("the refusal does not say why: %v", err)
	}
}

func mapping(c, h, l uint32) []*runtime.IDMapping {
	return []*runtime.IDMapping{{ContainerId: c, HostId: h, Length: l}}
}

// TestUsernsStatus: crid reports user namespace support per handler only
// when it can honour it: on kernels from 6.3 (idmapped overlay) it can.
func TestUsernsStatus(t *testing.T) {
	st, err := h.rt.Status(ctxT(t), &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.RuntimeHandlers) == 0 {
		t.Fatal("no runtime handlers reported")
	}
	got := map[string]bool{}
	for _, rh := range st.RuntimeHandlers {
		got[rh.Name] = rh.Features.GetUserNamespaces()
	}
	// "" is the default handler (runc); the harness also configures a
	// handler whose binary is broken, which must not claim support.
	want := usernsKernel(t)
	for _, name := range []string{"", "runc"} {
		if got[name] != want {
			t.Errorf("handler %q: user namespaces reported %v on this kernel, want %v (%v)", name, got[name], want, got)
		}
	}
	if v, ok := got["broken"]; ok && v {
		t.Error("handler \"broken\" claims user namespaces")
	}
	// The probe leaves nothing behind.
	entries, _ := filepath.Glob(filepath.Join(h.base, "root", ".userns-probe-*"))
	if len(entries) != 0 {
		t.Errorf("probe left %v", entries)
	}
}

// TestUsernsPod: a pod with its own user namespace. Its containers see the
// requested mapping, own their rootfs as root, write files that are stored
// under the pod's host ids, have the pod's own sysfs, and the pod cleans
// up completely.
func TestUsernsPod(t *testing.T) {
	pull(t, busybox)
	m := mapping(0, 200000, 65536)
	pod := usernsPod(t, &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: m, Gids: m})
	if !usernsKernel(t) {
		wantUsernsRefused(t, pod)
		return
	}
	podID := runPod(t, pod, "")
	cfg := containerConfig("userns", "sleep", "300")
	cfg.Linux = &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
		NamespaceOptions: pod.Linux.SecurityContext.NamespaceOptions,
	}}
	cid := createStart(t, podID, pod, cfg)

	if got := strings.Fields(must(t, cid, "cat /proc/self/uid_map")); strings.Join(got, " ") != "0 200000 65536" {
		t.Errorf("uid_map %v", got)
	}
	if got := strings.Fields(must(t, cid, "cat /proc/self/gid_map")); strings.Join(got, " ") != "0 200000 65536" {
		t.Errorf("gid_map %v", got)
	}
	// The idmapped rootfs: image files are root's inside.
	if got := must(t, cid, "stat -c %u:%g /bin/sh /etc"); got != "0:0\n0:0" && strings.Join(strings.Fields(got), " ") != "0:0 0:0" {
		t.Errorf("rootfs owners %q, want 0:0", got)
	}
	must(t, cid, "echo hi > /etc/written && chown 1000:1000 /etc/written && mkdir /newdir")
	// On the host the pod's root is 200000; the process runs as it.
	ppid := sandboxPID(t, podID)
	if uid := procUID(t, ppid); uid < 200000 || uid >= 200000+65536 {
		t.Errorf("pause runs as host uid %d, outside the pod's range 200000+65536", uid)
	}
	if uid := procUID(t, containerPID(t, cid)); uid != 200000 {
		t.Errorf("container root runs as host uid %d, want 200000", uid)
	}
	// The pod's network namespace belongs to its user namespace, so
	// sysfs is the pod's own: it lists eth0.
	if out := must(t, cid, "ls /sys/class/net"); !strings.Contains(out, "eth0") {
		t.Errorf("/sys/class/net: %q", out)
	}
	if nsLink(t, "/proc/"+strconv.Itoa(ppid)+"/ns/user") == nsLink(t, "/proc/self/ns/user") {
		t.Error("pause in the host user namespace")
	}
	// Writes are stored under the pod's host ids.
	upper := filepath.Join(h.base, "root", "containers", cid, "rw", "upper")
	for path, want := range map[string][2]uint32{"etc/written": {201000, 201000}, "newdir": {200000, 200000}} {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(upper, path), &st); err != nil {
			t.Fatalf("writable layer: %v", err)
		}
		if st.Uid != want[0] || st.Gid != want[1] {
			t.Errorf("%s stored as %d:%d, want %d:%d", path, st.Uid, st.Gid, want[0], want[1])
		}
	}
	// Host files bind-mounted in are not mapped: nobody owns them.
	if got := must(t, cid, "stat -c %u /etc/hosts"); got != "65534" {
		t.Errorf("/etc/hosts owner %q, want 65534 (overflow id)", got)
	}
	// Pod removal leaves nothing: no netns pin, no mounts.
	ctx := ctxT(t)
	if _, err := h.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	assertNoLeftovers(t, podID, cid)
}

func containerPID(t *testing.T, id string) int {
	t.Helper()
	st, err := h.rt.ContainerStatus(ctxT(t), &runtime.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	return infoPID(t, "container", st.Info["info"])
}

func procUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			uid, _ := strconv.Atoi(strings.Fields(rest)[0])
			return uid
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return -1
}

// TestUsernsNode: mode NODE is the host's user namespace.
func TestUsernsNode(t *testing.T) {
	pull(t, busybox)
	pod := usernsPod(t, &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE})
	podID := runPod(t, pod, "")
	cid := createStart(t, podID, pod, containerConfig("node", "sleep", "300"))
	host, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		t.Fatal(err)
	}
	if got := must(t, cid, "cat /proc/self/uid_map"); strings.Join(strings.Fields(got), " ") != strings.Join(strings.Fields(string(host)), " ") {
		t.Errorf("uid_map %q, want the host's %q", got, host)
	}
}

// TestUsernsInvalid: requests the CRI defines as errors are refused with
// InvalidArgument and leave nothing behind.
func TestUsernsInvalid(t *testing.T) {
	m := mapping(0, 1000, 100000)
	two := append(mapping(0, 1000, 100000), mapping(0, 2000, 100000)...)
	for name, u := range map[string]*runtime.UserNamespace{
		"two mappings":       {Mode: runtime.NamespaceMode_POD, Uids: two, Gids: two},
		"root not mapped":    {Mode: runtime.NamespaceMode_POD, Uids: mapping(1, 1000, 100000), Gids: mapping(1, 1000, 100000)},
		"mode CONTAINER":     {Mode: runtime.NamespaceMode_CONTAINER},
		"mode TARGET":        {Mode: runtime.NamespaceMode_TARGET},
		"NODE with mappings": {Mode: runtime.NamespaceMode_NODE, Uids: m, Gids: m},
	} {
		t.Run(name, func(t *testing.T) {
			wantCode(t, name, tryRunPod(t, usernsPod(t, u)), codes.InvalidArgument)
		})
	}
	// A container may not leave its pod's user namespace.
	pull(t, busybox)
	pod := usernsPod(t, &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: m, Gids: m})
	if !usernsKernel(t) {
		wantUsernsRefused(t, pod)
		return
	}
	podID := runPod(t, pod, "")
	cfg := containerConfig("escape", "true")
	cfg.Linux = &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
		NamespaceOptions: &runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}},
	}}
	wantCode(t, "container userns NODE in a POD userns pod", tryCreate(t, podID, pod, cfg), codes.InvalidArgument)
	entries, _ := os.ReadDir(filepath.Join(h.base, "state", "netns"))
	for _, e := range entries {
		if e.Name() != podID {
			// Other tests' pods may run in parallel only if t.Parallel is used; none is.
			t.Errorf("netns pin %s left by a refused pod", e.Name())
		}
	}
}
