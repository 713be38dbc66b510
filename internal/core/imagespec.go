package core

import runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

// statusImage is the image a container's status and listing report.
// kubelet creates containers with the image ID in Image and the user's
// reference (image[:tag] or digest) in UserSpecifiedImage, and shows the
// status's Image to users as the pod's containerStatuses[].image: its
// specs compare that with the reference they set (an image swapped on a
// running pod is seen to take effect by its name). Report the user's
// reference when the client gave one, as containerd reports a reference
// rather than the ID; otherwise the image as the client gave it.
func statusImage(spec *runtime.ImageSpec) *runtime.ImageSpec {
	user := spec.GetUserSpecifiedImage()
	if user == "" || user == spec.GetImage() {
		return spec
	}
	// A new spec, not a clone (ListContainers runs this per container on
	// every kubelet relist); the annotations map is shared, read-only.
	return &runtime.ImageSpec{
		Image: user, Annotations: spec.GetAnnotations(),
		UserSpecifiedImage: user, RuntimeHandler: spec.GetRuntimeHandler(), ImageRef: spec.GetImageRef(),
	}
}
