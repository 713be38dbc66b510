package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/crid-dev/crid/internal/config"
	"google.golang.org/grpc"
)

func TestTracingOffIsNoop(t *testing.T) {
	tp, stop, err := newTracing(context.Background(), config.Tracing{SamplingRatio: 1}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	_, span := tp.Tracer("t").Start(context.Background(), "x")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Error("tracing off, yet spans record")
	}
	if _, ok := tracingServerOption(config.Tracing{}, tp).(grpc.EmptyServerOption); !ok {
		t.Error("tracing off, yet the server gets a stats handler")
	}
}

// An unreachable collector must not hold up crid's shutdown past the
// flush timeout, spans queued or not.
func TestTracingShutdownBounded(t *testing.T) {
	// A port that refuses: listen, note it, close.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	cfg := config.Tracing{Endpoint: addr, SamplingRatio: 1}
	tp, stop, err := newTracing(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tracingServerOption(cfg, tp).(grpc.EmptyServerOption); ok {
		t.Error("tracing on, yet no stats handler")
	}
	for range 10 {
		_, span := tp.Tracer("t").Start(context.Background(), "queued")
		if !span.IsRecording() {
			t.Fatal("sampling_ratio 1 does not record a root span")
		}
		span.End()
	}
	begin := time.Now()
	stop()
	if d := time.Since(begin); d > tracingFlushTimeout+2*time.Second {
		t.Errorf("shutdown with an unreachable collector took %v, bound is %v", d, tracingFlushTimeout)
	}
}
