package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/core"
	"github.com/crid-dev/crid/internal/metrics"
)

// newMetrics is crid's metrics registry, or nil when the config sets no
// `[metrics] address`: then every package records nothing.
func newMetrics(cfg *config.Config) *metrics.Metrics {
	if cfg.Metrics.Address == "" {
		return nil
	}
	return metrics.New(version)
}

// listenMetrics binds the metrics endpoint's address, before crid opens
// its store and recovers its containers: a taken or unusable address
// stops crid at once, naming the key. Without metrics it returns nil.
func listenMetrics(cfg *config.Config, m *metrics.Metrics) (*metrics.Server, error) {
	if m == nil {
		return nil, nil
	}
	srv, err := m.Listen(cfg.Metrics.Address)
	if err != nil {
		return nil, fmt.Errorf("key metrics.address: %w", err)
	}
	return srv, nil
}

// serveMetrics adds the core's pods, containers and monitors to m and
// serves the endpoint srv bound; stop ends it. Without metrics (srv nil)
// it does nothing.
func serveMetrics(srv *metrics.Server, m *metrics.Metrics, c *core.Service, log *slog.Logger) (stop func(), err error) {
	if srv == nil {
		return func() {}, nil
	}
	if err := m.RegisterState(c.MetricsState); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	go srv.Serve(log)
	log.Info("metrics endpoint listening", "address", srv.Addr().String(), "path", metrics.Path)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
