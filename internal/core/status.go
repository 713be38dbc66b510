package core

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/crid-dev/crid/internal/cgroups"
	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/runc"
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
		// Like containerd's and CRI-O's runtime sections: what each handler
		// runs, so an operator sees which runc a node really uses.
		info["defaultRuntimeName"] = s.cfg.Runtime.DefaultHandler
		info["runtimes"] = s.HandlerInfos(ctx)
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

// HandlerInfo describes one runtime handler: what `crictl info` shows
// under "runtimes" and what crid logs about it at start.
type HandlerInfo struct {
	Name       string `json:"name"`
	Path       string `json:"path"` // the binary crid runs, resolved at start
	Root       string `json:"root"`
	DirectExec bool   `json:"directExec"`
	// Version is the first line of `<path> --version`, read once at start.
	Version string `json:"version,omitempty"`
	// KnownEscapes are the published escapes its version is not fixed for.
	KnownEscapes []runc.Advisory `json:"knownEscapes,omitempty"`
	// Problems are what crid could not check or finds inconsistent.
	Problems []string `json:"problems,omitempty"`
}

// HandlerInfos describes every handler, sorted by name. The runtimes'
// versions are read on the first call (the daemon makes it at start) and
// served from runc.Runtime's cache after that.
func (s *Service) HandlerInfos(ctx context.Context) []HandlerInfo {
	names := make([]string, 0, len(s.runtimes))
	for n := range s.runtimes {
		names = append(names, n)
	}
	slices.Sort(names)
	infos := make([]HandlerInfo, 0, len(names))
	for _, n := range names {
		rt := s.runtimes[n]
		vi, err := rt.VersionInfo(ctx)
		infos = append(infos, describeHandler(n, s.cfg.Runtime.Handlers[n], rt, vi, err))
	}
	return infos
}

// describeHandler builds a handler's HandlerInfo from its `--version`
// answer (or the error running it).
func describeHandler(name string, h config.Handler, rt *runc.Runtime, vi runc.VersionInfo, verErr error) HandlerInfo {
	hi := HandlerInfo{Name: name, Path: rt.Path, Root: rt.Root, DirectExec: h.ExecDirect(), Version: vi.Line}
	if verErr != nil {
		hi.Problems = append(hi.Problems, fmt.Sprintf("cannot read the runtime's version, known escapes unchecked: %v", verErr))
		return hi
	}
	escapes, err := runc.KnownEscapes(vi)
	if err != nil {
		hi.Problems = append(hi.Problems, fmt.Sprintf("cannot parse the runtime's version %q, known escapes unchecked: %v", vi.Line, err))
	}
	hi.KnownEscapes = escapes
	// direct_exec's default goes by the binary's name (config.DirectExecDefault);
	// a runtime that calls itself something else under that name (runsc
	// installed as "runc") would have exec run outside its sandbox.
	if hi.DirectExec && h.DirectExec == nil && vi.Runtime != "runc" && vi.Runtime != "crun" {
		hi.Problems = append(hi.Problems, fmt.Sprintf(
			"direct_exec defaults to true for %s by its file name, but its --version says %q: if it is not runc or crun, set runtime.handlers.%s.direct_exec = false",
			rt.Path, vi.Line, name))
	}
	return hi
}
