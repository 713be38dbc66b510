package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podsNamed lists the pods whose metadata matches cfg's name and uid.
func podsNamed(t *testing.T, cfg *runtime.PodSandboxConfig) []*runtime.PodSandbox {
	t.Helper()
	r, err := h.rt.ListPodSandbox(ctxT(t), &runtime.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*runtime.PodSandbox
	for _, p := range r.Items {
		if p.Metadata.GetName() == cfg.Metadata.Name && p.Metadata.GetUid() == cfg.Metadata.Uid {
			out = append(out, p)
		}
	}
	return out
}

// TestCreateOutlivesCallerDeadline: kubelet's deadline passes while the
// pod's network is still being set up (a CNI ADD taking 3s); the pod is not
// rolled back, and kubelet's retry of the same request gets that pod, not
// "name is reserved" and not a second pod. The same holds for a container
// whose creation outlasts its caller (a 3s createRuntime hook).
func TestCreateOutlivesCallerDeadline(t *testing.T) {
	pull(t, busybox)
	cfg := podConfig(t)
	cfg.Metadata.Name = "cnislow-" + randHex(4)
	short := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), time.Second)
	}

	ctx, cancel := short()
	_, err := h.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("RunPodSandbox with a 1s deadline around a 3s CNI ADD: %v, want DeadlineExceeded", err)
	}
	// The retry arrives while the first is still in flight.
	resp, err := h.rt.RunPodSandbox(ctxT(t), &runtime.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("retry: %v\ncrid log:\n%s", err, h.logTail())
	}
	podID := resp.PodSandboxId
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = h.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID})
	})
	pods := podsNamed(t, cfg)
	if len(pods) != 1 || pods[0].Id != podID || pods[0].State != runtime.PodSandboxState_SANDBOX_READY {
		t.Fatalf("after the retry: %v, want the one ready pod %s", pods, podID)
	}
	// Set up once: the first attempt was not rolled back and redone.
	if adds := readLines(t, filepath.Join(h.base, "cnibin", cfg.Metadata.Name+".adds")); len(adds) != 1 {
		t.Fatalf("the pod's network was set up %d times (%v), want once", len(adds), adds)
	}
	// A later identical request is a new attempt, not a replay: the
	// result was claimed, so the name is simply taken.
	if _, err := h.rt.RunPodSandbox(ctxT(t), &runtime.RunPodSandboxRequest{Config: cfg}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("third RunPodSandbox of the same pod: %v, want AlreadyExists", err)
	}

	// A container whose creation takes 3s (a createRuntime hook, via CDI).
	kind := "e2e.crid.dev/slow" + randHex(2)
	hookLog := filepath.Join(h.base, "slow-hook-"+randHex(3))
	spec := fmt.Sprintf(`{"cdiVersion": "0.6.0", "kind": %q, "devices": [{"name": "dev",
  "containerEdits": {"hooks": [{"hookName": "createRuntime", "path": "/bin/sh", "args": ["sh", "-c", "echo ran >> %s; sleep 3"]}]}}]}`, kind, hookLog)
	specFile := filepath.Join(h.base, "cdi", "slow-"+randHex(3)+".json")
	if err := os.MkdirAll(filepath.Dir(specFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(specFile, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(specFile) })
	ccfg := containerConfig("slow", "sleep", "300")
	ccfg.CDIDevices = []*runtime.CDIDevice{{Name: kind + "=dev"}}
	creq := &runtime.CreateContainerRequest{PodSandboxId: podID, Config: ccfg, SandboxConfig: cfg}
	ctx, cancel = short()
	_, err = h.rt.CreateContainer(ctx, creq)
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("CreateContainer with a 1s deadline around a 3s hook: %v, want DeadlineExceeded", err)
	}
	// This retry comes after the first has finished: the result waited.
	time.Sleep(4 * time.Second)
	cr, err := h.rt.CreateContainer(ctxT(t), creq)
	if err != nil {
		t.Fatalf("container retry: %v\ncrid log:\n%s", err, h.logTail())
	}
	lc, err := h.rt.ListContainers(ctxT(t), &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(lc.Containers) != 1 || lc.Containers[0].Id != cr.ContainerId || lc.Containers[0].State != runtime.ContainerState_CONTAINER_CREATED {
		t.Fatalf("containers of the pod after the retry: %v, want the one created %s", lc.Containers, cr.ContainerId)
	}
	if runs := readLines(t, hookLog); len(runs) != 1 {
		t.Fatalf("the container was created %d times, want once", len(runs))
	}
	if _, err := h.rt.StartContainer(ctxT(t), &runtime.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatalf("StartContainer of the handed-over container: %v", err)
	}
	if st := containerStatus(t, cr.ContainerId); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("handed-over container: %v", st.State)
	}
}
