package server

import (
	"context"
	"time"

	"github.com/crid-dev/crid/internal/metrics"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// MetricsUnary is the server option that counts and times every unary CRI
// call into m by method and status code; with a nil m it adds nothing, so
// crid without metrics does not pay for an interceptor.
func MetricsUnary(m *metrics.Metrics) grpc.ServerOption {
	if m == nil {
		return grpc.EmptyServerOption{}
	}
	return grpc.ChainUnaryInterceptor(metricsUnaryInterceptor(m))
}

// MetricsStream is MetricsUnary for streaming calls (the Stream* list
// calls, StreamPodSandboxMetrics, GetContainerEvents): a call is counted
// and timed when it ends.
func MetricsStream(m *metrics.Metrics) grpc.ServerOption {
	if m == nil {
		return grpc.EmptyServerOption{}
	}
	return grpc.ChainStreamInterceptor(metricsStreamInterceptor(m))
}

func metricsUnaryInterceptor(m *metrics.Metrics) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		m.RPC(info.FullMethod, codeOf(err), time.Since(start))
		return resp, err
	}
}

func metricsStreamInterceptor(m *metrics.Metrics) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		m.RPC(info.FullMethod, codeOf(err), time.Since(start))
		return err
	}
}

// codeOf is the status code a call's error is answered with. The
// interceptors run inside the one that maps core errors (toGRPC), so the
// mapping is applied here too; it leaves a status error as it is.
func codeOf(err error) string {
	return status.Code(toGRPC(err)).String()
}
