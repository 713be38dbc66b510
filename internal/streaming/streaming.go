// Package streaming runs crid's exec/attach/port-forward server on
// k8s.io/cri-streaming and adapts it to the core.
//
// The CRI Exec/Attach/PortForward RPCs only hand out a one-shot URL (a token
// valid for about a minute, consumed by the first request); the client then
// connects to this server over SPDY or WebSocket. The protocols themselves
// are cri-streaming's; this package owns the listener, TLS, connection
// lifetimes and the adapter over Backend.
package streaming

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/monitor"
	"github.com/crid-dev/crid/internal/runc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	cristreaming "k8s.io/cri-streaming/pkg/streaming"
)

// Backend is what the streaming server needs from the core.
type Backend interface {
	// ExecStream runs cmd in a running container and returns its exit code;
	// its errors name the container.
	ExecStream(ctx context.Context, containerID string, cmd []string, eio runc.ExecIO) (int, error)
	// AttachStream attaches to a running container's stdio.
	AttachStream(ctx context.Context, containerID string, o monitor.AttachOptions) error
	// SandboxNetNS is the network namespace path of a ready sandbox ("" for host network).
	SandboxNetNS(ctx context.Context, sandboxID string) (string, error)
}

// Server is the streaming server.
type Server struct {
	log     *slog.Logger
	ln      net.Listener // tracking listener (TLS, if any, is layered on top)
	http    *http.Server
	cri     cristreaming.Server
	rt      *adapter
	baseURL *url.URL

	tokens          tokens // CRI request of every URL handed out
	idleTimeout     time.Duration
	creationTimeout time.Duration

	// ctx is the parent of every request context; Stop cancels it so
	// running execs, attaches and forwards end with the server.
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	conns map[string]*trackedConn // live client connections by connKey

	stopOnce sync.Once
	stopErr  error
}

// New creates the streaming server on cfg's address. It binds the listener
// right away so that the URLs handed out carry the real port even when
// cfg.Port is 0 and Start has not run yet.
func New(cfg config.Streaming, b Backend) (*Server, error) {
	return NewWithLogger(cfg, b, slog.New(slog.DiscardHandler))
}

// NewWithLogger is New with a logger for stream failures.
func NewWithLogger(cfg config.Streaming, b Backend, log *slog.Logger) (*Server, error) {
	if b == nil {
		return nil, fmt.Errorf("streaming server: nil backend: %w", errdefs.ErrInvalidArgument)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("streaming port %d out of range: %w", cfg.Port, errdefs.ErrInvalidArgument)
	}
	tlsConfig, err := loadTLS(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, err
	}

	raw, err := net.Listen("tcp", net.JoinHostPort(cfg.Address, strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, fmt.Errorf("listen for streaming on %s:%d: %w", cfg.Address, cfg.Port, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		log:    log,
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[string]*trackedConn),
	}
	s.ln = &trackingListener{Listener: raw, srv: s}

	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	s.baseURL = &url.URL{Scheme: scheme, Host: advertisedHost(raw.Addr().(*net.TCPAddr), strings.Contains(cfg.Address, ":")), Path: "/"}

	idle := cfg.IdleTimeout.Duration
	if idle <= 0 {
		idle = cristreaming.DefaultConfig.StreamIdleTimeout
	}
	criCfg := cristreaming.DefaultConfig
	criCfg.Addr = raw.Addr().String()
	criCfg.BaseURL = s.baseURL
	criCfg.StreamIdleTimeout = idle
	criCfg.TLSConfig = tlsConfig
	s.rt = &adapter{b: b, srv: s}
	s.idleTimeout = idle
	s.creationTimeout = criCfg.StreamCreationTimeout
	s.cri, err = cristreaming.NewServer(criCfg, s.rt)
	if err != nil {
		cancel()
		raw.Close()
		return nil, fmt.Errorf("create streaming server: %w", err)
	}

	s.http = &http.Server{
		Handler: s,
		// Header reads get a bound; upgraded streams are governed by the
		// stream idle timeout instead, so no ReadTimeout/WriteTimeout.
		ReadHeaderTimeout: 30 * time.Second,
		TLSConfig:         tlsConfig,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
		ConnContext:       s.connContext,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// loadTLS returns nil when TLS is not configured. Only HTTP/1.1 is offered:
// SPDY and WebSocket upgrades need a hijackable HTTP/1.1 connection.
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("streaming tls_cert and tls_key must be set together: %w", errdefs.ErrInvalidArgument)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load streaming TLS key pair: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}, nil
}

// advertisedHost is the host:port put in stream URLs. A wildcard bind
// address is not something a client can connect to from elsewhere, so a
// routable address of this host is advertised instead.
// preferV6 is set when the configured address was an IPv6 one ("::").
func advertisedHost(addr *net.TCPAddr, preferV6 bool) string {
	ip := addr.IP
	if ip.IsUnspecified() {
		ip = hostIP(preferV6)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(addr.Port))
}

// hostIP picks the first global unicast address of an up, non-loopback
// interface (IPv4 preferred unless preferV6), falling back to loopback.
func hostIP(preferV6 bool) net.IP {
	var v4, v6 net.IP
	ifaces, _ := net.Interfaces()
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || !ipn.IP.IsGlobalUnicast() {
				continue
			}
			if ipn.IP.To4() != nil {
				if v4 == nil {
					v4 = ipn.IP
				}
			} else if v6 == nil {
				v6 = ipn.IP
			}
		}
	}
	switch {
	case preferV6 && v6 != nil:
		return v6
	case v4 != nil:
		return v4
	case v6 != nil:
		return v6
	case preferV6:
		return net.IPv6loopback
	default:
		return net.IPv4(127, 0, 0, 1)
	}
}

// Start serves until Stop. It returns nil after Stop.
func (s *Server) Start() error {
	ln := s.ln
	if s.http.TLSConfig != nil {
		ln = tls.NewListener(ln, s.http.TLSConfig)
	}
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Stop closes the listener and active streams. Running execs and attaches
// see their context cancelled; port forwards are torn down.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.cancel()
		err := s.http.Close()
		// Serve may never have run; close the listener ourselves then.
		if lerr := s.ln.Close(); lerr != nil && !errors.Is(lerr, net.ErrClosed) && err == nil {
			err = lerr
		}
		// Hijacked (upgraded) connections are not closed by http.Server.
		s.mu.Lock()
		conns := make([]*trackedConn, 0, len(s.conns))
		for _, c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		if err != nil {
			s.stopErr = fmt.Errorf("stop streaming server: %w", err)
		}
	})
	return s.stopErr
}

// URL is the base URL stream URLs are built on (scheme://host:port/).
func (s *Server) URL() string { return s.baseURL.String() }

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// GetExec returns the URL for an exec session.
func (s *Server) GetExec(req *runtime.ExecRequest) (*runtime.ExecResponse, error) {
	resp, err := s.cri.GetExec(req)
	if err == nil {
		s.tokens.add(resp.Url, req)
	}
	return resp, err
}

// GetAttach returns the URL for an attach session.
func (s *Server) GetAttach(req *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	resp, err := s.cri.GetAttach(req)
	if err == nil {
		s.tokens.add(resp.Url, req)
	}
	return resp, err
}

// GetPortForward returns the URL for a port-forward session.
func (s *Server) GetPortForward(req *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	resp, err := s.cri.GetPortForward(req)
	if err == nil {
		s.tokens.add(resp.Url, req)
	}
	return resp, err
}
