// Package tracing starts crid's own spans (docs/tracing.md). It holds no
// state and knows nothing of gRPC or of exporters: a span is started from
// the tracer provider of the span already in the context, which the gRPC
// edge put there for the CRI call (cmd/crid/tracing.go). Work that runs
// outside a traced call, or with tracing off, finds the no-op span there
// and starts no-op spans, at the cost of a context value.
package tracing

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// scope names crid's spans' instrumentation scope.
const scope = "github.com/crid-dev/crid"

// Attribute keys on crid's spans. Only identifiers: never credentials,
// environment values, commands or other contents of a request.
const (
	PodID       = attribute.Key("crid.pod.id")
	ContainerID = attribute.Key("crid.container.id")
	Image       = attribute.Key("crid.image.ref")
	ImageID     = attribute.Key("crid.image.id")
	LayerDigest = attribute.Key("crid.layer.digest")
	LayerDiffID = attribute.Key("crid.layer.diff_id")
	Network     = attribute.Key("crid.cni.network")
	PodIP       = attribute.Key("crid.pod.ip")
	Handler     = attribute.Key("crid.runtime.handler")
	RuntimeArgs = attribute.Key("crid.runtime.args")
	ExecVia     = attribute.Key("crid.exec.via")
	SpecKind    = attribute.Key("crid.spec.kind")
)

// Start starts a span named name as a child of the span in ctx, from that
// span's provider, and returns the context carrying it.
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	return parent.TracerProvider().Tracer(scope).Start(ctx, name, trace.WithAttributes(attrs...))
}

// Open starts a span like Start and returns a func that ends it with an
// error (nil: success). Only its first call counts, so a deferred call can
// end the span on every early return while the success path ends it where
// the step ends.
func Open(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, func(error)) {
	ctx, span := Start(ctx, name, attrs...)
	ended := false
	return ctx, func(err error) {
		if !ended {
			ended = true
			End(span, err)
		}
	}
}

// End ends span, marking it failed with err's message if err is not nil.
func End(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Detach returns base carrying the span of ctx: work that goes on under
// base (crid's lifetime) after ctx's caller gave up stays in the caller's
// trace, its spans children of the caller's.
func Detach(base, ctx context.Context) context.Context {
	return trace.ContextWithSpan(base, trace.SpanFromContext(ctx))
}

// Annotate adds attrs to the span in ctx (the CRI call's, once an id it
// creates is known).
func Annotate(ctx context.Context, attrs ...attribute.KeyValue) {
	trace.SpanFromContext(ctx).SetAttributes(attrs...)
}

// RuntimeCall is an observer of OCI runtime invocations (runc.Observer):
// one span "runtime.<op>" per invocation, with the handler and the
// subcommand's arguments (ids, flags and paths; runc.Observer never passes
// a process's command or environment).
func RuntimeCall(handler string) func(ctx context.Context, op string, args []string) (context.Context, func(error)) {
	return func(ctx context.Context, op string, args []string) (context.Context, func(error)) {
		ctx, span := Start(ctx, "runtime."+op, Handler.String(handler), RuntimeArgs.StringSlice(args))
		return ctx, func(err error) { End(span, err) }
	}
}
