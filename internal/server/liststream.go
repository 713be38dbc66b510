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

func (s *RuntimeServer) StreamPodSandboxes(req *runtime.StreamPodSandboxesRequest, stream runtime.RuntimeService_StreamPodSandboxesServer) error {
	resp, err := s.core.ListPodSandbox(stream.Context(), &runtime.ListPodSandboxRequest{Filter: req.GetFilter()})
	if err != nil {
		return err
	}
	return sendBatches(resp.GetItems(), func(b []*runtime.PodSandbox) error {
		return stream.Send(&runtime.StreamPodSandboxesResponse{PodSandboxes: b})
	})
}

func (s *RuntimeServer) StreamContainers(req *runtime.StreamContainersRequest, stream runtime.RuntimeService_StreamContainersServer) error {
	resp, err := s.core.ListContainers(stream.Context(), &runtime.ListContainersRequest{Filter: req.GetFilter()})
	if err != nil {
		return err
	}
	return sendBatches(resp.GetContainers(), func(b []*runtime.Container) error {
		return stream.Send(&runtime.StreamContainersResponse{Containers: b})
	})
}

func (s *RuntimeServer) StreamContainerStats(req *runtime.StreamContainerStatsRequest, stream runtime.RuntimeService_StreamContainerStatsServer) error {
	resp, err := s.core.ListContainerStats(stream.Context(), &runtime.ListContainerStatsRequest{Filter: req.GetFilter()})
	if err != nil {
		return err
	}
	return sendBatches(resp.GetStats(), func(b []*runtime.ContainerStats) error {
		return stream.Send(&runtime.StreamContainerStatsResponse{ContainerStats: b})
	})
}

func (s *RuntimeServer) StreamPodSandboxStats(req *runtime.StreamPodSandboxStatsRequest, stream runtime.RuntimeService_StreamPodSandboxStatsServer) error {
	resp, err := s.core.ListPodSandboxStats(stream.Context(), &runtime.ListPodSandboxStatsRequest{Filter: req.GetFilter()})
	if err != nil {
		return err
	}
	return sendBatches(resp.GetStats(), func(b []*runtime.PodSandboxStats) error {
		return stream.Send(&runtime.StreamPodSandboxStatsResponse{PodSandboxStats: b})
	})
}

func (s *ImageServer) StreamImages(req *runtime.StreamImagesRequest, stream runtime.ImageService_StreamImagesServer) error {
	resp, err := s.ListImages(stream.Context(), &runtime.ListImagesRequest{Filter: req.GetFilter()})
	if err != nil {
		return err
	}
	return sendBatches(resp.GetImages(), func(b []*runtime.Image) error {
		return stream.Send(&runtime.StreamImagesResponse{Images: b})
	})
}
