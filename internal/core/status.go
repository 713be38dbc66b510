package core

import (
	"context"
	"encoding/json"
	"os"
	"slices"

	"github.com/crid-dev/crid/internal/cgroups"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Version reports crid and the CRI version it speaks.
func (s *Service) Version(ctx context.Context, req *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	return &runtime.VersionResponse{
		Version: "0.1.0", RuntimeName: "crid", RuntimeVersion: s.version, RuntimeApiVersion: "v1",
	}, nil
}

// Status reports runtime and network readiness and the handlers' features.
func (s *Service) Status(ctx context.Context, req *runtime.StatusRequest) (*runtime.StatusResponse, error) {
	netCond := &runtime.RuntimeCondition{Type: runtime.NetworkReady, Status: true}
	if err := s.net.Ready(); err != nil {
		netCond.Status, netCond.Reason, netCond.Message = false, "NetworkPluginNotReady", err.Error()
	}
	resp := &runtime.StatusResponse{
		Status: &runtime.RuntimeStatus{Conditions: []*runtime.RuntimeCondition{
			{Type: runtime.RuntimeReady, Status: true},
			netCond,
		}},
		Features: &runtime.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	names := make([]string, 0, len(s.runtimes))
	for n := range s.runtimes {
		names = append(names, n)
	}
	slices.Sort(names)
	// The default handler is also reported under the empty name, as kubelet
	// looks features up for pods without a RuntimeClass that way.
	handlers := append([]string{""}, names...)
	idmapErr := s.idmapProbe()
	for _, n := range handlers {
		rt, err := s.runtimeFor(n)
		if err != nil {
			continue
		}
		f := &runtime.RuntimeHandlerFeatures{}
		if feat, err := rt.Features(ctx); err == nil {
			f.RecursiveReadOnlyMounts = slices.Contains(feat.MountOptions, "rro")
		}
		// Pod user namespaces need no idmapped-mount support from the
		// runtime (crid idmaps the rootfs itself), only the kernel's.
		err = idmapErr
		if err == nil {
			err = runtimeJoinsUserns(ctx, rt)
		}
		if err == nil {
			f.UserNamespaces = true
		} else {
			s.log.Debug("pod user namespaces unavailable", "handler", n, "error", err)
		}
		resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtime.RuntimeHandler{Name: n, Features: f})
	}
	if req.GetVerbose() {
		info := map[string]any{
			"config":        s.cfg,
			"cgroupUnified": cgroups.Unified(),
		}
		if err := s.net.Ready(); err != nil {
			info["lastCNILoadStatus"] = err.Error()
		} else {
			info["lastCNILoadStatus"] = "OK"
		}
		b, _ := json.Marshal(info)
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

// RuntimeConfig reports the cgroup driver kubelet must match.
func (s *Service) RuntimeConfig(ctx context.Context, req *runtime.RuntimeConfigRequest) (*runtime.RuntimeConfigResponse, error) {
	driver := runtime.CgroupDriver_CGROUPFS
	if s.cfg.CgroupDriver == "systemd" {
		driver = runtime.CgroupDriver_SYSTEMD
	}
	return &runtime.RuntimeConfigResponse{Linux: &runtime.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}

// UpdateRuntimeConfig takes the pod CIDR kubelet hands down.
func (s *Service) UpdateRuntimeConfig(ctx context.Context, req *runtime.UpdateRuntimeConfigRequest) (*runtime.UpdateRuntimeConfigResponse, error) {
	if cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr(); cidr != "" {
		if err := s.net.UpdatePodCIDR(ctx, cidr); err != nil {
			return nil, err
		}
	}
	return &runtime.UpdateRuntimeConfigResponse{}, nil
}

func removeAll(paths ...string) error {
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}
