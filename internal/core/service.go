// Package core is crid's container runtime core: pod sandboxes and
// containers, their lifecycle, state, recovery after restart. It speaks
// CRI message types but knows nothing of gRPC; errors are errdefs errors.
package core

import (
	"context"

	"github.com/crid-dev/crid/internal/monitor"
	"github.com/crid-dev/crid/internal/runc"
)

// Service is the runtime core.
type Service struct{}

// ExecStream runs cmd in a running container and returns its exit code.
func (s *Service) ExecStream(ctx context.Context, containerID string, cmd []string, eio runc.ExecIO) (int, error) {
	panic("not implemented")
}

// AttachStream attaches to a running container's stdio.
func (s *Service) AttachStream(ctx context.Context, containerID string, o monitor.AttachOptions) error {
	panic("not implemented")
}

// SandboxNetNS is the network namespace path of a ready sandbox.
func (s *Service) SandboxNetNS(ctx context.Context, sandboxID string) (string, error) {
	panic("not implemented")
}

// ContainerRunning returns nil if the container exists and runs, else a
// NotFound or FailedPrecondition error (checked before handing out a stream URL).
func (s *Service) ContainerRunning(ctx context.Context, containerID string) error {
	panic("not implemented")
}
