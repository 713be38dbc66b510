package core

import (
	"context"
	"path/filepath"
	"time"

	"github.com/crid-dev/crid/internal/cgroups"
	"github.com/crid-dev/crid/internal/image"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cpuSample is the previous CPU reading of a container, kept to derive
// usage_nano_cores between two stats calls.
type cpuSample struct {
	at    time.Time
	usage uint64
}

// fsUsageTTL is how long a writable-layer walk is reused. kubelet asks for
// stats about every 10 s; walking hundreds of upper dirs on each
// ListContainerStats would make the call cost grow with disk contents.
const fsUsageTTL = 10 * time.Second

type fsSample struct {
	at            time.Time
	bytes, inodes uint64
}

// writableUsage is the container's writable layer usage, cached for fsUsageTTL.
func (s *Service) writableUsage(c *container) (uint64, uint64) {
	c.mu.RLock()
	cached := c.fsUsage
	c.mu.RUnlock()
	if cached != nil && time.Since(cached.at) < fsUsageTTL {
		return cached.bytes, cached.inodes
	}
	id := c.snapshot().ID
	bytes, inodes, err := image.WritableUsage(filepath.Join(s.containerDir(id), "rw"))
	if err != nil {
		s.log.Debug("writable layer usage", "container", id, "error", err)
	}
	c.mu.Lock()
	c.fsUsage = &fsSample{at: time.Now(), bytes: bytes, inodes: inodes}
	c.mu.Unlock()
	return bytes, inodes
}

func u64(v uint64) *runtime.UInt64Value { return &runtime.UInt64Value{Value: v} }

func (s *Service) containerStats(c *container) *runtime.ContainerStats {
	st, _ := s.containerStatsCgroup(c)
	return st
}

// containerStatsCgroup is containerStats that also returns the cgroup
// counters it read (nil if none), for callers that need more of them.
func (s *Service) containerStatsCgroup(c *container) (*runtime.ContainerStats, *cgroups.Stats) {
	var read *cgroups.Stats
	rec := c.snapshot()
	now := time.Now()
	st := &runtime.ContainerStats{
		Attributes: &runtime.ContainerAttributes{
			Id: rec.ID, Metadata: c.config.GetMetadata(), Labels: c.config.GetLabels(), Annotations: c.config.GetAnnotations(),
		},
		Cpu:    &runtime.CpuUsage{Timestamp: now.UnixNano(), UsageCoreNanoSeconds: u64(0), UsageNanoCores: u64(0)},
		Memory: &runtime.MemoryUsage{Timestamp: now.UnixNano(), WorkingSetBytes: u64(0)},
	}
	if rec.State == containerRunning || rec.State == containerCreated {
		if cg, err := cgroups.Read(rec.CgroupsPath); err == nil {
			read = cg
			st.Cpu.UsageCoreNanoSeconds = u64(cg.CPUUsageNanos)
			c.mu.Lock()
			if prev := c.lastCPU; prev != nil && now.After(prev.at) && cg.CPUUsageNanos >= prev.usage {
				st.Cpu.UsageNanoCores = u64(uint64(float64(cg.CPUUsageNanos-prev.usage) / now.Sub(prev.at).Seconds()))
			}
			c.lastCPU = &cpuSample{at: now, usage: cg.CPUUsageNanos}
			c.mu.Unlock()
			st.Memory.WorkingSetBytes = u64(cg.MemoryWorkingSet)
			st.Memory.UsageBytes = u64(cg.MemoryUsage)
			st.Memory.RssBytes = u64(cg.MemoryRSS)
			st.Memory.PageFaults = u64(cg.PageFaults)
			st.Memory.MajorPageFaults = u64(cg.MajorPageFaults)
			st.Cpu.Psi, st.Memory.Psi = criPSI(cg.CPUPressure), criPSI(cg.MemoryPressure)
			if cg.IOPressure != nil {
				st.Io = &runtime.IoUsage{Timestamp: now.UnixNano(), Psi: criPSI(cg.IOPressure)}
			}
		} else {
			s.log.Debug("read container cgroup", "container", rec.ID, "error", err)
		}
	}
	bytes, inodes := s.writableUsage(c)
	st.WritableLayer = &runtime.FilesystemUsage{
		Timestamp: now.UnixNano(), FsId: &runtime.FilesystemIdentifier{Mountpoint: s.cfg.Root},
		UsedBytes: u64(bytes), InodesUsed: u64(inodes),
	}
	return st, read
}

// ContainerStats reports one container's usage.
func (s *Service) ContainerStats(ctx context.Context, req *runtime.ContainerStatsRequest) (*runtime.ContainerStatsResponse, error) {
	c, err := s.getContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &runtime.ContainerStatsResponse{Stats: s.containerStats(c)}, nil
}

// ListContainerStats reports the usage of the containers matching the filter.
func (s *Service) ListContainerStats(ctx context.Context, req *runtime.ListContainerStatsRequest) (*runtime.ListContainerStatsResponse, error) {
	f := req.GetFilter()
	lf := &runtime.ContainerFilter{}
	if f != nil {
		lf.Id, lf.PodSandboxId, lf.LabelSelector = f.Id, f.PodSandboxId, f.LabelSelector
	}
	list, err := s.ListContainers(ctx, &runtime.ListContainersRequest{Filter: lf})
	if err != nil {
		return nil, err
	}
	out := &runtime.ListContainerStatsResponse{}
	for _, item := range list.Containers {
		if c, err := s.getContainer(item.Id); err == nil {
			out.Stats = append(out.Stats, s.containerStats(c))
		}
	}
	return out, nil
}

func (s *Service) sandboxStats(sb *sandbox) *runtime.PodSandboxStats {
	rec, cfg := sb.snapshot(), sb.cfg()
	now := time.Now().UnixNano()
	st := &runtime.PodSandboxStats{
		Attributes: &runtime.PodSandboxAttributes{
			Id: rec.ID, Metadata: cfg.GetMetadata(), Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
		},
		Linux: &runtime.LinuxPodSandboxStats{
			Cpu:     &runtime.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: u64(0), UsageNanoCores: u64(0)},
			Memory:  &runtime.MemoryUsage{Timestamp: now, WorkingSetBytes: u64(0)},
			Process: &runtime.ProcessUsage{Timestamp: now, ProcessCount: u64(0)},
		},
	}
	var cpu, nanoCores, ws, usage, rss, procs uint64
	if cg, err := cgroups.Read(rec.CgroupsPath); err == nil {
		cpu, ws, usage, rss, procs = cg.CPUUsageNanos, cg.MemoryWorkingSet, cg.MemoryUsage, cg.MemoryRSS, cg.Pids
	}
	for _, c := range s.containersOf(rec.ID) {
		cs, cg := s.containerStatsCgroup(c)
		st.Linux.Containers = append(st.Linux.Containers, cs)
		cpu += cs.Cpu.UsageCoreNanoSeconds.GetValue()
		nanoCores += cs.Cpu.UsageNanoCores.GetValue()
		ws += cs.Memory.WorkingSetBytes.GetValue()
		usage += cs.Memory.UsageBytes.GetValue()
		rss += cs.Memory.RssBytes.GetValue()
		if cg != nil {
			procs += cg.Pids
		}
	}
	st.Linux.Cpu.UsageCoreNanoSeconds, st.Linux.Cpu.UsageNanoCores = u64(cpu), u64(nanoCores)
	st.Linux.Memory.WorkingSetBytes, st.Linux.Memory.UsageBytes, st.Linux.Memory.RssBytes = u64(ws), u64(usage), u64(rss)
	st.Linux.Process.ProcessCount = u64(procs)
	s.podPressure(st.Linux, rec.CgroupsPath, cfg.GetLinux().GetCgroupParent(), now)
	return st
}

