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

// serveMetrics adds the core's pods, containers and monitors to m and
// serves m at metrics.Path on the configured address; stop ends the
// endpoint. Without metrics it does nothing. A taken or unusable address
// fails crid's start, naming the key.
func serveMetrics(cfg *config.Config, m *metrics.Metrics, c *core.Service, log *slog.Logger) (stop func(), err error) {
	if m == nil {
		return func() {}, nil
	}
	if err := m.RegisterState(c.MetricsState); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	srv, err := m.Listen(cfg.Metrics.Address)
	if err != nil {
		return nil, fmt.Errorf("key metrics.address: %w", err)
	}
	go srv.Serve(log)
	log.Info("metrics endpoint listening", "address", srv.Addr().String(), "path", metrics.Path)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
