package e2e

import (
	"errors"
	"io"
	"slices"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// recvAll drains a server stream, returning every batch's items.
func recvAll[R any, T any](t *testing.T, what string, recv func() (R, error), items func(R) []T) []T {
	t.Helper()
	var out []T
	for {
		r, err := recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		batch := items(r)
		if len(batch) == 0 {
			t.Fatalf("%s: an empty batch (the CRI wants at least one item per message)", what)
		}
		out = append(out, batch...)
	}
}

// sameIDs fails unless got holds exactly the ids of want, each once.
func sameIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: streamed %v, List* gave %v", what, got, want)
	}
}

// TestListStreaming: the Stream* list calls (kubelet's CRIListStreaming)
// answer what the List* calls answer, filters included, each item once.
func TestListStreaming(t *testing.T) {
	ctx := ctxT(t)
	pull(t, busybox)
	pod := podConfig(t)
	podID := runPod(t, pod, "")
	var ids []string
	for _, n := range []string{"one", "two", "three"} {
		ids = append(ids, createStart(t, podID, pod, containerConfig(n, "sleep", "300")))
	}

	lp, err := h.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := h.rt.StreamPodSandboxes(ctx, &runtime.StreamPodSandboxesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pods := recvAll(t, "StreamPodSandboxes", sp.Recv, (*runtime.StreamPodSandboxesResponse).GetPodSandboxes)
	var got, want []string
	for _, p := range pods {
		got = append(got, p.Id)
	}
	for _, p := range lp.Items {
		want = append(want, p.Id)
	}
	if !slices.Equal(got, want) {
		t.Errorf("StreamPodSandboxes order %v, ListPodSandbox order %v", got, want)
	}
	sameIDs(t, "pods", got, want)

	// Filtered to this pod: exactly its three containers.
	sc, err := h.rt.StreamContainers(ctx, &runtime.StreamContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, c := range recvAll(t, "StreamContainers", sc.Recv, (*runtime.StreamContainersResponse).GetContainers) {
		if c.State != runtime.ContainerState_CONTAINER_RUNNING || c.Labels["container"] == "" {
			t.Errorf("container %s streamed as %v with labels %v", c.Id, c.State, c.Labels)
		}
		got = append(got, c.Id)
	}
	sameIDs(t, "containers of the pod", got, slices.Clone(ids))

	ss, err := h.rt.StreamContainerStats(ctx, &runtime.StreamContainerStatsRequest{Filter: &runtime.ContainerStatsFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, s := range recvAll(t, "StreamContainerStats", ss.Recv, (*runtime.StreamContainerStatsResponse).GetContainerStats) {
		if s.GetMemory().GetWorkingSetBytes().GetValue() == 0 {
			t.Errorf("container %s: no memory working set in streamed stats", s.GetAttributes().GetId())
		}
		got = append(got, s.GetAttributes().GetId())
	}
	sameIDs(t, "container stats of the pod", got, slices.Clone(ids))

	sps, err := h.rt.StreamPodSandboxStats(ctx, &runtime.StreamPodSandboxStatsRequest{Filter: &runtime.PodSandboxStatsFilter{Id: podID}})
	if err != nil {
		t.Fatal(err)
	}
	pstats := recvAll(t, "StreamPodSandboxStats", sps.Recv, (*runtime.StreamPodSandboxStatsResponse).GetPodSandboxStats)
	if len(pstats) != 1 || pstats[0].GetAttributes().GetId() != podID || len(pstats[0].GetLinux().GetContainers()) != 3 {
		t.Fatalf("StreamPodSandboxStats for %s: %+v", podID, pstats)
	}
	// Each of the three containers runs one sleep.
	if n := pstats[0].GetLinux().GetProcess().GetProcessCount().GetValue(); n < 3 {
		t.Errorf("pod process count %d, want at least its 3 containers' processes", n)
	}

	li, err := h.img.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	si, err := h.img.StreamImages(ctx, &runtime.StreamImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got, want = nil, nil
	for _, i := range recvAll(t, "StreamImages", si.Recv, (*runtime.StreamImagesResponse).GetImages) {
		got = append(got, i.Id)
	}
	for _, i := range li.Images {
		want = append(want, i.Id)
	}
	sameIDs(t, "images", got, want)

	// A filter matching nothing ends the stream with no message at all.
	se, err := h.rt.StreamContainers(ctx, &runtime.StreamContainersRequest{Filter: &runtime.ContainerFilter{Id: "no-such-container"}})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(recvAll(t, "StreamContainers (no match)", se.Recv, (*runtime.StreamContainersResponse).GetContainers)); n != 0 {
		t.Fatalf("no-match filter streamed %d containers", n)
	}
}
