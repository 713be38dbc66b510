package e2e

import (
	"encoding/json"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podConfigResources reads the resources and overhead of the pod's config
// as verbose PodSandboxStatus reports it.
func podConfigResources(t *testing.T, podID string) (res, overhead *runtime.LinuxContainerResources) {
	t.Helper()
	st, err := h.rt.PodSandboxStatus(ctxT(t), &runtime.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Config *runtime.PodSandboxConfig `json:"config"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil {
		t.Fatalf("verbose info: %v", err)
	}
	return info.Config.GetLinux().GetResources(), info.Config.GetLinux().GetOverhead()
}

// TestUpdatePodSandboxResources: an in-place pod resize is recorded in the
// pod's config, survives a crid crash, and bad requests get the right codes.
func TestUpdatePodSandboxResources(t *testing.T) {
	ctx := ctxT(t)
	pod := podConfig(t)
	podID := runPod(t, pod, "")
	if r, _ := podConfigResources(t, podID); r != nil {
		t.Fatalf("fresh pod already has resources %v", r)
	}
	res := &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 150000, CpuShares: 1536, MemoryLimitInBytes: 256 << 20}
	overhead := &runtime.LinuxContainerResources{CpuShares: 10, MemoryLimitInBytes: 16 << 20}
	if _, err := h.rt.UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: podID, Resources: res, Overhead: overhead}); err != nil {
		t.Fatalf("UpdatePodSandboxResources: %v", err)
	}
	check := func(when string) {
		t.Helper()
		r, o := podConfigResources(t, podID)
		if r.GetCpuQuota() != 150000 || r.GetCpuShares() != 1536 || r.GetMemoryLimitInBytes() != 256<<20 {
			t.Fatalf("%s: resources %v", when, r)
		}
		if o.GetCpuShares() != 10 || o.GetMemoryLimitInBytes() != 16<<20 {
			t.Fatalf("%s: overhead %v", when, o)
		}
	}
	check("after update")
	// Labels and the rest of the config are untouched.
	lp, err := h.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{Id: podID}})
	if err != nil || len(lp.Items) != 1 || lp.Items[0].Labels["test"] != "e2e" {
		t.Fatalf("pod after update: %v %v", lp, err)
	}

	h.stop(syscall.SIGKILL)
	if err := h.start(); err != nil {
		t.Fatal(err)
	}
	check("after a crid crash")

	for _, tc := range []struct {
		name string
		req  *runtime.UpdatePodSandboxResourcesRequest
		code codes.Code
	}{
		{"no id", &runtime.UpdatePodSandboxResourcesRequest{Resources: res}, codes.InvalidArgument},
		{"missing pod", &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: "0000000000000000deadbeef", Resources: res}, codes.NotFound},
		{"negative memory", &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: podID, Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: -5}}, codes.InvalidArgument},
	} {
		_, err := h.rt.UpdatePodSandboxResources(ctxT(t), tc.req)
		if status.Code(err) != tc.code {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.code)
		}
	}
	check("after rejected updates")
}
