package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// gather returns m's metric families by name.
func gather(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// find returns the metric of family name whose labels include want; nil if none.
func find(mfs map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	mf := mfs[name]
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

func counter(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	m := find(mfs, name, labels)
	if m == nil {
		t.Fatalf("no %s%v", name, labels)
	}
	return m.GetCounter().GetValue()
}

func histCount(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) uint64 {
	t.Helper()
	m := find(mfs, name, labels)
	if m == nil {
		t.Fatalf("no %s%v", name, labels)
	}
	return m.GetHistogram().GetSampleCount()
}

// A nil *Metrics is what crid runs with when metrics are off: every
// recording must be a no-op, not a panic.
func TestNilRecordsNothing(t *testing.T) {
	var m *Metrics
	m.RPC("/runtime.v1.RuntimeService/Version", "OK", time.Millisecond)
	m.ImagePull(time.Second, nil)
	m.ImagePull(time.Second, errdefs.ErrNotFound)
	m.ImagePullBytes(10)
	m.CNI(CNIAdd, time.Millisecond, nil)
	m.RuntimeOperation("runc", "kill", time.Millisecond, errors.New("x"))
	m.Exec(ExecSync, ExecPathNsexec, time.Millisecond, nil)
	m.OOMKill()
	m.SeccompStop()
	m.BytesFreed(FreedTrash, 4096)
	if err := m.RegisterState(func() State { t.Fatal("source called"); return State{} }); err != nil {
		t.Fatal(err)
	}
	if m.Registry() != nil {
		t.Fatal("nil metrics has a registry")
	}
	if _, err := m.Listen("127.0.0.1:0"); err == nil {
		t.Fatal("nil metrics listened")
	}
}

func TestRecordings(t *testing.T) {
	m := New("v1.2.3")
	m.RPC("/runtime.v1.RuntimeService/RunPodSandbox", "OK", 40*time.Millisecond)
	m.RPC("/runtime.v1.RuntimeService/RunPodSandbox", "OK", 50*time.Millisecond)
	m.RPC("/runtime.v1.RuntimeService/RunPodSandbox", "DeadlineExceeded", 4*time.Minute)
	m.RPC("/runtime.v1.ImageService/PullImage", "NotFound", time.Second)
	m.ImagePull(3*time.Second, nil)
	m.ImagePull(time.Second, fmt.Errorf("pull x: %w", errdefs.ErrNotFound))
	m.ImagePull(time.Second, fmt.Errorf("pull x: %w", errdefs.ErrUnauthenticated))
	m.ImagePullBytes(1000)
	m.ImagePullBytes(24)
	m.ImagePullBytes(-5) // never decreases a counter
	m.CNI(CNIAdd, 20*time.Millisecond, nil)
	m.CNI(CNIDel, 20*time.Millisecond, errors.New("plugin failed"))
	m.RuntimeOperation("runc", "kill", time.Millisecond, nil)
	m.RuntimeOperation("runc", "kill", time.Millisecond, errors.New("runc kill: failed"))
	m.RuntimeOperation("crun", "create", 30*time.Millisecond, nil)
	m.Exec(ExecSync, ExecPathNsexec, 15*time.Millisecond, nil)
	m.Exec(ExecSync, ExecPathRuntime, 70*time.Millisecond, context.DeadlineExceeded)
	m.OOMKill()
	m.SeccompStop()
	m.BytesFreed(FreedTrash, 8192)
	m.BytesFreed(FreedImages, 1<<20)
	m.BytesFreed(FreedImages, 0)

	mfs := gather(t, m)
	rps := map[string]string{"service": "runtime.v1.RuntimeService", "method": "RunPodSandbox"}
	if got := counter(t, mfs, "crid_grpc_requests_total", map[string]string{"service": "runtime.v1.RuntimeService", "method": "RunPodSandbox", "code": "OK"}); got != 2 {
		t.Errorf("RunPodSandbox OK = %v, want 2", got)
	}
	if got := counter(t, mfs, "crid_grpc_requests_total", map[string]string{"method": "RunPodSandbox", "code": "DeadlineExceeded"}); got != 1 {
		t.Errorf("RunPodSandbox DeadlineExceeded = %v, want 1", got)
	}
	if got := histCount(t, mfs, "crid_grpc_request_duration_seconds", rps); got != 3 {
		t.Errorf("RunPodSandbox duration samples = %d, want 3", got)
	}
	if got := counter(t, mfs, "crid_grpc_requests_total", map[string]string{"service": "runtime.v1.ImageService", "method": "PullImage", "code": "NotFound"}); got != 1 {
		t.Errorf("PullImage NotFound = %v, want 1", got)
	}
	if got := counter(t, mfs, "crid_image_pulls_total", nil); got != 3 {
		t.Errorf("pulls = %v, want 3", got)
	}
	for reason, want := range map[string]float64{ReasonNotFound: 1, ReasonUnauthorized: 1, ReasonUnavailable: 0, ReasonOther: 0} {
		if got := counter(t, mfs, "crid_image_pull_failures_total", map[string]string{"reason": reason}); got != want {
			t.Errorf("pull failures %s = %v, want %v", reason, got, want)
		}
	}
	if got := histCount(t, mfs, "crid_image_pull_duration_seconds", nil); got != 1 {
		t.Errorf("pull duration samples = %d, want 1 (successful pulls only)", got)
	}
	if got := counter(t, mfs, "crid_image_pull_bytes_total", nil); got != 1024 {
		t.Errorf("pull bytes = %v, want 1024", got)
	}
	if got := histCount(t, mfs, "crid_cni_operation_duration_seconds", map[string]string{"operation": "add"}); got != 1 {
		t.Errorf("CNI add samples = %d", got)
	}
	if got := counter(t, mfs, "crid_cni_operation_failures_total", map[string]string{"operation": "add"}); got != 0 {
		t.Errorf("CNI add failures = %v", got)
	}
	if got := counter(t, mfs, "crid_cni_operation_failures_total", map[string]string{"operation": "del"}); got != 1 {
		t.Errorf("CNI del failures = %v", got)
	}
	if got := histCount(t, mfs, "crid_runtime_operation_duration_seconds", map[string]string{"handler": "runc", "operation": "kill"}); got != 2 {
		t.Errorf("runc kill samples = %d", got)
	}
	if got := counter(t, mfs, "crid_runtime_operation_failures_total", map[string]string{"handler": "runc", "operation": "kill"}); got != 1 {
		t.Errorf("runc kill failures = %v", got)
	}
	if find(mfs, "crid_runtime_operation_failures_total", map[string]string{"handler": "crun", "operation": "create"}) != nil {
		t.Error("a failure series exists for an operation that never failed")
	}
	if got := histCount(t, mfs, "crid_exec_duration_seconds", map[string]string{"kind": "sync", "path": "nsexec"}); got != 1 {
		t.Errorf("exec nsexec samples = %d", got)
	}
	if got := counter(t, mfs, "crid_exec_failures_total", map[string]string{"kind": "sync", "path": "runtime"}); got != 1 {
		t.Errorf("exec runtime failures = %v", got)
	}
	if got := counter(t, mfs, "crid_container_seccomp_stops_total", nil); got != 1 {
		t.Errorf("seccomp stops = %v, want 1", got)
	}
	if got := counter(t, mfs, "crid_container_oom_kills_total", nil); got != 1 {
		t.Errorf("OOM kills = %v", got)
	}
	if got := counter(t, mfs, "crid_disk_freed_bytes_total", map[string]string{"kind": "trash"}); got != 8192 {
		t.Errorf("trash freed = %v", got)
	}
	if got := counter(t, mfs, "crid_disk_freed_bytes_total", map[string]string{"kind": "images"}); got != 1<<20 {
		t.Errorf("images freed = %v", got)
	}
	if m := find(mfs, "crid_build_info", map[string]string{"version": "v1.2.3"}); m == nil || m.GetGauge().GetValue() != 1 {
		t.Errorf("build info = %v", m)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "process_resident_memory_bytes", "process_open_fds"} {
		if mfs[name] == nil {
			t.Errorf("%s missing: the Go or process collector is not registered", name)
		}
	}
}

func TestPullFailureReason(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{fmt.Errorf("pull: %w", errdefs.ErrNotFound), ReasonNotFound},
		{fmt.Errorf("pull: %w", errdefs.ErrUnauthenticated), ReasonUnauthorized},
		{fmt.Errorf("pull: %w", errdefs.ErrPermissionDenied), ReasonUnauthorized},
		{fmt.Errorf("pull: %w", errdefs.ErrUnavailable), ReasonUnavailable},
		{fmt.Errorf("pull: %w", errdefs.ErrInvalidArgument), ReasonInvalid},
		{fmt.Errorf("pull: %w", errdefs.ErrDataLoss), ReasonDataLoss},
		{fmt.Errorf("pull: %w", context.Canceled), ReasonCanceled},
		{fmt.Errorf("pull made no progress for 5m: %w", context.DeadlineExceeded), ReasonTimeout},
		{fmt.Errorf("pull: %w", errdefs.ErrNotImplemented), ReasonOther},
		{errors.New("something else"), ReasonOther},
	}
	for _, c := range cases {
		if got := PullFailureReason(c.err); got != c.want {
			t.Errorf("PullFailureReason(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

func TestSplitMethod(t *testing.T) {
	for in, want := range map[string][2]string{
		"/runtime.v1.RuntimeService/Version": {"runtime.v1.RuntimeService", "Version"},
		"/runtime.v1.ImageService/PullImage": {"runtime.v1.ImageService", "PullImage"},
		"Odd":                                {"unknown", "Odd"},
	} {
		s, m := splitMethod(in)
		if s != want[0] || m != want[1] {
			t.Errorf("splitMethod(%q) = %q, %q; want %q", in, s, m, want)
		}
	}
}

// The state gauges are read from the source at each scrape: a change in
// the source shows at the next scrape, with no recording in between, and
// every known state is present (0) even when nothing is in it.
func TestStateCollector(t *testing.T) {
	m := New("test")
	st := State{
		Pods:       map[string]int{"ready": 2, "notready": 1},
		Containers: map[string]int{"running": 3, "exited": 1},
		Monitors:   3,
	}
	calls := 0
	if err := m.RegisterState(func() State { calls++; return st }); err != nil {
		t.Fatal(err)
	}
	mfs := gather(t, m)
	if calls != 1 {
		t.Fatalf("source called %d times for one scrape", calls)
	}
	gauge := func(mfs map[string]*dto.MetricFamily, name, state string) float64 {
		t.Helper()
		var want map[string]string
		if state != "" {
			want = map[string]string{"state": state}
		}
		g := find(mfs, name, want)
		if g == nil {
			t.Fatalf("no %s{state=%q}", name, state)
		}
		return g.GetGauge().GetValue()
	}
	for s, want := range map[string]float64{"ready": 2, "notready": 1, "creating": 0} {
		if got := gauge(mfs, "crid_pods", s); got != want {
			t.Errorf("pods %s = %v, want %v", s, got, want)
		}
	}
	for s, want := range map[string]float64{"running": 3, "exited": 1, "created": 0, "creating": 0, "unknown": 0} {
		if got := gauge(mfs, "crid_containers", s); got != want {
			t.Errorf("containers %s = %v, want %v", s, got, want)
		}
	}
	if got := gauge(mfs, "crid_monitors", ""); got != 3 {
		t.Errorf("monitors = %v", got)
	}
	st = State{Pods: map[string]int{"ready": 1}, Containers: map[string]int{}, Monitors: 0}
	mfs = gather(t, m)
	if got := gauge(mfs, "crid_pods", "ready"); got != 1 {
		t.Errorf("pods ready after change = %v, want 1", got)
	}
	if got := gauge(mfs, "crid_containers", "running"); got != 0 {
		t.Errorf("containers running after change = %v, want 0", got)
	}
	if err := m.RegisterState(func() State { return st }); err == nil {
		t.Error("a second state collector registered: its series would collide")
	}
}

// The endpoint serves the text format that Prometheus parses, at /metrics
// only.
func TestEndpoint(t *testing.T) {
	m := New("test")
	m.RPC("/runtime.v1.RuntimeService/Version", "OK", time.Millisecond)
	srv, err := m.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(nil); close(done) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		<-done
	})
	base := "http://" + srv.Addr().String()
	resp, err := http.Get(base + Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", Path, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if counter(t, mfs, "crid_grpc_requests_total", map[string]string{"method": "Version", "code": "OK"}) != 1 {
		t.Error("Version not counted")
	}
	r2, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if r2.StatusCode != http.StatusNotFound || strings.Contains(string(b), "crid_") {
		t.Errorf("GET /: %s %q; want 404 without metrics", r2.Status, b)
	}
	// A taken address is an error at Listen, not a silent failure later.
	if _, err := m.Listen(srv.Addr().String()); err == nil {
		t.Error("second Listen on a taken address succeeded")
	}
}
