package server

import (
	"context"

	"github.com/crid-dev/crid/internal/tracing"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"
)

// TracingHandler gives every CRI call a server span from tp, named after
// its method ("runtime.v1.RuntimeService/RunPodSandbox"), continuing the
// trace context the client sent in the W3C traceparent header (kubelet's
// otelgrpc client sends one), and puts the pod and container ids the
// request names on it. The core starts its own spans from the one this
// leaves in the call's context (internal/tracing). Install it only when
// tracing is on: without it a call costs nothing extra.
//
// The propagator and the (no-op) meter provider are given explicitly:
// otelgrpc would otherwise take the otel globals, which crid never sets.
func TracingHandler(tp trace.TracerProvider) stats.Handler {
	return idAnnotator{otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(propagation.TraceContext{}),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
	)}
}

// idAnnotator adds the ids of each request to its call's span.
type idAnnotator struct{ stats.Handler }

func (h idAnnotator) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if in, ok := s.(*stats.InPayload); ok {
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			span.SetAttributes(requestIDs(in.Payload)...)
		}
	}
	h.Handler.HandleRPC(ctx, s)
}

// requestIDs are the pod and container ids a CRI request names: only
// identifiers, never a request's contents.
func requestIDs(req any) []attribute.KeyValue {
	var attrs []attribute.KeyValue
	if r, ok := req.(interface{ GetPodSandboxId() string }); ok && r.GetPodSandboxId() != "" {
		attrs = append(attrs, tracing.PodID.String(r.GetPodSandboxId()))
	}
	if r, ok := req.(interface{ GetContainerId() string }); ok && r.GetContainerId() != "" {
		attrs = append(attrs, tracing.ContainerID.String(r.GetContainerId()))
	}
	return attrs
}
