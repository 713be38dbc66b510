// Package streaming runs crid's exec/attach/port-forward server on
// k8s.io/cri-streaming and adapts it to the core.
package streaming

import (
	"context"
	"io"

	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/monitor"
	"github.com/crid-dev/crid/internal/runc"
)

// Backend is what the streaming server needs from the core.
type Backend interface {
	// ExecStream runs cmd in a running container and returns its exit code.
	ExecStream(ctx context.Context, containerID string, cmd []string, eio runc.ExecIO) (int, error)
	// AttachStream attaches to a running container's stdio.
	AttachStream(ctx context.Context, containerID string, o monitor.AttachOptions) error
	// SandboxNetNS is the network namespace path of a ready sandbox ("" for host network).
	SandboxNetNS(ctx context.Context, sandboxID string) (string, error)
}

// Server is the streaming server.
type Server struct {
	// implementation owned by the streaming package
}

// New creates the streaming server on cfg's address.
func New(cfg config.Streaming, b Backend) (*Server, error) { panic("not implemented") }

// Start serves until Stop.
func (s *Server) Start() error { panic("not implemented") }

// Stop closes the listener and active streams.
func (s *Server) Stop() error { panic("not implemented") }

var _ = io.EOF
