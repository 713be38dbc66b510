package core

import (
	"fmt"
	"log/slog"
	"maps"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/internal/oci"
)

// allowedAnnotations returns the annotations in ann that the handler's
// allowed_annotations let through. The rest are ignored, never refused:
// kubelet and other tools add annotations of their own freely.
func (s *Service) allowedAnnotations(log *slog.Logger, handler, what string, ann map[string]string) map[string]string {
	allowed, ignored := oci.FilterAnnotations(ann, s.handlerConfig(handler).AllowedAnnotations)
	if len(ignored) > 0 {
		log.Debug("annotations not allowed for the runtime handler are ignored", "of", what, "handler", handler, "keys", ignored)
	}
	return allowed
}

// podAnnotationOptions validates the crid annotations of a pod that its
// handler allows, the container keys among them too (they are the
// defaults of its containers), so a bad value fails RunPodSandbox.
func (s *Service) podAnnotationOptions(log *slog.Logger, handler string, cfg *runtime.PodSandboxConfig) (oci.PodOptions, error) {
	ann := s.allowedAnnotations(log, handler, "pod", cfg.GetAnnotations())
	opts, err := oci.ParsePodOptions(ann)
	if err != nil {
		return opts, err
	}
	if _, err := oci.ParseContainerOptions(ann); err != nil {
		return opts, err
	}
	if opts.ShmSize != 0 && hostIPC(cfg) {
		return opts, fmt.Errorf("annotation %s: the pod uses the host's IPC namespace and /dev/shm: %w", oci.AnnotationShmSize, errdefs.ErrInvalidArgument)
	}
	return opts, nil
}

// applyContainerAnnotations applies the container keys of the allowed
// annotations to spec (container annotations over the pod's) and leaves in
// the spec's annotations only crid's own keys and the allowed ones.
func (s *Service) applyContainerAnnotations(log *slog.Logger, spec *specs.Spec, handler string,
	podAnn, ctrAnn map[string]string) error {
	pod := s.allowedAnnotations(log, handler, "pod", podAnn)
	ctr := s.allowedAnnotations(log, handler, "container", ctrAnn)
	merged := maps.Clone(pod)
	maps.Copy(merged, ctr)
	opts, err := oci.ParseContainerOptions(merged)
	if err != nil {
		return err
	}
	if err := oci.ApplyContainerOptions(spec, opts, oci.UnifiedCgroupHost()); err != nil {
		return err
	}
	oci.RestrictSpecAnnotations(spec, pod, ctr)
	return nil
}

// restrictSandboxAnnotations adds containerd's pause-only annotations to
// the pause's spec and leaves in it only crid's own annotations and the pod
// annotations the handler allows.
func (s *Service) restrictSandboxAnnotations(log *slog.Logger, spec *specs.Spec, handler string, cfg *runtime.PodSandboxConfig) {
	oci.AddSandboxAnnotations(spec, cfg, s.cfg.Images.SandboxImage)
	oci.RestrictSpecAnnotations(spec, s.allowedAnnotations(log, handler, "pod", cfg.GetAnnotations()), nil)
}
