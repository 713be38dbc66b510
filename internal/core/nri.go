package core

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/internal/nri"
	"github.com/crid-dev/crid/internal/oci"
)

// The core's side of NRI (internal/nri, docs/nri.md): it describes pods
// and containers to plugins and applies the updates and evictions they
// ask for. s.nri is nil when NRI is off; its methods then do nothing.

// nriDomain is the core as NRI's Domain.
type nriDomain struct{ s *Service }

func (d nriDomain) ListPodSandboxes() []*api.PodSandbox {
	d.s.mu.RLock()
	sbs := make([]*sandbox, 0, len(d.s.sandboxes))
	for _, sb := range d.s.sandboxes {
		sbs = append(sbs, sb)
	}
	d.s.mu.RUnlock()
	out := make([]*api.PodSandbox, 0, len(sbs))
	for _, sb := range sbs {
		if sb.snapshot().State == sandboxInit {
			continue // its RunPodSandbox event is still to come
		}
		out = append(out, nriPod(sb))
	}
	return out
}

func (d nriDomain) ListContainers() []*api.Container {
	d.s.mu.RLock()
	cs := make([]*container, 0, len(d.s.containers))
	for _, c := range d.s.containers {
		cs = append(cs, c)
	}
	d.s.mu.RUnlock()
	out := make([]*api.Container, 0, len(cs))
	for _, c := range cs {
		rec := c.snapshot()
		if rec.State == containerInit {
			continue // not created yet: its CreateContainer event is still to come
		}
		spec, err := d.s.containerSpec(c)
		if err != nil {
			d.s.log.Warn("NRI sync: container spec unreadable", "container", rec.ID, "error", err)
			continue
		}
		out = append(out, nriContainer(rec, c.config, spec))
	}
	return out
}

// UpdateContainer applies a plugin's update with the runtime's update,
// as UpdateContainerResources does.
func (d nriDomain) UpdateContainer(ctx context.Context, u *api.ContainerUpdate) error {
	c, err := d.s.getContainer(u.GetContainerId())
	if err != nil {
		return err
	}
	res := u.GetLinux().GetResources()
	if res == nil {
		return nil
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	rec := c.snapshot()
	if rec.State == containerExited {
		return fmt.Errorf("update container %s: container has exited: %w", rec.ID, errdefs.ErrFailedPrecondition)
	}
	rt, err := d.s.runtimeFor(d.s.handlerOf(rec.SandboxID))
	if err != nil {
		return err
	}
	if err := rt.Update(ctx, rec.ID, res.ToOCI()); err != nil {
		return fmt.Errorf("update container %s: %w", rec.ID, err)
	}
	return nil
}

// EvictContainer stops the container at once.
func (d nriDomain) EvictContainer(ctx context.Context, id, reason string) error {
	c, err := d.s.getContainer(id)
	if err != nil {
		return err
	}
	d.s.log.Info("NRI plugin evicts container", "container", id, "reason", reason)
	return d.s.stopContainer(ctx, c, 0)
}

// nriPod describes a pod to plugins.
func nriPod(sb *sandbox) *api.PodSandbox {
	rec, cfg := sb.snapshot(), sb.cfg()
	m := cfg.GetMetadata()
	pod := &api.PodSandbox{
		Id: rec.ID, Name: m.GetName(), Uid: m.GetUid(), Namespace: m.GetNamespace(),
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), RuntimeHandler: rec.Handler,
		Linux: &api.LinuxPodSandbox{
			CgroupParent: cfg.GetLinux().GetCgroupParent(),
			CgroupsPath:  rec.CgroupsPath,
			PodResources: nriResources(cfg.GetLinux().GetResources()),
			PodOverhead:  nriResources(cfg.GetLinux().GetOverhead()),
		},
		Pid: uint32(rec.PID),
	}
	if rec.NetNSPath != "" {
		pod.Linux.Namespaces = append(pod.Linux.Namespaces, &api.LinuxNamespace{Type: "network", Path: rec.NetNSPath})
	}
	if rec.IP != "" {
		pod.Ips = append([]string{rec.IP}, rec.AdditionalIPs...)
	}
	return pod
}

