package core

import (
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/internal/monitor"
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
// the spec's annotations only crid's own keys and the allowed ones. It
// returns the options: the seccomp notifier is applied to the final spec
// (seccompNotifier), after NRI plugins.
func (s *Service) applyContainerAnnotations(log *slog.Logger, spec *specs.Spec, handler string,
	podAnn, ctrAnn map[string]string) (oci.ContainerOptions, error) {
	pod := s.allowedAnnotations(log, handler, "pod", podAnn)
	ctr := s.allowedAnnotations(log, handler, "container", ctrAnn)
	merged := maps.Clone(pod)
	maps.Copy(merged, ctr)
	opts, err := oci.ParseContainerOptions(merged)
	if err != nil {
		return opts, err
	}
	if err := oci.ApplyContainerOptions(spec, opts, oci.UnifiedCgroupHost()); err != nil {
		return opts, err
	}
	oci.RestrictSpecAnnotations(spec, pod, ctr)
	return opts, nil
}

// seccompNotifier rewrites spec's seccomp profile for the
// io.crid.seccomp-notifier action (oci.NotifierLog or NotifierStop) and
// returns the container's monitor the notifier's settings; nil without an
// action or a profile. A container without a profile (Unconfined,
// privileged) blocks no syscall: the annotation is ignored there, with a
// debug log, so that a pod annotation still lets its other containers run.
func seccompNotifier(log *slog.Logger, spec *specs.Spec, action, bundle string) (*monitor.SeccompNotify, error) {
	if action == "" {
		return nil, nil
	}
	if spec.Linux == nil || spec.Linux.Seccomp == nil {
		log.Debug("seccomp notifier ignored: the container has no seccomp profile", "annotation", oci.AnnotationSeccompNotifier)
		return nil, nil
	}
	plan, err := oci.RewriteForNotifier(spec.Linux.Seccomp, notifierListenerPath(bundle))
	if err != nil {
		return nil, err
	}
	if plan == nil {
		log.Debug("seccomp notifier ignored: the seccomp profile blocks no syscall with an errno", "annotation", oci.AnnotationSeccompNotifier)
		return nil, nil
	}
	n := &monitor.SeccompNotify{Stop: action == oci.NotifierStop, AuditArch: plan.AuditArch, DefaultErrno: plan.DefaultErrno}
	for _, sc := range plan.Syscalls {
		n.Syscalls = append(n.Syscalls, monitor.NotifiedSyscall{Name: sc.Name, Nr: sc.Nr, Errno: sc.Errno})
	}
	log.Info("seccomp notifier", "action", action, "syscalls", len(n.Syscalls))
	return n, nil
}

// notifierListenerPath is the monitor's notifier socket as the runtime
// dials it: absolute, or relative to the bundle (runc's working directory)
// when the absolute path does not fit in a unix socket address.
func notifierListenerPath(bundle string) string {
	p := filepath.Join(bundle, monitor.SeccompSocketName)
	if len(p) > sunPathMax {
		return monitor.SeccompSocketName
	}
	return p
}

// sunPathMax is the longest unix socket path (108 bytes with the NUL).
const sunPathMax = 107

// restrictSandboxAnnotations adds containerd's pause-only annotations to
// the pause's spec and leaves in it only crid's own annotations and the pod
// annotations the handler allows.
func (s *Service) restrictSandboxAnnotations(log *slog.Logger, spec *specs.Spec, handler string, cfg *runtime.PodSandboxConfig) {
	oci.AddSandboxAnnotations(spec, cfg, s.cfg.Images.SandboxImage)
	oci.RestrictSpecAnnotations(spec, s.allowedAnnotations(log, handler, "pod", cfg.GetAnnotations()), nil)
}
