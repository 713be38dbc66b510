package streaming

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/monitor"
	"github.com/crid-dev/crid/internal/runc"
	cristreaming "k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// adapter implements cri-streaming's Runtime over Backend.
type adapter struct {
	b   Backend
	srv *Server
}

var _ cristreaming.Runtime = (*adapter)(nil)

// Exec runs cmd through the backend. A non-zero exit code is returned as a
// utilexec.CodeExitError: cri-streaming turns exactly that into the
// NonZeroExitCode status the client reports as the command's exit code;
// any other error reaches the client as an internal error.
func (a *adapter) Exec(ctx context.Context, containerID string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer closeOutputs(out, errOut)

	stdin := guardStdin(ctx, in)
	defer stdin.close()

	eio := runc.ExecIO{
		Stdin:    stdin.reader(),
		Stdout:   asWriter(out),
		Stderr:   asWriter(errOut),
		Terminal: tty,
		Resize:   convertResize(ctx, resize),
	}
	if tty {
		eio.Stderr = nil
	}
	code, err := a.b.ExecStream(ctx, containerID, cmd, eio)
	if err != nil {
		a.srv.log.Warn("exec stream failed", "container", containerID, "error", err)
		return err // the backend's errors name the container
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("exit status %d", code), Code: code}
	}
	return nil
}

// Attach connects the client to the container's stdio through the backend
// until the backend returns (container exit or ctx cancelled when the
// client hangs up or the server stops).
func (a *adapter) Attach(ctx context.Context, containerID string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer closeOutputs(out, errOut)

	stdin := guardStdin(ctx, in)
	defer stdin.close()

	o := monitor.AttachOptions{
		Stdin:  stdin.reader(),
		Stdout: asWriter(out),
		Stderr: asWriter(errOut),
		Resize: convertResize(ctx, resize),
	}
	if tty {
		o.Stderr = nil
	}
	if err := a.b.AttachStream(ctx, containerID, o); err != nil && !errors.Is(err, context.Canceled) {
		a.srv.log.Warn("attach stream failed", "container", containerID, "error", err)
		return fmt.Errorf("attach to container %s: %w", containerID, err)
	}
	return nil
}

// PortForward connects stream to port on the sandbox's loopback (inside its
// network namespace; on the host for host-network sandboxes).
func (a *adapter) PortForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// cri-streaming hands port forwards a background context: bind the
	// forward to the server's life and, where we can tell, to the client's
	// connection.
	stopServer := context.AfterFunc(a.srv.ctx, cancel)
	defer stopServer()
	connCtx, known := a.srv.streamConnContext(stream)
	if known {
		stopConn := context.AfterFunc(connCtx, cancel)
		defer stopConn()
	}

	if port <= 0 || port > 65535 {
		return fmt.Errorf("port %d out of range: %w", port, errdefs.ErrInvalidArgument)
	}
	netns, err := a.b.SandboxNetNS(ctx, sandboxID)
	if err != nil {
		return fmt.Errorf("port forward to sandbox %s: %w", sandboxID, err)
	}
	conn, err := dialLoopback(ctx, netns, int(port))
	if err != nil {
		return fmt.Errorf("port forward to sandbox %s port %d: %w", sandboxID, port, err)
	}
	defer conn.Close()

	// Without the connection we cannot tell a client's half-close from its
	// hang-up (WebSocket port forward has no half-close at all), so end of
	// client input then ends the forward.
	if err := proxy(ctx, conn, stream, known); err != nil {
		a.srv.log.Debug("port forward ended with error", "sandbox", sandboxID, "port", port, "error", err)
		return fmt.Errorf("port forward to sandbox %s port %d: %w", sandboxID, port, err)
	}
	return nil
}

// dialLoopback dials the port on IPv4 loopback, then IPv6 loopback, in the
// network namespace at netns ("" = the host's).
func dialLoopback(ctx context.Context, netns string, port int) (net.Conn, error) {
	p := strconv.Itoa(port)
	c, err4 := dialInNetNS(ctx, netns, net.JoinHostPort("127.0.0.1", p))
	if err4 == nil {
		return c, nil
	}
	c, err6 := dialInNetNS(ctx, netns, net.JoinHostPort("::1", p))
	if err6 == nil {
		return c, nil
	}
	return nil, errors.Join(err4, err6)
}

// proxy copies between target and client until the target has sent all it
// will (its EOF becomes the client stream's close) or either side fails.
// The client's EOF is passed on as a half-close of the target when
// halfClose is set, so request/response exchanges that rely on shutdown(2)
// still get their answer.
func proxy(ctx context.Context, target net.Conn, client io.ReadWriter, halfClose bool) error {
	toTarget := make(chan error, 1)
	fromTarget := make(chan error, 1)
	go func() {
		_, err := io.Copy(target, client)
		toTarget <- err
	}()
	go func() {
		_, err := io.Copy(client, target)
		fromTarget <- err
	}()
	// Both goroutines end by themselves after we return: the caller closes
	// target (unblocking the target read) and cri-streaming closes or
	// resets the stream, which unblocks the client read.
	for {
		select {
		case err := <-fromTarget:
			if isClosedErr(err) {
				return nil
			}
			return err
		case err := <-toTarget:
			toTarget = nil
			if err != nil {
				if isClosedErr(err) {
					return nil
				}
				return err
			}
			if !halfClose {
				return nil
			}
			if cw, ok := target.(interface{ CloseWrite() error }); ok {
				if err := cw.CloseWrite(); err != nil {
					return err
				}
			} else {
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

func isClosedErr(err error) bool {
	return err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe)
}

// asWriter keeps a missing stream a nil interface (not a typed nil) so the
// backend sees "not wanted".
func asWriter(w io.WriteCloser) io.Writer {
	if w == nil {
		return nil
	}
	return w
}

// closeOutputs ends the client's stdout/stderr streams once the backend is
// done writing; over SPDY that is the end-of-stream the client waits for.
func closeOutputs(ws ...io.WriteCloser) {
	for _, w := range ws {
		if w != nil {
			w.Close()
		}
	}
}

// stdinGuard sits between the client's stdin stream and the backend. The
// backend's reads end (with EOF) as soon as the session is over or the
// client is gone, even though a read blocked on the stream itself could
// only be ended by closing the connection: the backend never keeps a
// goroutine parked on a dead client. The copier goroutine ends when
// cri-streaming closes the connection after we return.
type stdinGuard struct {
	pr *io.PipeReader
}

func guardStdin(ctx context.Context, in io.Reader) *stdinGuard {
	if in == nil {
		return &stdinGuard{}
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := io.Copy(pw, in)
		pw.CloseWithError(err) // nil: EOF for the reader
	}()
	// The caller always cancels ctx when the session ends.
	context.AfterFunc(ctx, func() { pr.CloseWithError(io.EOF) })
	return &stdinGuard{pr: pr}
}

func (g *stdinGuard) reader() io.Reader {
	if g.pr == nil {
		return nil
	}
	return g.pr
}

func (g *stdinGuard) close() {
	if g.pr != nil {
		g.pr.CloseWithError(io.EOF)
	}
}

// convertResize forwards terminal sizes to the backend's channel, closing
// it when the client's resize stream ends or ctx is done.
func convertResize(ctx context.Context, in <-chan remotecommand.TerminalSize) <-chan runc.Size {
	if in == nil {
		return nil
	}
	out := make(chan runc.Size)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case sz, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- runc.Size{Width: sz.Width, Height: sz.Height}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}
