package e2e

import (
	"strconv"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestPodPIDContainerWithDefaultContainerOptions: a client (crictl with a
// minimal container config, for one) sets the pod's PID namespace to
// CONTAINER but leaves the container's namespace options empty, which is
// PID mode POD. crid runs such a pod without a pause, so there is no
// shared PID namespace; the container gets one of its own, as the pod
// asked, instead of InvalidArgument (containerd ran it too).
func TestPodPIDContainerWithDefaultContainerOptions(t *testing.T) {
	podID, pod := isoPod(t, func(p *runtime.PodSandboxConfig) {
		podSecCtx(p).NamespaceOptions = &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}
	})
	cfg := containerConfig("defaults", "sleep", "600")
	cfg.Linux = nil // no security context, no namespace options at all
	id := createStart(t, podID, pod, cfg)
	if got := must(t, id, "cat /proc/1/cmdline | tr '\\0' ' '"); got != "sleep 600" {
		t.Errorf("pid 1 in the container is %q, want its own init (sleep 600)", got)
	}
	hostPIDNS := nsLink(t, "/proc/self/ns/pid")
	st, err := h.rt.ContainerStatus(ctxT(t), &runtime.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	pid := infoPID(t, "container", st.Info["info"])
	if got := nsLink(t, "/proc/"+strconv.Itoa(pid)+"/ns/pid"); got == hostPIDNS {
		t.Errorf("container runs in the host's PID namespace %s", got)
	}
}
