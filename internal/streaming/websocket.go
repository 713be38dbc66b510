package streaming

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/websocket"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream/wsstream"
	utilexec "k8s.io/utils/exec"
)

// cri-streaming serves WebSocket exec/attach only up to v4.channel.k8s.io
// and WebSocket port forward only as its own channel protocol. Current
// clients (client-go's NewWebSocketExecutor, crictl -r websocket, critest
// -websocket-*, kubectl through an API server) speak:
//
//   - v5.channel.k8s.io for exec/attach: v4 plus a "close" message (channel
//     255) with which the client half-closes stdin. Nothing else differs.
//   - SPDY over WebSocket for port forward (subprotocol
//     "SPDY/3.1+portforward.k8s.io"): the binary messages carry the bytes
//     of an ordinary SPDY port-forward session.
//
// Both are served here, in front of cri-streaming; everything else (SPDY,
// WebSocket v1-v4, channel port forward) still goes to cri-streaming.

const (
	wsProtocolV5       = "v5.channel.k8s.io"
	spdyTunnelPrefix   = "SPDY/3.1+"
	spdyTunnelProtocol = spdyTunnelPrefix + portforward.ProtocolV1Name
	tokenTTL           = time.Minute // as cri-streaming's request cache
	maxTokens          = 1000
)

// tokens mirrors cri-streaming's one-shot token cache so that the handlers
// here know which CRI request a URL stands for. Every request passes
// through it first, so a token is usable once whichever handler serves it.
type tokens struct {
	mu sync.Mutex
	m  map[string]tokenEntry
}

type tokenEntry struct {
	req     any // *runtime.ExecRequest, *runtime.AttachRequest, *runtime.PortForwardRequest
	expires time.Time
}

func (t *tokens) add(url string, req any) {
	tok := url[strings.LastIndex(url, "/")+1:]
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]tokenEntry)
	}
	for k, e := range t.m {
		if now.After(e.expires) {
			delete(t.m, k)
		}
	}
	if len(t.m) >= maxTokens {
		// cri-streaming evicts its oldest entry in this case; the oldest
		// here is the one expiring first.
		var oldest string
		for k, e := range t.m {
			if oldest == "" || e.expires.Before(t.m[oldest].expires) {
				oldest = k
			}
		}
		delete(t.m, oldest)
	}
	t.m[tok] = tokenEntry{req: req, expires: now.Add(tokenTTL)}
}

func (t *tokens) consume(tok string) (any, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[tok]
	if !ok {
		return nil, false
	}
	delete(t.m, tok)
	if time.Now().After(e.expires) {
		return nil, false
	}
	return e.req, true
}

// ServeHTTP routes one streaming request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) != 2 {
		http.NotFound(w, r)
		return
	}
	req, ok := s.tokens.consume(parts[1])
	if !ok {
		http.NotFound(w, r)
		return
	}
	if wsstream.IsWebSocketRequest(r) {
		offered := offeredProtocols(r)
		switch cr := req.(type) {
		case *runtime.ExecRequest:
			if offered[wsProtocolV5] && parts[0] == "exec" {
				s.serveExecV5(w, r, cr)
				return
			}
		case *runtime.AttachRequest:
			if offered[wsProtocolV5] && parts[0] == "attach" {
				s.serveAttachV5(w, r, cr)
				return
			}
		case *runtime.PortForwardRequest:
			if offered[spdyTunnelProtocol] && parts[0] == "portforward" {
				s.servePortForwardTunnel(w, r, cr)
				return
			}
		}
	}
	s.cri.ServeHTTP(w, r)
}

func offeredProtocols(r *http.Request) map[string]bool {
	m := map[string]bool{}
	for _, v := range r.Header.Values("Sec-Websocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				m[p] = true
			}
		}
	}
	return m
}

// Channel numbers of the remotecommand WebSocket protocols.
const (
	chStdin = iota
	chStdout
	chStderr
	chError
	chResize
)

