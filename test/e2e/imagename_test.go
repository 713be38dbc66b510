package e2e

import (
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestContainerStatusImageIsUserReference creates a container as kubelet
// does (image ID in Image, the pod spec's reference in UserSpecifiedImage)
// and expects the status and the listing to report the reference: kubelet
// shows it as containerStatuses[].image, and the node e2e suite waits for
// an image swapped on a running pod to appear there by name.
func TestContainerStatusImageIsUserReference(t *testing.T) {
	imageID := pull(t, busybox)
	ctx := ctxT(t)
	pod := podConfig(t)
	podID := runPod(t, pod, "")
	cfg := containerConfig("main", "sleep", "1000")
	cfg.Image = &runtime.ImageSpec{Image: imageID, UserSpecifiedImage: busybox}
	id := createStart(t, podID, pod, cfg)

	st := containerStatus(t, id)
	if got := st.GetImage().GetImage(); got != busybox {
		t.Errorf("ContainerStatus image = %q, want the user's reference %q", got, busybox)
	}
	if st.GetImageId() != imageID {
		t.Errorf("ContainerStatus image id = %q, want %q", st.GetImageId(), imageID)
	}
	list, err := h.rt.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{Id: id}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Containers) != 1 || list.Containers[0].GetImage().GetImage() != busybox {
		t.Errorf("ListContainers = %v, want one container with image %q", list.Containers, busybox)
	}

	// Without a user reference (crictl), the image is reported as given.
	cfg2 := containerConfig("second", "sleep", "1000")
	cfg2.Image = &runtime.ImageSpec{Image: imageID}
	id2 := createStart(t, podID, pod, cfg2)
	if got := containerStatus(t, id2).GetImage().GetImage(); got != imageID {
		t.Errorf("ContainerStatus image without a user reference = %q, want %q", got, imageID)
	}
}
