package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/server"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
)

// tracingFlushTimeout bounds the export of the spans still queued when
// crid stops: an unreachable collector must not hold up a shutdown (and a
// systemd stop) for the exporter's retry period.
const tracingFlushTimeout = 5 * time.Second

// newTracing returns the tracer provider of crid's spans and a func that
// flushes and stops it. With tracing off it is the no-op provider and
// nothing is started: no exporter, no goroutine, no connection.
//
// The provider is passed to the gRPC server (tracingServerOption), never
// installed as the otel global; the one global set is otel's error
// handler, once, so that export failures reach crid's log rather than the
// standard logger.
func newTracing(ctx context.Context, cfg config.Tracing, log *slog.Logger) (trace.TracerProvider, func(), error) {
	if !cfg.Enabled() {
		return noop.NewTracerProvider(), func() {}, nil
	}
	// Plaintext OTLP/gRPC (docs/tracing.md). The connection is made lazily:
	// a collector that is down at start only delays the first export.
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(cfg.Endpoint), otlptracegrpc.WithInsecure())
	if err != nil {
		return nil, nil, fmt.Errorf("key tracing.endpoint: OTLP exporter for %s: %w", cfg.Endpoint, err)
	}
	host, _ := os.Hostname()
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		// A call with a parent trace context (kubelet's) follows that
		// parent's sampling decision; the ratio applies to the others.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SamplingRatio))),
		sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", "crid"),
			attribute.String("service.version", version),
			attribute.String("host.name", host),
		)),
	)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing", "endpoint", cfg.Endpoint, "error", err)
	}))
	log.Info("tracing to OTLP/gRPC receiver", "endpoint", cfg.Endpoint, "sampling_ratio", cfg.SamplingRatio)
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			log.Warn("tracing: spans not flushed at shutdown", "endpoint", cfg.Endpoint, "error", err)
		}
	}
	return tp, stop, nil
}

// tracingServerOption gives each CRI call a span from tp when tracing is
// on, and is no option at all when it is off.
func tracingServerOption(cfg config.Tracing, tp trace.TracerProvider) grpc.ServerOption {
	if !cfg.Enabled() {
		return grpc.EmptyServerOption{}
	}
	return grpc.StatsHandler(server.TracingHandler(tp))
}
