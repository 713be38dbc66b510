package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cgroupV2 reports whether this host runs pure cgroup v2.
func cgroupV2() bool {
	var st unix.Statfs_t
	return unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// systemdPID1 reports whether systemd runs this host (as sd_booted checks).
func systemdPID1() bool {
	_, err := os.Stat("/run/systemd/system")
	return err == nil
}

// needSystemdV2 skips the test unless this node is what production
// Kubernetes nodes are: systemd as PID 1 over pure cgroup v2. This host is
// not; the VM of test/vm is (test/vm/e2e.sh).
func needSystemdV2(t *testing.T) {
	t.Helper()
	if !systemdPID1() {
		t.Skip("systemd is not PID 1 here (test/vm/e2e.sh runs this in a VM where it is)")
	}
	if !cgroupV2() {
		t.Skip("not a pure cgroup v2 host (test/vm/e2e.sh runs this in a VM that is)")
	}
}

// TestSystemdCgroupDriver: with cgroup_driver = "systemd", kubelet gives a
// pod's cgroup parent as a slice name; each container must be a scope in
// that slice where systemd puts it (so kubelet's QoS slices account for
// it), with its limits, and ContainerStats must read that cgroup.
func TestSystemdCgroupDriver(t *testing.T) {
	needSystemdV2(t)
	c := secondHarness(t, "sdcg")
	writeSystemdDriverConfig(t, c)
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)

	rc, err := c.rt.RuntimeConfig(ctx, &runtime.RuntimeConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := rc.GetLinux().GetCgroupDriver(); got != runtime.CgroupDriver_SYSTEMD {
		t.Errorf("RuntimeConfig cgroup driver = %v, want SYSTEMD", got)
	}

	// What kubelet's systemd driver passes for a burstable pod.
	uid := randHex(8)
	slice := "kubepods-burstable-pod" + uid + ".slice"
	sliceDir := "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/" + slice
	pod := podConfig(t)
	pod.Metadata.Uid = uid
	pod.Linux.CgroupParent = slice
	pr, err := c.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\ncrid log:\n%s", err, c.logTail())
	}
	podID := pr.PodSandboxId

	if _, err := c.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}); err != nil {
		t.Fatal(err)
	}
	cc := containerConfig("sd", "sh", "-c", "head -c 20m /dev/zero | tail >/dev/null & exec sleep 3600")
	cc.Linux = &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{
		MemoryLimitInBytes: 256 << 20, CpuQuota: 50000, CpuPeriod: 100000, CpuShares: 512,
	}}
	cr, err := c.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cc, SandboxConfig: pod})
	if err != nil {
		t.Fatalf("CreateContainer: %v\ncrid log:\n%s", err, c.logTail())
	}
	id := cr.ContainerId
	if _, err := c.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v\ncrid log:\n%s", err, c.logTail())
	}

	// The container is a scope in the pod's slice, where systemd puts it;
	// no directory named after the slice:prefix:name string anywhere.
	scope := "crid-" + id + ".scope"
	scopeDir := filepath.Join(sliceDir, scope)
	procs, err := os.ReadFile(filepath.Join(scopeDir, "cgroup.procs"))
	if err != nil || len(strings.TrimSpace(string(procs))) == 0 {
		tree, _ := exec.Command("sh", "-c", "find /sys/fs/cgroup -type d -name '*"+id[:12]+"*'").CombinedOutput()
		t.Fatalf("container not in %s (%v, procs %q); its cgroup dirs:\n%s", scopeDir, err, procs, tree)
	}
	pid := strings.Fields(string(procs))[0]
	if b, err := os.ReadFile("/proc/" + pid + "/cgroup"); err != nil || strings.TrimSpace(string(b)) != "0::"+strings.TrimPrefix(scopeDir, "/sys/fs/cgroup") {
		t.Errorf("/proc/%s/cgroup = %q (%v), want 0::%s", pid, b, err, strings.TrimPrefix(scopeDir, "/sys/fs/cgroup"))
	}
	if out, err := exec.Command("systemctl", "is-active", scope).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "active" {
		t.Errorf("systemctl is-active %s: %q %v", scope, out, err)
	}
	for file, want := range map[string]string{"memory.max": "268435456", "cpu.max": "50000 100000"} {
		b, err := os.ReadFile(filepath.Join(scopeDir, file))
		if err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("%s = %q (%v), want %q", file, b, err, want)
		}
	}
	// An exec'd process joins the container's scope (crid-nsexec or runc).
	want := "0::" + strings.TrimPrefix(scopeDir, "/sys/fs/cgroup")
	if r, err := c.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"cat", "/proc/self/cgroup"}, Timeout: 60}); err != nil {
		t.Errorf("ExecSync: %v", err)
	} else if got := strings.TrimSpace(string(r.Stdout)); (got != want && got != "0::/") || r.ExitCode != 0 {
		// "0::/" in a container with its own cgroup namespace: the root of
		// that namespace is the container's cgroup; anywhere else reads
		// as a path relative to it ("/../...").
		t.Errorf("exec'd process: /proc/self/cgroup %q (exit %d, stderr %q), want %q", got, r.ExitCode, r.Stderr, want)
	}
	// The pod's own sandbox (pause) is in the slice too.
	if _, err := os.Stat(filepath.Join(sliceDir, "crid-"+podID+".scope")); err != nil {
		t.Errorf("sandbox scope: %v", err)
	}

	// Stats read the scope: the 20 MiB through the pipe show as usage.
	var st *runtime.ContainerStats
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.rt.ContainerStats(ctx, &runtime.ContainerStatsRequest{ContainerId: id})
		if err != nil {
			t.Fatalf("ContainerStats: %v", err)
		}
		st = resp.Stats
		if st.GetMemory().GetWorkingSetBytes().GetValue() > 0 && st.GetCpu().GetUsageCoreNanoSeconds().GetValue() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ContainerStats: working set %d, CPU %d ns: the container's cgroup is not read",
				st.GetMemory().GetWorkingSetBytes().GetValue(), st.GetCpu().GetUsageCoreNanoSeconds().GetValue())
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("stats: working set %d, usage %d, CPU %d ns", st.GetMemory().GetWorkingSetBytes().GetValue(),
		st.GetMemory().GetUsageBytes().GetValue(), st.GetCpu().GetUsageCoreNanoSeconds().GetValue())
	if ps, err := c.rt.PodSandboxStats(ctx, &runtime.PodSandboxStatsRequest{PodSandboxId: podID}); err != nil {
		t.Errorf("PodSandboxStats: %v", err)
	} else if ps.GetStats().GetLinux().GetMemory().GetWorkingSetBytes().GetValue() == 0 {
		t.Errorf("PodSandboxStats: working set 0")
	}

	// Removing the pod ends its scopes: systemd removes them.
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.rt.RemovePodSandbox(rctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		_, err := os.Stat(scopeDir)
		if os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%s still there after RemovePodSandbox", scopeDir)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// writeSystemdDriverConfig writes c's config: the systemd cgroup driver,
// the run's registry mirrors, its CNI network and the pinned runc.
func writeSystemdDriverConfig(t *testing.T, c *harness) {
	t.Helper()
	var regs strings.Builder
	for _, host := range []string{"registry.k8s.io", "k8s.gcr.io", "gcr.io", "docker.io"} {
		fmt.Fprintf(&regs, "[[images.registries]]\nhost = %q\nmirrors = [\"http://%s/%s\"]\nfallback = false\n", host, h.registry, host)
	}
	cfg := fmt.Sprintf(`root = %q
state = %q
socket = %q
log_level = "debug"
cgroup_driver = "systemd"
%s
[runtime.handlers.runc]
path = "/usr/local/sbin/runc"
[network]
conf_dir = %q
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin", %q]
`, filepath.Join(c.base, "root"), filepath.Join(c.base, "state"), c.socket, regs.String(),
		filepath.Join(h.base, "cni"), filepath.Join(h.base, "cnibin"))
	if err := os.WriteFile(c.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}