// openV5 upgrades to v5.channel.k8s.io with the channels the CRI request
// asked for. Unrequested streams are returned as nil.
func (s *Server) openV5(w http.ResponseWriter, r *http.Request, stdin, stdout, stderr bool) (*wsstream.Conn, io.Reader, io.WriteCloser, io.WriteCloser, io.Writer, io.Reader, error) {
	pick := func(want bool, t wsstream.ChannelType) wsstream.ChannelType {
		if want {
			return t
		}
		return wsstream.IgnoreChannel
	}
	channels := []wsstream.ChannelType{
		chStdin:  pick(stdin, wsstream.ReadChannel),
		chStdout: pick(stdout, wsstream.WriteChannel),
		chStderr: pick(stderr, wsstream.WriteChannel),
		chError:  wsstream.WriteChannel,
		chResize: wsstream.ReadChannel,
	}
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		wsProtocolV5: {Binary: true, Channels: channels},
	})
	conn.SetIdleTimeout(s.idleTimeout)
	_, streams, err := conn.Open(w, r)
	if err != nil {
		return nil, nil, nil, nil, nil, nil, fmt.Errorf("upgrade to %s: %w", wsProtocolV5, err)
	}
	// An empty message on the first writable channel tells the client the
	// streams are ready.
	switch {
	case stdout:
		streams[chStdout].Write(nil)
	case stderr:
		streams[chStderr].Write(nil)
	default:
		streams[chError].Write(nil)
	}
	var in io.Reader
	var out, errOut io.WriteCloser
	if stdin {
		in = streams[chStdin]
	}
	if stdout {
		out = streams[chStdout]
	}
	if stderr {
		errOut = streams[chStderr]
	}
	return conn, in, out, errOut, streams[chError], streams[chResize], nil
}

func (s *Server) serveExecV5(w http.ResponseWriter, r *http.Request, req *runtime.ExecRequest) {
	conn, in, out, errOut, errCh, resizeCh, err := s.openV5(w, r, req.Stdin, req.Stdout, req.Stderr)
	if err != nil {
		s.log.Debug("exec", "container", req.ContainerId, "error", err)
		return
	}
	defer conn.Close()
	ctx := r.Context()
	resize := resizeEvents(ctx, resizeCh, req.Tty)
	err = s.rt.Exec(ctx, req.ContainerId, req.Cmd, in, out, errOut, req.Tty, resize)
	writeStatus(errCh, err, "error executing command in container")
}

func (s *Server) serveAttachV5(w http.ResponseWriter, r *http.Request, req *runtime.AttachRequest) {
	conn, in, out, errOut, errCh, resizeCh, err := s.openV5(w, r, req.Stdin, req.Stdout, req.Stderr)
	if err != nil {
		s.log.Debug("attach", "container", req.ContainerId, "error", err)
		return
	}
	defer conn.Close()
	ctx := r.Context()
	resize := resizeEvents(ctx, resizeCh, req.Tty)
	err = s.rt.Attach(ctx, req.ContainerId, in, out, errOut, req.Tty, resize)
	writeStatus(errCh, err, "error attaching to container")
}

