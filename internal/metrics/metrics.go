// Package metrics is crid's Prometheus instrumentation: one registry per
// daemon (never the client library's global one), the instruments the other
// packages record into, a collector that reads the pods and containers
// from the core at scrape time, and the /metrics HTTP endpoint.
//
// A nil *Metrics is valid and records nothing: crid without `[metrics]
// address` passes nil to every package, and each recording is then one nil
// check. The package knows nothing of gRPC (the server passes codes as
// strings) so the core can use it.
package metrics

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// namespace prefixes every crid metric name.
const namespace = "crid"

// Kinds of disk space BytesFreed accounts.
const (
	// FreedTrash is removed containers' writable layers deleted from the trash.
	FreedTrash = "trash"
	// FreedImages is image content (blobs, unpacked layers) deleted by image GC.
	FreedImages = "images"
)

// Kinds of exec.
const (
	ExecSync   = "sync"   // ExecSync: kubelet's probes and `crictl exec -s`
	ExecStream = "stream" // Exec through the streaming server: a whole session
)

// Paths an exec takes.
const (
	ExecPathNsexec  = "nsexec"  // crid-nsexec joins the container itself
	ExecPathRuntime = "runtime" // `<runtime> exec`
)

// CNI operations.
const (
	CNIAdd = "add"
	CNIDel = "del"
)

// Pull failure reasons: a fixed set, so a registry's error text never
// becomes a label value.
const (
	ReasonNotFound     = "not_found"
	ReasonUnauthorized = "unauthorized"
	ReasonUnavailable  = "unavailable"
	ReasonInvalid      = "invalid"
	ReasonDataLoss     = "data_loss"
	ReasonCanceled     = "canceled"
	ReasonTimeout      = "timeout"
	ReasonOther        = "other"
)

var pullReasons = []string{ReasonNotFound, ReasonUnauthorized, ReasonUnavailable, ReasonInvalid, ReasonDataLoss, ReasonCanceled, ReasonTimeout, ReasonOther}

// Histogram buckets, in seconds, by the range each kind of call spans here.
var (
	// CRI calls: list and status polls take well under a millisecond,
	// RunPodSandbox tens of milliseconds, a pull or a slow stop minutes.
	rpcBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
	// Image pulls: a cached manifest check to a multi-gigabyte image.
	pullBuckets = []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
	// CNI plugins and runtime invocations: a few ms to a slow hook.
	processBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	// Exec: ~15 ms through crid-nsexec, 60-70 ms through runc, probes
	// that run for seconds, interactive sessions for minutes.
	execBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}
)

// Metrics holds crid's registry and instruments. Create it with New; the
// zero value is not usable, a nil pointer records nothing.
type Metrics struct {
	reg *prometheus.Registry

	rpcs        *prometheus.CounterVec   // service, method, code
	rpcDuration *prometheus.HistogramVec // service, method

	pulls        prometheus.Counter
	pullFailures *prometheus.CounterVec // reason
	pullDuration prometheus.Histogram
	pullBytes    prometheus.Counter

	cniDuration *prometheus.HistogramVec // operation
	cniFailures *prometheus.CounterVec   // operation

	runtimeDuration *prometheus.HistogramVec // handler, operation
	runtimeFailures *prometheus.CounterVec   // handler, operation

	execDuration *prometheus.HistogramVec // kind, path
	execFailures *prometheus.CounterVec   // kind, path

	oomKills     prometheus.Counter
	seccompStops prometheus.Counter
	diskFreed    *prometheus.CounterVec // kind
}

// New creates the registry with crid's instruments, the Go runtime and
// process collectors, and crid_build_info for version.
func New(version string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.rpcs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "grpc_requests_total",
		Help: "CRI gRPC calls completed, by service, method and status code.",
	}, []string{"service", "method", "code"})
	m.rpcDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "grpc_request_duration_seconds",
		Help:    "Time crid took to answer CRI gRPC calls (a streamed call: until its last message), by service and method.",
		Buckets: rpcBuckets,
	}, []string{"service", "method"})

	m.pulls = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "image_pulls_total",
		Help: "Image pulls completed, successful or not (CRI PullImage and the sandbox image crid pulls itself).",
	})
	m.pullFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "image_pull_failures_total",
		Help: "Image pulls that failed, by reason.",
	}, []string{"reason"})
	m.pullDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "image_pull_duration_seconds",
		Help:    "Time of successful image pulls, from the request to the image recorded (download and unpack).",
		Buckets: pullBuckets,
	})
	m.pullBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "image_pull_bytes_total",
		Help: "Compressed layer bytes downloaded from registries (layers already present are not downloaded again).",
	})

	m.cniDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "cni_operation_duration_seconds",
		Help:    "Time of CNI ADD and DEL of a pod's network (every DEL attempt, retries and rollbacks included), by operation.",
		Buckets: processBuckets,
	}, []string{"operation"})
	m.cniFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "cni_operation_failures_total",
		Help: "CNI ADD and DEL attempts that failed, by operation.",
	}, []string{"operation"})

	m.runtimeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "runtime_operation_duration_seconds",
		Help:    "Time of OCI runtime (runc, crun) operations, by runtime handler and operation (create includes starting the container's monitor).",
		Buckets: processBuckets,
	}, []string{"handler", "operation"})
	m.runtimeFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "runtime_operation_failures_total",
		Help: "OCI runtime operations that failed, by runtime handler and operation.",
	}, []string{"handler", "operation"})

	m.execDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "exec_duration_seconds",
		Help:    "Time of execs in containers until the process exited and its output was drained, by kind (sync: ExecSync; stream: a streaming session) and path (nsexec or runtime).",
		Buckets: execBuckets,
	}, []string{"kind", "path"})
	m.execFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "exec_failures_total",
		Help: "Execs that could not run or were cut short (timeouts included; a non-zero exit code is not a failure), by kind and path.",
	}, []string{"kind", "path"})

	m.oomKills = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "container_oom_kills_total",
		Help: "Containers whose exit crid recorded as OOMKilled.",
	})
	m.seccompStops = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "container_seccomp_stops_total",
		Help: "Containers whose exit crid recorded as stopped by their seccomp notifier (io.crid.seccomp-notifier: stop).",
	})
	m.diskFreed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "disk_freed_bytes_total",
		Help: "Disk space freed, by kind (trash: removed containers' writable layers; images: image garbage collection).",
	}, []string{"kind"})

	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the version label is crid's version.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	buildInfo.Set(1)

	m.reg.MustRegister(
		m.rpcs, m.rpcDuration,
		m.pulls, m.pullFailures, m.pullDuration, m.pullBytes,
		m.cniDuration, m.cniFailures,
		m.runtimeDuration, m.runtimeFailures,
		m.execDuration, m.execFailures,
		m.oomKills, m.seccompStops, m.diskFreed, buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	// Series of the fixed label sets exist from the start, at 0: a rate
	// or an alert on them works before the first event.
	for _, r := range pullReasons {
		m.pullFailures.WithLabelValues(r)
	}
	for _, op := range []string{CNIAdd, CNIDel} {
		m.cniFailures.WithLabelValues(op)
	}
	for _, k := range []string{FreedTrash, FreedImages} {
		m.diskFreed.WithLabelValues(k)
	}
	for _, k := range []string{ExecSync, ExecStream} {
		for _, p := range []string{ExecPathNsexec, ExecPathRuntime} {
			m.execFailures.WithLabelValues(k, p)
		}
	}
	return m
}

