package server

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRI metrics (KEP-2371), served from the core.

func (s *RuntimeServer) ListMetricDescriptors(ctx context.Context, req *runtime.ListMetricDescriptorsRequest) (*runtime.ListMetricDescriptorsResponse, error) {
	return s.core.ListMetricDescriptors(ctx, req)
}

func (s *RuntimeServer) ListPodSandboxMetrics(ctx context.Context, req *runtime.ListPodSandboxMetricsRequest) (*runtime.ListPodSandboxMetricsResponse, error) {
	return s.core.ListPodSandboxMetrics(ctx, req)
}

func (s *RuntimeServer) StreamPodSandboxMetrics(req *runtime.StreamPodSandboxMetricsRequest, stream runtime.RuntimeService_StreamPodSandboxMetricsServer) error {
	return s.core.StreamPodSandboxMetrics(stream.Context(), stream.Send)
}
