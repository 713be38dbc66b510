package server

import (
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The Stream* list calls (KEP-5825; kubelet uses them behind its
// CRIListStreaming gate and falls back to List* on Unimplemented) answer
// exactly what the matching List* call answers, split over messages so that
// a node with thousands of containers never meets gRPC's message size
// limit. Each item goes out once; the stream ends after the last batch.

// streamBatch items per message: a Container encodes to ~0.5 KiB and a
// ContainerStats to ~1 KiB, so a batch stays far below the 16 MiB limit
// while a node of ordinary size gets its whole list in one message.
const streamBatch = 500

// sendBatches sends items in order, at most streamBatch per message, and
// nothing at all for an empty list.
func sendBatches[T any](items []T, send func([]T) error) error {
	for len(items) > 0 {
		n := min(len(items), streamBatch)
		if err := send(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

// streamList sends what a List* call answered (or its error) in batches,
// each wrapped by msg.
func streamList[T, M any](items []T, err error, msg func([]T) M, send func(M) error) error {
	if err != nil {
		return err
	}
	return sendBatches(items, func(b []T) error { return send(msg(b)) })
}

// The pod and container streams go through this server's own List* calls,
// so they come in the same (id) order as those.

func (s *RuntimeServer) StreamPodSandboxes(req *runtime.StreamPodSandboxesRequest, stream runtime.RuntimeService_StreamPodSandboxesServer) error {
	resp, err := s.ListPodSandbox(stream.Context(), &runtime.ListPodSandboxRequest{Filter: req.GetFilter()})
	return streamList(resp.GetItems(), err, func(b []*runtime.PodSandbox) *runtime.StreamPodSandboxesResponse {
		return &runtime.StreamPodSandboxesResponse{PodSandboxes: b}
	}, stream.Send)
}

func (s *RuntimeServer) StreamContainers(req *runtime.StreamContainersRequest, stream runtime.RuntimeService_StreamContainersServer) error {
	resp, err := s.ListContainers(stream.Context(), &runtime.ListContainersRequest{Filter: req.GetFilter()})
	return streamList(resp.GetContainers(), err, func(b []*runtime.Container) *runtime.StreamContainersResponse {
		return &runtime.StreamContainersResponse{Containers: b}
	}, stream.Send)
}

func (s *RuntimeServer) StreamContainerStats(req *runtime.StreamContainerStatsRequest, stream runtime.RuntimeService_StreamContainerStatsServer) error {
	resp, err := s.core.ListContainerStats(stream.Context(), &runtime.ListContainerStatsRequest{Filter: req.GetFilter()})
	return streamList(resp.GetStats(), err, func(b []*runtime.ContainerStats) *runtime.StreamContainerStatsResponse {
		return &runtime.StreamContainerStatsResponse{ContainerStats: b}
	}, stream.Send)
}

func (s *RuntimeServer) StreamPodSandboxStats(req *runtime.StreamPodSandboxStatsRequest, stream runtime.RuntimeService_StreamPodSandboxStatsServer) error {
	resp, err := s.core.ListPodSandboxStats(stream.Context(), &runtime.ListPodSandboxStatsRequest{Filter: req.GetFilter()})
	return streamList(resp.GetStats(), err, func(b []*runtime.PodSandboxStats) *runtime.StreamPodSandboxStatsResponse {
		return &runtime.StreamPodSandboxStatsResponse{PodSandboxStats: b}
	}, stream.Send)
}

func (s *ImageServer) StreamImages(req *runtime.StreamImagesRequest, stream runtime.ImageService_StreamImagesServer) error {
	resp, err := s.ListImages(stream.Context(), &runtime.ListImagesRequest{Filter: req.GetFilter()})
	return streamList(resp.GetImages(), err, func(b []*runtime.Image) *runtime.StreamImagesResponse {
		return &runtime.StreamImagesResponse{Images: b}
	}, stream.Send)
}