// Registry is the registry the instruments live in, for collectors other
// packages add and for tests.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// RPC records a finished CRI call. fullMethod is gRPC's
// "/package.Service/Method"; code is the status code's name ("OK").
func (m *Metrics) RPC(fullMethod, code string, d time.Duration) {
	if m == nil {
		return
	}
	service, method := splitMethod(fullMethod)
	m.rpcs.WithLabelValues(service, method, code).Inc()
	m.rpcDuration.WithLabelValues(service, method).Observe(d.Seconds())
}

// splitMethod splits "/runtime.v1.RuntimeService/Version" into
// "runtime.v1.RuntimeService" and "Version".
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", full
}

// ImagePull records a finished pull of any outcome.
func (m *Metrics) ImagePull(d time.Duration, err error) {
	if m == nil {
		return
	}
	m.pulls.Inc()
	if err != nil {
		m.pullFailures.WithLabelValues(PullFailureReason(err)).Inc()
		return
	}
	m.pullDuration.Observe(d.Seconds())
}

// ImagePullBytes adds n bytes downloaded from a registry.
func (m *Metrics) ImagePullBytes(n int64) {
	if m == nil || n <= 0 {
		return
	}
	m.pullBytes.Add(float64(n))
}

// PullFailureReason maps a pull error to one of the fixed reasons, by the
// errdefs class the image service gives its errors.
func PullFailureReason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.Canceled) || errdefs.IsCanceled(err):
		return ReasonCanceled
	case errors.Is(err, context.DeadlineExceeded) || errdefs.IsDeadlineExceeded(err):
		return ReasonTimeout
	case errdefs.IsNotFound(err):
		return ReasonNotFound
	case errdefs.IsUnauthorized(err) || errdefs.IsPermissionDenied(err):
		return ReasonUnauthorized
	case errdefs.IsUnavailable(err):
		return ReasonUnavailable
	case errdefs.IsInvalidArgument(err):
		return ReasonInvalid
	case errdefs.IsDataLoss(err):
		return ReasonDataLoss
	}
	return ReasonOther
}

// CNI records one CNI ADD or DEL (CNIAdd, CNIDel).
func (m *Metrics) CNI(op string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.cniDuration.WithLabelValues(op).Observe(d.Seconds())
	if err != nil {
		m.cniFailures.WithLabelValues(op).Inc()
	}
}

// RuntimeOperation records one operation of runtime handler handler: op
// is the runtime's subcommand (create, start, run, kill, delete, exec,
// update, state, features).
func (m *Metrics) RuntimeOperation(handler, op string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.runtimeDuration.WithLabelValues(handler, op).Observe(d.Seconds())
	if err != nil {
		m.runtimeFailures.WithLabelValues(handler, op).Inc()
	}
}

// Exec records one exec of kind (ExecSync, ExecStream) through path
// (ExecPathNsexec, ExecPathRuntime).
func (m *Metrics) Exec(kind, path string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.execDuration.WithLabelValues(kind, path).Observe(d.Seconds())
	if err != nil {
		m.execFailures.WithLabelValues(kind, path).Inc()
	}
}

// OOMKill counts a container recorded as OOM-killed.
func (m *Metrics) OOMKill() {
	if m == nil {
		return
	}
	m.oomKills.Inc()
}

// SeccompStop counts a container recorded as stopped by its seccomp
// notifier. The notifications themselves are the monitor's, which exports
// no metrics: they are in its log.
func (m *Metrics) SeccompStop() {
	if m == nil {
		return
	}
	m.seccompStops.Inc()
}

// BytesFreed adds n bytes of disk freed by kind (FreedTrash, FreedImages).
func (m *Metrics) BytesFreed(kind string, n int64) {
	if m == nil || n <= 0 {
		return
	}
	m.diskFreed.WithLabelValues(kind).Add(float64(n))
}
