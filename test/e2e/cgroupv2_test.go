package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crid-dev/crid/internal/cgroups"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCgroupV2 checks what only a pure cgroup v2 node shows (test/vm runs
// it; this host is hybrid): every CRI resource reaches its v2 file (cpu.max,
// cpu.weight, memory.max, hugetlb, and pids.max and io.max through the
// unified map), the limits are enforced (a fork past pids.max fails, a disk
// the container was not given cannot be opened even with CAP_MKNOD, as the
// v2 device filter is an eBPF program rather than a devices.list), and
// ContainerStats and PodSandboxStats carry memory counters and PSI.
func TestCgroupV2(t *testing.T) {
	if !cgroupV2() {
		t.Skip("not a pure cgroup v2 host (test/vm/e2e.sh runs this in a VM that is)")
	}
	const mib = 1 << 20
	podID, pod := isoPod(t, func(p *runtime.PodSandboxConfig) {
		// A cgroup of the pod's own, as kubelet gives: the pod's PSI is read there.
		p.Linux.CgroupParent = "/crid-e2e/pod" + p.Metadata.Uid
		// Runs after the pod is removed (cleanups run last-in first-out):
		// the pod's cgroup is kubelet's to remove, so here the test's.
		t.Cleanup(func() {
			if err := os.Remove(filepath.Join("/sys/fs/cgroup", p.Linux.CgroupParent)); err != nil && !os.IsNotExist(err) {
				t.Errorf("remove the pod's cgroup: %v", err)
			}
		})
	})
	disk := wholeDisk(t)
	res := &runtime.LinuxContainerResources{
		CpuShares: 512, CpuQuota: 20000, CpuPeriod: 100000, MemoryLimitInBytes: 64 * mib,
		Unified: map[string]string{"pids.max": "40", "io.max": disk + " rbps=1048576"},
	}
	hugetlb := v2Controller(t, "hugetlb")
	if hugetlb {
		res.HugepageLimits = []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 4 * mib}}
	}
	cfg := containerConfig("v2", "sh", "-c", "while :; do :; done")
	cfg.Linux = &runtime.LinuxContainerConfig{Resources: res}
	id := createStart(t, podID, pod, cfg)

	want := map[string]string{
		"cpu.max": "20000 100000", "memory.max": strconv.Itoa(64 * mib), "pids.max": "40",
	}
	if hugetlb {
		want["hugetlb.2MB.max"] = strconv.Itoa(4 * mib)
	}
	for file, w := range want {
		if got := cgroupValue(t, id, "", file); got != w {
			t.Errorf("%s = %q, want %q", file, got, w)
		}
	}
	weight, err := strconv.ParseUint(cgroupValue(t, id, "", "cpu.weight"), 10, 64)
	if err != nil || !cgroups.SharesGiveWeight(512, weight) {
		t.Errorf("cpu.weight = %d (%v): neither conversion of 512 shares gives it", weight, err)
	}
	if got := cgroupValue(t, id, "", "io.max"); !strings.Contains(got, disk+" rbps=1048576 ") {
		t.Errorf("io.max = %q, want %s limited to rbps=1048576", got, disk)
	}

	// pids.max is enforced: forks past 40 fail and the cgroup counts them;
	// the sleeps end before the ExecSync returns (wait), freeing the pids.
	run(t, id, "for i in $(seq 60); do sleep 2 & done 2>/dev/null; wait")
	if ev := cgroupValue(t, id, "", "pids.events"); !strings.HasPrefix(ev, "max ") || ev == "max 0" {
		t.Errorf("pids.events = %q after forking past pids.max: no fork was refused", ev)
	}
	// A disk the container was not given cannot be opened, though the
	// container may mknod it (CAP_MKNOD is in the default set).
	code, _, errOut := run(t, id, "mknod /tmp/disk b "+strings.Replace(disk, ":", " ", 1)+" && head -c1 /tmp/disk >/dev/null")
	if code == 0 || !strings.Contains(errOut, "not permitted") {
		t.Errorf("reading the node's disk from the container: exit %d, stderr %q; want EPERM from the device filter", code, errOut)
	}

	checkV2Stats(t, podID, id)
}

// checkV2Stats: memory counters and PSI in the container's and the pod's
// stats. The container spins under a 20% quota, so its CPU pressure (tasks
// waiting while throttled) grows.
func checkV2Stats(t *testing.T, podID, id string) {
	t.Helper()
	ctx := ctxT(t)
	var st *runtime.ContainerStats
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := h.rt.ContainerStats(ctx, &runtime.ContainerStatsRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		st = r.Stats
		if st.GetCpu().GetPsi().GetSome().GetTotal() > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	m := st.GetMemory()
	if m.GetWorkingSetBytes().GetValue() == 0 || m.GetUsageBytes().GetValue() == 0 || m.GetPageFaults().GetValue() == 0 {
		t.Errorf("memory stats: %v", m)
	}
	if st.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 {
		t.Errorf("cpu usage 0: %v", st.GetCpu())
	}
	if st.GetCpu().GetPsi() == nil || st.GetMemory().GetPsi() == nil || st.GetIo().GetPsi() == nil {
		t.Fatalf("ContainerStats lacks PSI on a cgroup v2 node: cpu %v memory %v io %v", st.GetCpu().GetPsi(), st.GetMemory().GetPsi(), st.GetIo())
	}
	if got := st.GetCpu().GetPsi().GetSome().GetTotal(); got == 0 || got%1000 != 0 {
		t.Errorf("cpu PSI some total = %d ns after 30 s spinning under a 20%% quota: want > 0, from the kernel's microseconds", got)
	}
	ps, err := h.rt.PodSandboxStats(ctx, &runtime.PodSandboxStatsRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	if l := ps.GetStats().GetLinux(); l.GetCpu().GetPsi() == nil || l.GetMemory().GetPsi() == nil || l.GetIo().GetPsi() == nil {
		t.Errorf("PodSandboxStats lacks the pod cgroup's PSI: %v", l)
	} else if l.GetCpu().GetPsi().GetSome().GetTotal() < st.GetCpu().GetPsi().GetSome().GetTotal() {
		t.Errorf("pod cpu PSI %d < its container's %d", l.GetCpu().GetPsi().GetSome().GetTotal(), st.GetCpu().GetPsi().GetSome().GetTotal())
	}
}

// v2Controller reports whether the root of the v2 tree offers a controller.
func v2Controller(t *testing.T, name string) bool {
	t.Helper()
	b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(" "+strings.TrimSpace(string(b))+" ", " "+name+" ")
}

// wholeDisk returns "major:minor" of a whole disk of the node (io.max takes
// only those, not partitions).
func wholeDisk(t *testing.T) string {
	t.Helper()
	entries, err := os.ReadDir("/sys/block")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/sys/block", n, "dev"))
		if err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	t.Skip("no whole disk under /sys/block to limit")
	return ""
}
