package tracing

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// recording returns a context holding a recording span of a fresh SDK
// provider, as the gRPC edge leaves one for a sampled CRI call.
func recording(t *testing.T) (context.Context, trace.Span, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("test").Start(context.Background(), "call")
	return ctx, span, rec
}

func TestStartWithoutSpanIsNoop(t *testing.T) {
	ctx, span := Start(context.Background(), "step")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Errorf("span outside a traced call records: %v", span.SpanContext())
	}
	if trace.SpanFromContext(ctx) != span {
		t.Error("context does not carry the span")
	}
	End(span, errors.New("ignored")) // must not panic
}

func TestStartIsChildFromParentsProvider(t *testing.T) {
	ctx, call, rec := recording(t)
	cctx, child := Start(ctx, "cni.add", PodID.String("p1"))
	_, grandchild := Start(cctx, "inner")
	End(grandchild, nil)
	End(child, errors.New("plugin failed"))
	call.End()

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = s
	}
	c, g := spans["cni.add"], spans["inner"]
	if c == nil || g == nil {
		t.Fatalf("recorded %v", spans)
	}
	if c.Parent().SpanID() != call.SpanContext().SpanID() || g.Parent().SpanID() != c.SpanContext().SpanID() {
		t.Error("parent links wrong")
	}
	if c.Status().Code != codes.Error || c.Status().Description != "plugin failed" {
		t.Errorf("failed step status %+v", c.Status())
	}
	if g.Status().Code != codes.Unset {
		t.Errorf("successful step status %+v", g.Status())
	}
	if got := c.Attributes(); len(got) != 1 || got[0] != PodID.String("p1") {
		t.Errorf("attributes %v", got)
	}
	if c.InstrumentationScope().Name != scope {
		t.Errorf("scope %q", c.InstrumentationScope().Name)
	}
}

func TestOpenEndsOnce(t *testing.T) {
	ctx, call, rec := recording(t)
	_, end := Open(ctx, "oci.spec")
	end(nil)
	end(errors.New("a later deferred call must not count"))
	call.End()
	for _, s := range rec.Ended() {
		if s.Name() == "oci.spec" && s.Status().Code != codes.Unset {
			t.Errorf("status %+v after a successful end", s.Status())
		}
	}
	if n := len(rec.Ended()); n != 2 {
		t.Errorf("%d spans ended, want 2", n)
	}
}

func TestDetachKeepsTraceNotDeadline(t *testing.T) {
	ctx, call, rec := recording(t)
	callCtx, cancel := context.WithCancel(ctx)
	cancel()
	d := Detach(context.Background(), callCtx)
	if d.Err() != nil {
		t.Fatal("detached context is cancelled with its caller")
	}
	_, s := Start(d, "runtime.run")
	s.End()
	call.End()
	for _, r := range rec.Ended() {
		if r.Name() == "runtime.run" && r.Parent().SpanID() != call.SpanContext().SpanID() {
			t.Error("detached work left the caller's trace")
		}
	}
}

func TestRuntimeCall(t *testing.T) {
	ctx, call, rec := recording(t)
	observe := RuntimeCall("runc")
	_, done := observe(ctx, "kill", []string{"--all", "abc", "9"})
	done(nil)
	call.End()
	var got sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "runtime.kill" {
			got = s
		}
	}
	if got == nil {
		t.Fatal("no runtime.kill span")
	}
	want := map[string]string{"crid.runtime.handler": "runc", "crid.runtime.args": "[\"--all\",\"abc\",\"9\"]"}
	for _, kv := range got.Attributes() {
		if w, ok := want[string(kv.Key)]; ok && kv.Value.String() != w {
			t.Errorf("%s = %s, want %s", kv.Key, kv.Value.String(), w)
		}
		delete(want, string(kv.Key))
	}
	if len(want) != 0 {
		t.Errorf("missing attributes %v", want)
	}
}

func TestAnnotate(t *testing.T) {
	ctx, call, rec := recording(t)
	Annotate(ctx, ContainerID.String("c1"))
	Annotate(context.Background(), ContainerID.String("nowhere")) // no span: nothing
	call.End()
	if a := rec.Ended()[0].Attributes(); len(a) != 1 || a[0] != ContainerID.String("c1") {
		t.Errorf("attributes %v", a)
	}
}