// nriContainer describes a container to plugins from its record, CRI
// config and OCI spec (the spec being created, for CreateContainer).
func nriContainer(rec containerRecord, cfg *runtime.ContainerConfig, spec *specs.Spec) *api.Container {
	c := &api.Container{
		Id: rec.ID, PodSandboxId: rec.SandboxID, Name: cfg.GetMetadata().GetName(),
		State:  nriState(rec.State),
		Labels: cfg.GetLabels(), Annotations: spec.Annotations,
		Mounts: api.FromOCIMounts(spec.Mounts), Hooks: api.FromOCIHooks(spec.Hooks),
		Pid:       uint32(rec.PID),
		CreatedAt: rec.CreatedAt, StartedAt: rec.StartedAt, FinishedAt: rec.FinishedAt,
		ExitCode: rec.ExitCode, StatusReason: rec.Reason, StatusMessage: rec.Message,
	}
	if p := spec.Process; p != nil {
		c.Args, c.Env = p.Args, p.Env
		for _, r := range p.Rlimits {
			c.Rlimits = append(c.Rlimits, &api.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
		}
	}
	if l := spec.Linux; l != nil {
		c.Linux = &api.LinuxContainer{
			Namespaces:  api.FromOCILinuxNamespaces(l.Namespaces),
			Devices:     api.FromOCILinuxDevices(l.Devices),
			Resources:   api.FromOCILinuxResources(l.Resources, nil),
			CgroupsPath: l.CgroupsPath,
		}
		if spec.Process != nil && spec.Process.OOMScoreAdj != nil {
			c.Linux.OomScoreAdj = api.Int(spec.Process.OOMScoreAdj)
		}
	}
	return c
}

func nriState(st string) api.ContainerState {
	switch st {
	case containerCreated:
		return api.ContainerState_CONTAINER_CREATED
	case containerRunning:
		return api.ContainerState_CONTAINER_RUNNING
	case containerExited:
		return api.ContainerState_CONTAINER_STOPPED
	}
	return api.ContainerState_CONTAINER_UNKNOWN
}

// nriContainerOf describes a recorded container; it falls back to an
// empty spec when the bundle is gone (a removal after a reboot), since
// plugins still need to hear of the removal.
func (s *Service) nriContainerOf(c *container) *api.Container {
	spec, err := s.containerSpec(c)
	if err != nil {
		spec = &specs.Spec{}
	}
	return nriContainer(c.snapshot(), c.config, spec)
}

// nriPodOf describes the pod of a container; nil if it is gone.
func (s *Service) nriPodOf(sandboxID string) *api.PodSandbox {
	sb, err := s.getSandbox(sandboxID)
	if err != nil {
		return &api.PodSandbox{Id: sandboxID}
	}
	return nriPod(sb)
}

// nriCreateContainer lets plugins adjust spec before it is written, and
// registers the undo that tells them the container is gone when the
// create fails later.
func (s *Service) nriCreateContainer(ctx context.Context, sb *sandbox, c *container, spec *specs.Spec, u *undo) error {
	if s.nri == nil {
		return nil
	}
	pod, ctr := nriPod(sb), nriContainer(c.snapshot(), c.config, spec)
	// Registered first: plugins that saw the create hear of the removal
	// also when a later plugin fails it.
	u.add(func(ctx context.Context) error {
		ctr.State = api.ContainerState_CONTAINER_STOPPED
		if err := s.nri.StopContainer(ctx, pod, ctr); err != nil {
			return err
		}
		return s.nri.RemoveContainer(ctx, pod, ctr)
	})
	return s.nri.CreateContainer(ctx, pod, ctr, spec)
}

// nriContainerEvent sends a container event that cannot change anything
// (post-create, start, post-start, post-update, remove); a failure is
// logged, as the CRI call has already done its work.
func (s *Service) nriContainerEvent(ctx context.Context, c *container, send func(*nri.NRI, context.Context, *api.PodSandbox, *api.Container) error) {
	if s.nri == nil {
		return
	}
	ctr := s.nriContainerOf(c)
	if err := send(s.nri, ctx, s.nriPodOf(ctr.PodSandboxId), ctr); err != nil {
		s.log.Warn("NRI container event failed", "container", ctr.Id, "error", err)
	}
}

// nriPodEvent sends a pod event; a failure is logged.
func (s *Service) nriPodEvent(ctx context.Context, sb *sandbox, send func(*nri.NRI, context.Context, *api.PodSandbox) error) {
	if s.nri == nil {
		return
	}
	pod := nriPod(sb)
	if err := send(s.nri, ctx, pod); err != nil {
		s.log.Warn("NRI pod event failed", "pod", pod.Id, "error", err)
	}
}

// nriUpdateResources lets plugins adjust a resource update of c; it
// returns the resources to apply.
func (s *Service) nriUpdateResources(ctx context.Context, c *container, res *specs.LinuxResources) (*specs.LinuxResources, error) {
	if s.nri == nil {
		return res, nil
	}
	ctr := s.nriContainerOf(c)
	out, err := s.nri.UpdateContainer(ctx, s.nriPodOf(ctr.PodSandboxId), ctr, api.FromOCILinuxResources(res, nil))
	if err != nil {
		return nil, err
	}
	if out == nil {
		return res, nil
	}
	return mergeResources(res, out.ToOCI()), nil
}

// mergeResources returns base with the fields over sets replacing its
// own. NRI answers an UpdateContainer with the requested resources and
// the plugins' changes, but in its own type, which lacks some of the OCI
// fields (memory kernel limits, block I/O, RDMA, ...): the merge keeps
// those as requested instead of dropping them.
func mergeResources(base, over *specs.LinuxResources) *specs.LinuxResources {
	out := *base
	if over.CPU != nil {
		cpu := specs.LinuxCPU{}
		if base.CPU != nil {
			cpu = *base.CPU
		}
		o := over.CPU
		cpu.Shares = pick(o.Shares, cpu.Shares)
		cpu.Quota = pick(o.Quota, cpu.Quota)
		cpu.Period = pick(o.Period, cpu.Period)
		cpu.RealtimeRuntime = pick(o.RealtimeRuntime, cpu.RealtimeRuntime)
		cpu.RealtimePeriod = pick(o.RealtimePeriod, cpu.RealtimePeriod)
		if o.Cpus != "" {
			cpu.Cpus = o.Cpus
		}
		if o.Mems != "" {
			cpu.Mems = o.Mems
		}
		out.CPU = &cpu
	}
	if over.Memory != nil {
		mem := specs.LinuxMemory{}
		if base.Memory != nil {
			mem = *base.Memory
		}
		o := over.Memory
		mem.Limit = pick(o.Limit, mem.Limit)
		mem.Reservation = pick(o.Reservation, mem.Reservation)
		mem.Swap = pick(o.Swap, mem.Swap)
		mem.Swappiness = pick(o.Swappiness, mem.Swappiness)
		mem.DisableOOMKiller = pick(o.DisableOOMKiller, mem.DisableOOMKiller)
		out.Memory = &mem
	}
	if over.Pids != nil {
		out.Pids = over.Pids
	}
	if len(over.HugepageLimits) > 0 {
		out.HugepageLimits = over.HugepageLimits
	}
	if len(over.Unified) > 0 {
		u := map[string]string{}
		for k, v := range base.Unified {
			u[k] = v
		}
		for k, v := range over.Unified {
			u[k] = v
		}
		out.Unified = u
	}
	return &out
}

// pick is over when set, else base.
func pick[T any](over, base *T) *T {
	if over != nil {
		return over
	}
	return base
}

// nriRunPodSandbox tells plugins a pod is ready; their failure fails the
// pod (the caller rolls it back).
func (s *Service) nriRunPodSandbox(ctx context.Context, sb *sandbox) error {
	if s.nri == nil {
		return nil
	}
	return s.nri.RunPodSandbox(ctx, nriPod(sb))
}

// nriBlockSync holds off plugin synchronization while a pod or container
// is being created (see nri.BlockSync); call the result when done.
func (s *Service) nriBlockSync() func() { return s.nri.BlockSync() }

// nriInjectCDI applies CDI devices a plugin adds, from the same spec dirs
// as the CDI devices of a CRI request.
func (s *Service) nriInjectCDI(spec *specs.Spec, devices []string) error {
	return oci.ApplyCDI(spec, devices, s.cfg.Runtime.CDISpecDirs)
}

// nriResources is r in NRI's form; nil for nil.
func nriResources(r *runtime.LinuxContainerResources) *api.LinuxResources {
	if r == nil {
		return nil
	}
	// The minimum OOM score only matters for the process, not resources.
	return api.FromOCILinuxResources(oci.ResourcesFromCRI(r, 0), nil)
}

// nriUpdatePodSandbox tells plugins the pod's resources change to those
// of req; their failure fails the update.
func (s *Service) nriUpdatePodSandbox(ctx context.Context, sb *sandbox, req *runtime.UpdatePodSandboxResourcesRequest) error {
	if s.nri == nil {
		return nil
	}
	return s.nri.UpdatePodSandbox(ctx, nriPod(sb), nriResources(req.GetOverhead()), nriResources(req.GetResources()))
}
