package server

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The RuntimeService methods delegate to the core; the interceptor maps
// errors and logs. Exec, Attach and PortForward are in streaming.go.

func (s *RuntimeServer) Version(ctx context.Context, req *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	return s.core.Version(ctx, req)
}

func (s *RuntimeServer) RunPodSandbox(ctx context.Context, req *runtime.RunPodSandboxRequest) (*runtime.RunPodSandboxResponse, error) {
	return s.core.RunPodSandbox(ctx, req)
}

func (s *RuntimeServer) StopPodSandbox(ctx context.Context, req *runtime.StopPodSandboxRequest) (*runtime.StopPodSandboxResponse, error) {
	return s.core.StopPodSandbox(ctx, req)
}

func (s *RuntimeServer) RemovePodSandbox(ctx context.Context, req *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	return s.core.RemovePodSandbox(ctx, req)
}

func (s *RuntimeServer) PodSandboxStatus(ctx context.Context, req *runtime.PodSandboxStatusRequest) (*runtime.PodSandboxStatusResponse, error) {
	return s.core.PodSandboxStatus(ctx, req)
}

func (s *RuntimeServer) ListPodSandbox(ctx context.Context, req *runtime.ListPodSandboxRequest) (*runtime.ListPodSandboxResponse, error) {
	resp, err := s.core.ListPodSandbox(ctx, req)
	if err != nil || s.cache == nil {
		return resp, err
	}
	return s.cache.listPodSandbox(req, resp), nil
}

func (s *RuntimeServer) CreateContainer(ctx context.Context, req *runtime.CreateContainerRequest) (*runtime.CreateContainerResponse, error) {
	return s.core.CreateContainer(ctx, req)
}

func (s *RuntimeServer) StartContainer(ctx context.Context, req *runtime.StartContainerRequest) (*runtime.StartContainerResponse, error) {
	return s.core.StartContainer(ctx, req)
}

func (s *RuntimeServer) StopContainer(ctx context.Context, req *runtime.StopContainerRequest) (*runtime.StopContainerResponse, error) {
	return s.core.StopContainer(ctx, req)
}

func (s *RuntimeServer) RemoveContainer(ctx context.Context, req *runtime.RemoveContainerRequest) (*runtime.RemoveContainerResponse, error) {
	return s.core.RemoveContainer(ctx, req)
}

func (s *RuntimeServer) ListContainers(ctx context.Context, req *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	resp, err := s.core.ListContainers(ctx, req)
	if err != nil || s.cache == nil {
		return resp, err
	}
	return s.cache.listContainers(req, resp), nil
}

func (s *RuntimeServer) ContainerStatus(ctx context.Context, req *runtime.ContainerStatusRequest) (*runtime.ContainerStatusResponse, error) {
	return s.core.ContainerStatus(ctx, req)
}

func (s *RuntimeServer) UpdateContainerResources(ctx context.Context, req *runtime.UpdateContainerResourcesRequest) (*runtime.UpdateContainerResourcesResponse, error) {
	return s.core.UpdateContainerResources(ctx, req)
}

func (s *RuntimeServer) ReopenContainerLog(ctx context.Context, req *runtime.ReopenContainerLogRequest) (*runtime.ReopenContainerLogResponse, error) {
	return s.core.ReopenContainerLog(ctx, req)
}

func (s *RuntimeServer) CheckpointContainer(ctx context.Context, req *runtime.CheckpointContainerRequest) (*runtime.CheckpointContainerResponse, error) {
	return s.core.CheckpointContainer(ctx, req)
}

func (s *RuntimeServer) ExecSync(ctx context.Context, req *runtime.ExecSyncRequest) (*runtime.ExecSyncResponse, error) {
	return s.core.ExecSync(ctx, req)
}

func (s *RuntimeServer) ContainerStats(ctx context.Context, req *runtime.ContainerStatsRequest) (*runtime.ContainerStatsResponse, error) {
	return s.core.ContainerStats(ctx, req)
}

func (s *RuntimeServer) ListContainerStats(ctx context.Context, req *runtime.ListContainerStatsRequest) (*runtime.ListContainerStatsResponse, error) {
	return s.core.ListContainerStats(ctx, req)
}

func (s *RuntimeServer) PodSandboxStats(ctx context.Context, req *runtime.PodSandboxStatsRequest) (*runtime.PodSandboxStatsResponse, error) {
	return s.core.PodSandboxStats(ctx, req)
}

func (s *RuntimeServer) ListPodSandboxStats(ctx context.Context, req *runtime.ListPodSandboxStatsRequest) (*runtime.ListPodSandboxStatsResponse, error) {
	return s.core.ListPodSandboxStats(ctx, req)
}

func (s *RuntimeServer) UpdateRuntimeConfig(ctx context.Context, req *runtime.UpdateRuntimeConfigRequest) (*runtime.UpdateRuntimeConfigResponse, error) {
	return s.core.UpdateRuntimeConfig(ctx, req)
}

func (s *RuntimeServer) Status(ctx context.Context, req *runtime.StatusRequest) (*runtime.StatusResponse, error) {
	return s.core.Status(ctx, req)
}

func (s *RuntimeServer) RuntimeConfig(ctx context.Context, req *runtime.RuntimeConfigRequest) (*runtime.RuntimeConfigResponse, error) {
	return s.core.RuntimeConfig(ctx, req)
}

func (s *RuntimeServer) GetContainerEvents(req *runtime.GetEventsRequest, stream runtime.RuntimeService_GetContainerEventsServer) error {
	return s.core.ContainerEvents(stream.Context(), stream.Send)
}

func (s *RuntimeServer) UpdatePodSandboxResources(ctx context.Context, req *runtime.UpdatePodSandboxResourcesRequest) (*runtime.UpdatePodSandboxResourcesResponse, error) {
	return s.core.UpdatePodSandboxResources(ctx, req)
}