// resizeEvents decodes the JSON terminal sizes the client sends on the
// resize channel (only meaningful with a TTY).
func resizeEvents(ctx context.Context, r io.Reader, tty bool) <-chan remotecommand.TerminalSize {
	if !tty || r == nil {
		return nil
	}
	ch := make(chan remotecommand.TerminalSize)
	go func() {
		defer close(ch)
		dec := json.NewDecoder(r)
		for {
			var sz remotecommand.TerminalSize
			if err := dec.Decode(&sz); err != nil {
				return
			}
			select {
			case ch <- sz:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// Wire form of the v4/v5 status message (a metav1.Status).
type wsStatus struct {
	Metadata struct{}         `json:"metadata"`
	Status   string           `json:"status"`
	Message  string           `json:"message,omitempty"`
	Reason   string           `json:"reason,omitempty"`
	Details  *wsStatusDetails `json:"details,omitempty"`
	Code     int32            `json:"code,omitempty"`
}

type wsStatusDetails struct {
	Causes []wsStatusCause `json:"causes,omitempty"`
}

type wsStatusCause struct {
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// writeStatus ends a session with its outcome, as cri-streaming does: a
// non-zero exit code as NonZeroExitCode with the code as the ExitCode
// cause (the client turns that into an exit error), anything else as an
// internal error.
func writeStatus(w io.Writer, err error, what string) {
	st := wsStatus{Status: "Success"}
	var exitErr utilexec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && exitErr.Exited():
		st = wsStatus{
			Status:  "Failure",
			Reason:  remotecommand.NonZeroExitCodeReason,
			Message: fmt.Sprintf("command terminated with non-zero exit code: %v", exitErr),
			Details: &wsStatusDetails{Causes: []wsStatusCause{{
				Reason:  remotecommand.ExitCodeCauseType,
				Message: strconv.Itoa(exitErr.ExitStatus()),
			}}},
		}
	default:
		st = wsStatus{
			Status:  "Failure",
			Reason:  "InternalError",
			Message: fmt.Sprintf("Internal error occurred: %s: %v", what, err),
			Code:    http.StatusInternalServerError,
		}
	}
	b, _ := json.Marshal(&st)
	w.Write(b)
}

// servePortForwardTunnel serves SPDY port forwarding tunnelled through a
// WebSocket: the WebSocket is upgraded here, then cri-streaming's SPDY
// port-forward handler runs over it as if it were the hijacked HTTP
// connection of an ordinary SPDY upgrade.
func (s *Server) servePortForwardTunnel(w http.ResponseWriter, r *http.Request, req *runtime.PortForwardRequest) {
	var inner []string
	for p := range offeredProtocols(r) {
		if strings.HasPrefix(p, spdyTunnelPrefix) {
			inner = append(inner, strings.TrimPrefix(p, spdyTunnelPrefix))
		}
	}
	opts, err := portforward.BuildV4Options(req.Port)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	remote, _ := net.ResolveTCPAddr("tcp", r.RemoteAddr)
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	srv := websocket.Server{
		Handshake: func(cfg *websocket.Config, _ *http.Request) error {
			for _, p := range cfg.Protocol {
				if p == spdyTunnelProtocol {
					cfg.Protocol = []string{p}
					return nil
				}
			}
			return fmt.Errorf("no supported protocol in %v", cfg.Protocol)
		},
		Handler: func(ws *websocket.Conn) {
			ws.PayloadType = websocket.BinaryFrame
			tc := &tunnelConn{Conn: ws, local: local, remote: remote}
			defer tc.Close()
			// The SPDY upgrade cri-streaming expects, as the client would
			// have sent it without the tunnel.
			inReq := r.Clone(r.Context())
			inReq.Header = http.Header{}
			inReq.Header.Set("Connection", "Upgrade")
			inReq.Header.Set("Upgrade", "SPDY/3.1")
			inReq.Header.Set("X-Stream-Protocol-Version", strings.Join(inner, ","))
			tw := &tunnelWriter{conn: tc, header: http.Header{}}
			portforward.ServePortForward(tw, inReq, pfAdapter{s.rt}, req.PodSandboxId, "", opts,
				s.idleTimeout, s.creationTimeout, portforward.SupportedProtocols)
		},
	}
	srv.ServeHTTP(w, r)
}

// tunnelConn is the WebSocket as a byte stream, with the addresses of the
// TCP connection under it (port forwards find their client connection by
// them).
type tunnelConn struct {
	*websocket.Conn
	local, remote net.Addr
}

func (c *tunnelConn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.Conn.LocalAddr()
}

func (c *tunnelConn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// tunnelWriter is the http.ResponseWriter the SPDY handler upgrades: the
// 101 it writes is implied by the WebSocket upgrade already done, and
// hijacking it yields the tunnel.
type tunnelWriter struct {
	conn   net.Conn
	header http.Header
	code   int
}

func (w *tunnelWriter) Header() http.Header { return w.header }

func (w *tunnelWriter) WriteHeader(code int) { w.code = code }

// Write is only reached with an error response before any upgrade (the
// handshake inside the tunnel failed); the client sees the tunnel close.
func (w *tunnelWriter) Write(p []byte) (int, error) { return len(p), nil }

func (w *tunnelWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.code != http.StatusSwitchingProtocols {
		return nil, nil, errors.New("hijack without a protocol switch")
	}
	return w.conn, bufio.NewReadWriter(bufio.NewReader(w.conn), bufio.NewWriter(w.conn)), nil
}

// pfAdapter is the adapter as cri-streaming's portforward.PortForwarder.
type pfAdapter struct{ a *adapter }

func (p pfAdapter) PortForward(ctx context.Context, sandboxID, _ string, port int32, stream io.ReadWriteCloser) error {
	return p.a.PortForward(ctx, sandboxID, port, stream)
}
