package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Path is where the endpoint serves the metrics.
const Path = "/metrics"

// Server is the HTTP endpoint serving m's registry at Path.
type Server struct {
	lis net.Listener
	srv *http.Server
}

// Listen binds addr (host:port) for the endpoint, so that a bad or taken
// address stops crid at start instead of leaving it unobservable.
func (m *Metrics) Listen(addr string) (*Server, error) {
	if m == nil {
		return nil, errors.New("metrics: listen without a registry")
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, m.Handler())
	return &Server{lis: lis, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// A scrape gathers in-memory values and the state of the core;
		// nothing in it should take long.
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  2 * time.Minute,
	}}, nil
}

// Handler serves the registry in the Prometheus exposition formats. At
// most a few scrapes run at once: a misbehaving client cannot make crid
// gather in a loop.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             20 * time.Second,
	})
}

// Addr is the address the endpoint listens on.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// Serve serves until Shutdown, logging why it stopped if not for that.
func (s *Server) Serve(log *slog.Logger) {
	if err := s.srv.Serve(s.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics endpoint stopped", "error", err)
	}
}

// Shutdown stops the endpoint, letting scrapes in progress finish until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}