// podPressure fills in the pod's PSI from the pod's own cgroup. Only a pod
// that kubelet gave a cgroup of its own has one: without a cgroup parent
// the sandbox sits in crid's shared default parent, whose pressure is that
// of every pod.
func (s *Service) podPressure(st *runtime.LinuxPodSandboxStats, cgroupsPath, parent string, now int64) {
	if parent == "" {
		return
	}
	p, err := cgroups.ReadParentPressure(cgroupsPath)
	if err != nil {
		s.log.Debug("read pod pressure", "cgroupsPath", cgroupsPath, "error", err)
		return
	}
	if p == nil {
		return
	}
	st.Cpu.Psi, st.Memory.Psi = criPSI(p.CPU), criPSI(p.Memory)
	if p.IO != nil {
		st.Io = &runtime.IoUsage{Timestamp: now, Psi: criPSI(p.IO)}
	}
}

// criPSI converts the kernel's PSI (totals in microseconds) to the CRI's
// (totals in nanoseconds).
func criPSI(p *cgroups.PSI) *runtime.PsiStats {
	if p == nil {
		return nil
	}
	conv := func(l cgroups.PSILine) *runtime.PsiData {
		return &runtime.PsiData{Total: l.TotalMicros * 1000, Avg10: l.Avg10, Avg60: l.Avg60, Avg300: l.Avg300}
	}
	return &runtime.PsiStats{Some: conv(p.Some), Full: conv(p.Full)}
}

// PodSandboxStats reports a pod's usage: the pause plus its containers.
func (s *Service) PodSandboxStats(ctx context.Context, req *runtime.PodSandboxStatsRequest) (*runtime.PodSandboxStatsResponse, error) {
	sb, err := s.getSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	return &runtime.PodSandboxStatsResponse{Stats: s.sandboxStats(sb)}, nil
}

// ListPodSandboxStats reports the usage of the pods matching the filter.
func (s *Service) ListPodSandboxStats(ctx context.Context, req *runtime.ListPodSandboxStatsRequest) (*runtime.ListPodSandboxStatsResponse, error) {
	f := req.GetFilter()
	lf := &runtime.PodSandboxFilter{}
	if f != nil {
		lf.Id, lf.LabelSelector = f.Id, f.LabelSelector
	}
	list, err := s.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: lf})
	if err != nil {
		return nil, err
	}
	out := &runtime.ListPodSandboxStatsResponse{}
	for _, item := range list.Items {
		if sb, err := s.getSandbox(item.Id); err == nil {
			out.Stats = append(out.Stats, s.sandboxStats(sb))
		}
	}
	return out, nil
}
