// Package cgroups reads container resource usage from cgroup v1 or v2.
package cgroups

// Stats is a snapshot of one cgroup's usage.
type Stats struct {
	CPUUsageNanos    uint64
	MemoryUsage      uint64
	MemoryWorkingSet uint64 // usage minus inactive file
	MemoryRSS        uint64
	PageFaults       uint64
	MajorPageFaults  uint64
	Pids             uint64
	OOMKills         uint64 // memory.events oom_kill (v2) or memory.oom_control oom_kill (v1)
}

// Read returns the usage of the cgroup at cgroupsPath (as given in the OCI
// spec, cgroupfs driver). errdefs.ErrNotFound if the cgroup is gone.
func Read(cgroupsPath string) (*Stats, error) { panic("not implemented") }

// Unified reports whether the host runs pure cgroup v2.
func Unified() bool { panic("not implemented") }
