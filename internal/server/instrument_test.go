package server

import (
	"context"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/metrics"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// requests is crid_grpc_requests_total for method and code (0: no series).
func requests(t *testing.T, m *metrics.Metrics, method, code string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "crid_grpc_requests_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range s.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["method"] == method && l["code"] == code {
				return s.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// Calls are counted by the code the client gets: a core error (errdefs) by
// the code toGRPC maps it to, a status error by its own.
func TestMetricsInterceptors(t *testing.T) {
	m := metrics.New("test")
	unary := metricsUnaryInterceptor(m)
	for _, c := range []struct {
		method string
		err    error
	}{
		{"/runtime.v1.RuntimeService/Version", nil},
		{"/runtime.v1.RuntimeService/Version", nil},
		{"/runtime.v1.RuntimeService/ContainerStatus", fmt.Errorf("container x: %w", errdefs.ErrNotFound)},
		{"/runtime.v1.RuntimeService/CreateContainer", status.Error(codes.ResourceExhausted, "full")},
		{"/runtime.v1.RuntimeService/ExecSync", context.DeadlineExceeded},
	} {
		_, err := unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: c.method},
			func(context.Context, any) (any, error) { return "resp", c.err })
		if err != c.err {
			t.Errorf("%s: the interceptor changed the error %v to %v", c.method, c.err, err)
		}
	}
	stream := metricsStreamInterceptor(m)
	_ = stream(nil, nil, &grpc.StreamServerInfo{FullMethod: "/runtime.v1.RuntimeService/StreamContainers"},
		func(any, grpc.ServerStream) error { return nil })
	for _, c := range []struct {
		method, code string
		want         float64
	}{
		{"Version", "OK", 2},
		{"ContainerStatus", "NotFound", 1},
		{"CreateContainer", "ResourceExhausted", 1},
		{"ExecSync", "DeadlineExceeded", 1},
		{"StreamContainers", "OK", 1},
	} {
		if got := requests(t, m, c.method, c.code); got != c.want {
			t.Errorf("%s %s = %v, want %v", c.method, c.code, got, c.want)
		}
	}
}

// Without metrics the server gets no interceptor at all.
func TestMetricsOptionsOff(t *testing.T) {
	if _, ok := MetricsUnary(nil).(grpc.EmptyServerOption); !ok {
		t.Error("MetricsUnary(nil) adds an interceptor")
	}
	if _, ok := MetricsStream(nil).(grpc.EmptyServerOption); !ok {
		t.Error("MetricsStream(nil) adds an interceptor")
	}
}
