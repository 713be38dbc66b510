package core

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/nri"
	"github.com/crid-dev/crid/internal/store"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdatePodSandboxResources records the pod-level resources (and overhead)
// of an in-place pod resize. kubelet calls it after it has resized the pod
// cgroup itself, so crid changes no cgroup: it keeps the pod's config
// current — what verbose PodSandboxStatus shows, what containers created
// later see as their sandbox config — and persists it across restarts.
func (s *Service) UpdatePodSandboxResources(ctx context.Context, req *runtime.UpdatePodSandboxResourcesRequest) (*runtime.UpdatePodSandboxResourcesResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("update pod sandbox resources: pod_sandbox_id is required: %w", errdefs.ErrInvalidArgument)
	}
	for what, r := range map[string]*runtime.LinuxContainerResources{"resources": req.GetResources(), "overhead": req.GetOverhead()} {
		if err := validatePodResources(r); err != nil {
			return nil, fmt.Errorf("update pod sandbox %s %s: %w", req.GetPodSandboxId(), what, err)
		}
	}
	sb, err := s.getSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("update pod sandbox resources: %w", err)
	}
	if req.GetResources() == nil && req.GetOverhead() == nil {
		return &runtime.UpdatePodSandboxResourcesResponse{}, nil
	}
	sb.opMu.Lock()
	defer sb.opMu.Unlock()
	rec := sb.snapshot()
	if rec.State == sandboxInit {
		return nil, fmt.Errorf("update pod sandbox %s resources: the pod is still being created: %w", rec.ID, errdefs.ErrFailedPrecondition)
	}
	cfg := proto.Clone(sb.cfg()).(*runtime.PodSandboxConfig)
	if cfg.Linux == nil {
		cfg.Linux = &runtime.LinuxPodSandboxConfig{}
	}
	if r := req.GetResources(); r != nil {
		cfg.Linux.Resources = r
	}
	if o := req.GetOverhead(); o != nil {
		cfg.Linux.Overhead = o
	}
	if err := s.nriUpdatePodSandbox(ctx, sb, req); err != nil {
		return nil, fmt.Errorf("update pod sandbox %s resources: %w", rec.ID, err)
	}
	b, err := proto.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("update pod sandbox %s resources: %w", rec.ID, err)
	}
	// Persisted first, from a copy taken under the lock that also orders
	// every other change to the record: memory shows the new config only
	// once it is on disk, and a failure leaves both as they were.
	sb.mu.Lock()
	next := sb.rec
	next.Config = b
	err = s.st.Put(store.BucketSandboxes, next.ID, next)
	if err == nil {
		sb.rec.Config = b
	}
	sb.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("update pod sandbox %s resources: %w", rec.ID, err)
	}
	sb.config.Store(cfg)
	s.nriPodEvent(ctx, sb, (*nri.NRI).PostUpdatePodSandbox)
	s.log.Info("pod sandbox resources updated", "pod", rec.ID)
	return &runtime.UpdatePodSandboxResourcesResponse{}, nil
}

// validatePodResources rejects resource values no cgroup can take.
func validatePodResources(r *runtime.LinuxContainerResources) error {
	if r == nil {
		return nil
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"cpu_period", r.CpuPeriod}, {"cpu_shares", r.CpuShares},
		{"memory_limit_in_bytes", r.MemoryLimitInBytes},
	} {
		if f.v < 0 {
			return fmt.Errorf("%s %d is negative: %w", f.name, f.v, errdefs.ErrInvalidArgument)
		}
	}
	// A negative quota is the cgroup's "no limit"; only -1 means that.
	if r.CpuQuota < -1 {
		return fmt.Errorf("cpu_quota %d: want -1 (no limit) or more: %w", r.CpuQuota, errdefs.ErrInvalidArgument)
	}
	return nil
}
