package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Exec hands out a one-shot URL on the streaming server for running a
// command in a running container.
func (s *RuntimeServer) Exec(ctx context.Context, req *runtime.ExecRequest) (*runtime.ExecResponse, error) {
	if req.GetContainerId() == "" {
		return nil, fmt.Errorf("exec: container_id is required: %w", errdefs.ErrInvalidArgument)
	}
	if len(req.GetCmd()) == 0 {
		return nil, fmt.Errorf("exec in %s: cmd is required: %w", req.GetContainerId(), errdefs.ErrInvalidArgument)
	}
	if err := validateStreams(req.GetTty(), req.GetStdin(), req.GetStdout(), req.GetStderr()); err != nil {
		return nil, fmt.Errorf("exec in %s: %w", req.GetContainerId(), err)
	}
	if err := s.core.ContainerRunning(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	resp, err := s.stream.GetExec(req)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", req.GetContainerId(), err)
	}
	return resp, nil
}

// Attach hands out a one-shot URL for attaching to a running container.
func (s *RuntimeServer) Attach(ctx context.Context, req *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	if req.GetContainerId() == "" {
		return nil, fmt.Errorf("attach: container_id is required: %w", errdefs.ErrInvalidArgument)
	}
	if err := validateStreams(req.GetTty(), req.GetStdin(), req.GetStdout(), req.GetStderr()); err != nil {
		return nil, fmt.Errorf("attach to %s: %w", req.GetContainerId(), err)
	}
	if err := s.core.ContainerRunning(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	resp, err := s.stream.GetAttach(req)
	if err != nil {
		return nil, fmt.Errorf("attach to %s: %w", req.GetContainerId(), err)
	}
	return resp, nil
}

// PortForward hands out a one-shot URL for forwarding ports of a ready
// sandbox.
func (s *RuntimeServer) PortForward(ctx context.Context, req *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("port forward: pod_sandbox_id is required: %w", errdefs.ErrInvalidArgument)
	}
	for _, p := range req.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, fmt.Errorf("port forward to %s: port %d out of range: %w", req.GetPodSandboxId(), p, errdefs.ErrInvalidArgument)
		}
	}
	if _, err := s.core.SandboxNetNS(ctx, req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	resp, err := s.stream.GetPortForward(req)
	if err != nil {
		return nil, fmt.Errorf("port forward to %s: %w", req.GetPodSandboxId(), err)
	}
	return resp, nil
}

// validateStreams applies the CRI rules for the stdio flags of exec and
// attach: a TTY merges stderr into stdout, and a session without any stream
// is meaningless.
func validateStreams(tty, stdin, stdout, stderr bool) error {
	if tty && stderr {
		return fmt.Errorf("tty and stderr cannot both be set: %w", errdefs.ErrInvalidArgument)
	}
	if !stdin && !stdout && !stderr {
		return fmt.Errorf("one of stdin, stdout or stderr must be set: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}
