package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/metrics"
	"github.com/crid-dev/crid/internal/monitor"
	"github.com/crid-dev/crid/internal/nsexec"
	"github.com/crid-dev/crid/internal/runc"
	"github.com/crid-dev/crid/internal/tracing"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxExecSyncOutput caps each of stdout and stderr of ExecSync, as the CRI says.
const maxExecSyncOutput = 16 << 20

// cappedBuffer keeps the first max bytes and silently drops the rest, so a
// chatty process can neither exhaust memory nor block on a full pipe.
type cappedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

// ContainerRunning returns nil if the container exists and runs.
func (s *Service) ContainerRunning(ctx context.Context, containerID string) error {
	c, err := s.getContainer(containerID)
	if err != nil {
		return err
	}
	return requireRunning(c)
}

func requireRunning(c *container) error {
	if st := c.snapshot().State; st != containerRunning {
		return fmt.Errorf("container %s is %s, not running: %w", c.rec.ID, st, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// execProcess is the container's process spec with cmd as its args.
func execProcess(base *specs.Process, cmd []string, tty bool) *specs.Process {
	p := *base
	p.Args = cmd
	p.Terminal = tty
	p.ConsoleSize = nil
	return &p
}

// exec runs cmd in a running container: through crid-nsexec when the
// handler allows it and the helper covers the spec, else the runtime's
// exec. Its errors name the container (the streaming server passes them
// on as they are).
func (s *Service) exec(ctx context.Context, kind, containerID string, cmd []string, eio runc.ExecIO) (int, error) {
	if len(cmd) == 0 {
		return 0, fmt.Errorf("exec in container %s: cmd is required: %w", containerID, errdefs.ErrInvalidArgument)
	}
	c, err := s.getContainer(containerID)
	if err != nil {
		return 0, err
	}
	if err := requireRunning(c); err != nil {
		return 0, err
	}
	if err := c.waitExecd(ctx); err != nil {
		return 0, fmt.Errorf("exec in %w", err)
	}
	spec, err := s.containerSpec(c)
	if err != nil {
		return 0, err
	}
	proc := execProcess(spec.Process, cmd, eio.Terminal)
	rec := c.snapshot()
	handler := s.handlerOf(rec.SandboxID)
	rt, err := s.runtimeFor(handler)
	if err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", rec.ID, err)
	}
	drain := s.cfg.Runtime.ExecSyncDrainTimeout.Duration
	if s.nsexec != nil && s.handlerConfig(handler).ExecDirect() {
		t := nsexec.Target{Pid: rec.PID, Spec: spec}
		start := time.Now()
		// The command is left out of the span: it may carry secrets.
		nctx, span := tracing.Start(ctx, "exec.nsexec", tracing.ContainerID.String(rec.ID))
		code, err := s.nsexec.Exec(nctx, t, proc, nsexec.IO{Stdin: eio.Stdin, Stdout: eio.Stdout, Stderr: eio.Stderr}, drain)
		tracing.End(span, err)
		if !errors.Is(err, nsexec.ErrUnsupported) {
			s.timeExec(kind, metrics.ExecPathNsexec, start, err)
			if err != nil {
				return code, fmt.Errorf("exec in container %s: %w", rec.ID, err)
			}
			return code, nil
		}
		if !eio.Terminal {
			s.log.Debug("exec through the runtime", "container", rec.ID, "reason", err)
		}
	}
	if l := spec.Linux; l != nil && l.Seccomp != nil && l.Seccomp.ListenerPath != "" && !filepath.IsAbs(l.Seccomp.ListenerPath) {
		// The notifier's socket, relative to the bundle (notifierListenerPath).
		eio.Dir = s.containerBundle(rec.ID)
	}
	start := time.Now()
	code, err := rt.Exec(ctx, rec.ID, proc, eio, drain)
	s.timeExec(kind, metrics.ExecPathRuntime, start, err)
	return code, err
}

// ExecSync runs a command in a container and returns its output and exit code.
func (s *Service) ExecSync(ctx context.Context, req *runtime.ExecSyncRequest) (*runtime.ExecSyncResponse, error) {
	if req.GetTimeout() > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.Timeout)*time.Second)
		defer cancel()
	}
	stdout := &cappedBuffer{max: maxExecSyncOutput}
	stderr := &cappedBuffer{max: maxExecSyncOutput}
	code, err := s.exec(ctx, metrics.ExecSync, req.GetContainerId(), req.GetCmd(), runc.ExecIO{Stdout: stdout, Stderr: stderr})
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("exec in container %s: command %q timed out after %ds: %w",
				req.GetContainerId(), req.GetCmd(), req.GetTimeout(), context.DeadlineExceeded)
		}
		return nil, err // names the container already
	}
	return &runtime.ExecSyncResponse{Stdout: stdout.buf.Bytes(), Stderr: stderr.buf.Bytes(), ExitCode: int32(code)}, nil
}

// ExecStream runs cmd in a running container for the streaming server.
func (s *Service) ExecStream(ctx context.Context, containerID string, cmd []string, eio runc.ExecIO) (int, error) {
	return s.exec(ctx, metrics.ExecStream, containerID, cmd, eio)
}

// AttachStream attaches to a running container's stdio through its monitor.
func (s *Service) AttachStream(ctx context.Context, containerID string, o monitor.AttachOptions) error {
	c, err := s.getContainer(containerID)
	if err != nil {
		return err
	}
	if err := s.ContainerRunning(ctx, c.rec.ID); err != nil {
		return err
	}
	return monitor.Attach(ctx, s.containerBundle(c.rec.ID), o)
}
