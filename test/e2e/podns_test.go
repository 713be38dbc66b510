package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestPodWithoutPause runs a pod as kubelet sends it by default (each
// container with its own PID namespace): crid runs no pause for it and
// pins the pod's IPC and UTS namespaces instead. Its containers must still
// share the network, IPC and UTS namespaces, see the pod's hostname and
// sysctls, survive a crid restart, and leave no pin behind.
func TestPodWithoutPause(t *testing.T) {
	pull(t, busybox)
	pod := podConfig(t)
	pod.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER},
	}
	// The network sysctl in its slash form: it must still be written
	// inside the pod's network namespace, never the host's.
	hostPortStart := readTrim(t, "/proc/sys/net/ipv4/ip_unprivileged_port_start")
	pod.Linux.Sysctls = map[string]string{
		"kernel.shm_rmid_forced":              "1",
		"net/ipv4/ip_unprivileged_port_start": "81",
	}
	podID := runPod(t, pod, "")
	if got := readTrim(t, "/proc/sys/net/ipv4/ip_unprivileged_port_start"); got != hostPortStart {
		t.Errorf("the host's ip_unprivileged_port_start changed from %s to %s", hostPortStart, got)
	}
	cfg := func(name string) *runtime.ContainerConfig {
		c := containerConfig(name, "sleep", "1000")
		c.Linux = &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER},
		}}
		return c
	}
	a := createStart(t, podID, pod, cfg("a"))
	b := createStart(t, podID, pod, cfg("b"))
	// The runtime knows the pod's containers, and no pause.
	runcRoot := filepath.Join(h.base, "state", "runtime", "runc")
	out, err := runOut("runc", "--root", runcRoot, "list", "-q")
	if err != nil || !strings.Contains(out, a) || !strings.Contains(out, b) {
		t.Fatalf("runc list (%v): %q, want the pod's containers", err, out)
	}
	if strings.Contains(out, podID) {
		t.Errorf("a pause container runs for the pod: %q", out)
	}

	for _, ns := range []string{"net", "ipc", "uts"} {
		na, nb := must(t, a, "readlink /proc/1/ns/"+ns), must(t, b, "readlink /proc/1/ns/"+ns)
		if na != nb {
			t.Errorf("%s namespace not shared: %s vs %s", ns, na, nb)
		}
		if host := nsLink(t, "/proc/self/ns/"+ns); host == na {
			t.Errorf("%s namespace is the host's", ns)
		}
	}
	if pa, pb := must(t, a, "readlink /proc/1/ns/pid"), must(t, b, "readlink /proc/1/ns/pid"); pa == pb {
		t.Errorf("containers share a pid namespace (%s), want one each", pa)
	}
	if got := must(t, a, "hostname"); got != pod.Hostname {
		t.Errorf("hostname %q, want %q", got, pod.Hostname)
	}
	if got := must(t, b, "cat /proc/sys/kernel/shm_rmid_forced"); got != "1" {
		t.Errorf("kernel.shm_rmid_forced = %q, want 1", got)
	}
	if got := must(t, b, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start"); got != "81" {
		t.Errorf("net.ipv4.ip_unprivileged_port_start = %q, want 81", got)
	}
	ps, err := h.rt.PodSandboxStatus(ctxT(t), &runtime.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	ip := ps.GetStatus().GetNetwork().GetIp()
	if ip == "" || !strings.Contains(must(t, a, "ip -4 addr"), ip+"/") {
		t.Errorf("pod IP %q not on the container's interface", ip)
	}

	// The pins live in their own shared mount point, so unpinning frees
	// the namespaces in mount namespaces that copied it too.
	pinMounts := podMounts(t, podID)
	for _, pin := range []string{podID + "-ipc", podID + "-uts"} {
		if !strings.Contains(pinMounts, filepath.Join(h.base, "state", "nspins", pin)) {
			t.Errorf("pin %s not mounted in the pin dir:\n%s", pin, pinMounts)
		}
	}
	if mi := mountOf(t, filepath.Join(h.base, "state", "nspins")); !strings.Contains(mi, " shared:") {
		t.Errorf("the pin dir is not a shared mount: %q", mi)
	}

	// Restart: the pod stays ready and its namespaces joinable.
	h.stop(syscall.SIGKILL)
	if err := h.start(); err != nil {
		t.Fatal(err)
	}
	ps, err = h.rt.PodSandboxStatus(ctxT(t), &runtime.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil || ps.GetStatus().GetState() != runtime.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod after restart: %v %v", ps.GetStatus().GetState(), err)
	}
	c := createStart(t, podID, pod, cfg("after-restart"))
	if got, want := must(t, c, "readlink /proc/1/ns/ipc"), must(t, a, "readlink /proc/1/ns/ipc"); got != want {
		t.Errorf("container created after restart in ipc %s, pod's is %s", got, want)
	}

	// Stop: pins gone, pod not ready; remove: nothing left.
	if _, err := h.rt.StopPodSandbox(ctxT(t), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	ps, err = h.rt.PodSandboxStatus(ctxT(t), &runtime.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil || ps.GetStatus().GetState() != runtime.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod after stop: %v %v", ps.GetStatus().GetState(), err)
	}
	// The pod's /dev/shm stays until removal, as with a pause.
	mounts := podMounts(t, podID)
	if strings.Contains(mounts, podID+"-ipc") || strings.Contains(mounts, podID+"-uts") {
		t.Errorf("namespace pins of the stopped pod remain:\n%s", mounts)
	}
	if _, err := h.rt.RemovePodSandbox(ctxT(t), &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if mounts := podMounts(t, podID); mounts != "" {
		t.Errorf("mounts of the removed pod remain:\n%s", mounts)
	}
	if _, err := os.Stat(filepath.Join(h.base, "state", "sandboxes", podID)); !os.IsNotExist(err) {
		t.Errorf("sandbox state dir left behind: %v", err)
	}
}

// podMounts returns the mountinfo lines that name the pod.
func podMounts(t *testing.T, podID string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, podID) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// readTrim reads a host file, without surrounding space.
func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// mountOf is the mountinfo line of the mount at exactly path ("" if none).
func mountOf(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == path {
			return l
		}
	}
	return ""
}
