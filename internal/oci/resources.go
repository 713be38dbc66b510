package oci

import (
	"maps"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/internal/cgroups"
)

// ResourcesFromCRI converts CRI Linux resources (used by UpdateContainerResources).
//
// minOOMScoreAdj is unused: the OCI LinuxResources carry no OOM score (it
// is a process property, see OOMScoreAdj). Hugepage limits are left out on
// hosts without a usable hugetlb controller (kubelet sends a zero limit for
// every page size, which runc would reject), and swap is only set where
// swap accounting exists.
func ResourcesFromCRI(r *runtime.LinuxContainerResources, minOOMScoreAdj int) *specs.LinuxResources {
	return resourcesFromCRI(r, cgroups.HugetlbAvailable(), cgroups.SwapAvailable())
}

// OOMScoreAdj is the oom_score_adj a container gets for r: the requested
// score clamped to [minOOMScoreAdj, 1000].
func OOMScoreAdj(r *runtime.LinuxContainerResources, minOOMScoreAdj int) int {
	return clampOOM(int(r.GetOomScoreAdj()), minOOMScoreAdj)
}

func resourcesFromCRI(r *runtime.LinuxContainerResources, hugetlb, swap bool) *specs.LinuxResources {
	if r == nil {
		return nil
	}
	out := &specs.LinuxResources{}
	cpu := &specs.LinuxCPU{Cpus: r.GetCpusetCpus(), Mems: r.GetCpusetMems()}
	if v := r.GetCpuShares(); v > 0 {
		u := uint64(v)
		cpu.Shares = &u
	}
	if v := r.GetCpuQuota(); v != 0 {
		cpu.Quota = &v
	}
	if v := r.GetCpuPeriod(); v > 0 {
		u := uint64(v)
		cpu.Period = &u
	}
	if *cpu != (specs.LinuxCPU{}) {
		out.CPU = cpu
	}
	mem := &specs.LinuxMemory{}
	if v := r.GetMemoryLimitInBytes(); v > 0 {
		mem.Limit = &v
		// memory+swap equal to the limit means no swap, which is what
		// Kubernetes expects unless it asks for swap explicitly.
		if swap {
			s := v
			mem.Swap = &s
		}
	}
	if v := r.GetMemorySwapLimitInBytes(); v != 0 && swap {
		mem.Swap = &v
	}
	if mem.Limit != nil || mem.Swap != nil {
		out.Memory = mem
	}
	if hugetlb {
		for _, h := range r.GetHugepageLimits() {
			out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{
				Pagesize: h.GetPageSize(), Limit: h.GetLimit(),
			})
		}
	}
	if u := r.GetUnified(); len(u) > 0 {
		out.Unified = maps.Clone(u)
	}
	return out
}

// CgroupsPath is the cgroupsPath for container id under parent with driver "cgroupfs" or "systemd".
//
// cgroupfs: parent joined with id, parent "" meaning /crid. systemd: runc's
// "slice:prefix:name" form; parent may be a slice name or a path ending in
// one (kubelet passes either), "" meaning system.slice.
func CgroupsPath(driver, parent, id string) string {
	if driver == "systemd" {
		slice := filepath.Base(parent)
		if parent == "" || slice == "/" || slice == "." {
			slice = defaultSystemdSlice
		}
		return slice + ":" + systemdScopePrefix + ":" + id
	}
	if parent == "" {
		parent = defaultCgroupfsParent
	}
	if !strings.HasPrefix(parent, "/") {
		parent = "/" + parent
	}
	return filepath.Join(parent, id)
}

func itoa(i int) string { return strconv.Itoa(i) }
