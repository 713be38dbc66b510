package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/crid-dev/crid/test/images"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/prototext"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// otlpReceiver is an OTLP/gRPC trace receiver (what a collector serves on
// 4317): it keeps every span crid exports, with its resource.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
	// services are the service.name values of the resources seen.
	services map[string]bool
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		if v := attr(rs.GetResource().GetAttributes(), "service.name"); v != "" {
			r.services[v] = true
		}
		for _, ss := range rs.ScopeSpans {
			r.spans = append(r.spans, ss.Spans...)
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) received() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

// startReceiver serves an otlpReceiver on a free loopback port.
func startReceiver(t *testing.T) (*otlpReceiver, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &otlpReceiver{services: map[string]bool{}}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, rcv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return rcv, lis.Addr().String()
}

func attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// startTracedCrid starts a second crid with its own root, state and socket
// on the run's registry and CNI network, exporting its spans to endpoint.
// The batch delay is long (OTEL_BSP_SCHEDULE_DELAY, read by the SDK): the
// spans reach the receiver only when crid flushes them at shutdown.
func startTracedCrid(t *testing.T, endpoint string) *harness {
	t.Helper()
	c2 := secondHarness(t, "trace")
	cfg := fmt.Sprintf(`root = %q
state = %q
socket = %q
log_level = "debug"
%s
[network]
conf_dir = %q
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin", %q]
[tracing]
endpoint = %q
sampling_ratio = 1.0
`, filepath.Join(c2.base, "root"), filepath.Join(c2.base, "state"), c2.socket, mirrorsTOML(h.registry),
		filepath.Join(h.base, "cni"), filepath.Join(h.base, "cnibin"), endpoint)
	if err := os.WriteFile(c2.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
	if err := c2.start(); err != nil {
		t.Fatal(err)
	}
	return c2
}

// tracedClient is kubelet's side: CRI clients whose calls carry the trace
// context of the caller's span (otelgrpc, W3C traceparent), one recording
// everything, one sampling nothing.
type tracedClient struct {
	rec       *tracetest.SpanRecorder
	sampled   trace.Tracer
	unsampled trace.Tracer
	rt        runtime.RuntimeServiceClient
	img       runtime.ImageServiceClient
	rtOff     runtime.RuntimeServiceClient
}

func newTracedClient(t *testing.T, socket string) *tracedClient {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	on := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	off := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	dial := func(tp trace.TracerProvider) *grpc.ClientConn {
		conn, err := grpc.NewClient("unix://"+socket,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithStatsHandler(otelgrpc.NewClientHandler(
				otelgrpc.WithTracerProvider(tp),
				otelgrpc.WithPropagators(propagation.TraceContext{}))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	connOn, connOff := dial(on), dial(off)
	return &tracedClient{
		rec: rec, sampled: on.Tracer("e2e"), unsampled: off.Tracer("e2e"),
		rt: runtime.NewRuntimeServiceClient(connOn), img: runtime.NewImageServiceClient(connOn),
		rtOff: runtime.NewRuntimeServiceClient(connOff),
	}
}

// TestTracing: crid continues the trace kubelet's calls carry. A pod's
// whole life, driven under one client span, arrives at an OTLP receiver as
// one trace rooted at that span: each CRI call's server span is the child
// of the client's call span, and crid's own steps (image pull with a span
// per layer download and unpack, CNI ADD/DEL, OCI spec, runtime calls,
// monitor start, exec) hang below them with correct parent links. A call
// whose parent is not sampled is not recorded, a call without a parent is
// (sampling_ratio = 1), no credential or environment value appears in any
// span, and the spans queued at shutdown are flushed before crid exits.
func TestTracing(t *testing.T) {
	rcv, endpoint := startReceiver(t)
	c2 := startTracedCrid(t, endpoint)
	cl := newTracedClient(t, c2.socket)
	ctx := ctxT(t)

	// Values that must never reach a span.
	password := "pw-" + randHex(8)
	envSecret := "env-" + randHex(8)

	kctx, parent := cl.sampled.Start(ctx, "kubelet.SyncPod")
	root := parent.SpanContext()

	pr, err := cl.img.PullImage(kctx, &runtime.PullImageRequest{
		Image: &runtime.ImageSpec{Image: images.NginxE2E},
		Auth:  &runtime.AuthConfig{Username: "e2e-user", Password: password},
	})
	if err != nil {
		t.Fatalf("PullImage: %v\ncrid log:\n%s", err, c2.logTail())
	}
	pod := podConfig(t)
	// A shared PID namespace: the pod gets a pause, so RunPodSandbox
	// generates a spec and runs the runtime.
	pod.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD},
	}
	rr, err := cl.rt.RunPodSandbox(kctx, &runtime.RunPodSandboxRequest{Config: pod})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\ncrid log:\n%s", err, c2.logTail())
	}
	podID := rr.PodSandboxId
	cc := containerConfig("traced", "sleep", "300")
	cc.Image = &runtime.ImageSpec{Image: images.NginxE2E}
	cc.Envs = []*runtime.KeyValue{{Key: "SECRET_TOKEN", Value: []byte(envSecret)}}
	cr, err := cl.rt.CreateContainer(kctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cc, SandboxConfig: pod})
	if err != nil {
		t.Fatalf("CreateContainer: %v\ncrid log:\n%s", err, c2.logTail())
	}
	cid := cr.ContainerId
	if _, err := cl.rt.StartContainer(kctx, &runtime.StartContainerRequest{ContainerId: cid}); err != nil {
		t.Fatalf("StartContainer: %v\ncrid log:\n%s", err, c2.logTail())
	}
	er, err := cl.rt.ExecSync(kctx, &runtime.ExecSyncRequest{ContainerId: cid, Cmd: []string{"sh", "-c", "test \"$SECRET_TOKEN\" = " + envSecret}, Timeout: 20})
	if err != nil || er.ExitCode != 0 {
		t.Fatalf("ExecSync: %v %+v", err, er)
	}

	// A call whose parent is not sampled: crid must follow that decision.
	offCtx, offParent := cl.unsampled.Start(ctx, "kubelet.unsampled")
	if _, err := cl.rtOff.PodSandboxStatus(offCtx, &runtime.PodSandboxStatusRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("PodSandboxStatus: %v", err)
	}
	offParent.End()
	unsampledTrace := offParent.SpanContext().TraceID()
	if !unsampledTrace.IsValid() || offParent.SpanContext().IsSampled() {
		t.Fatalf("unsampled parent is %v", offParent.SpanContext())
	}

	if _, err := cl.rt.StopPodSandbox(kctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := cl.rt.RemovePodSandbox(kctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	parent.End()

	// Queued, not yet exported: what arrives next comes from the flush at
	// shutdown.
	if n := len(rcv.received()); n != 0 {
		t.Fatalf("%d spans exported before shutdown with a 10-minute batch delay", n)
	}
	c2.stop(syscall.SIGTERM)
	spans := rcv.received()
	if len(spans) == 0 {
		t.Fatalf("no span reached the receiver after crid stopped\ncrid log:\n%s", c2.logTail())
	}
	if !rcv.services["crid"] {
		t.Errorf("resource service.name values %v, want crid", rcv.services)
	}

	for _, s := range spans {
		text := prototext.Format(s)
		for _, secret := range []string{password, envSecret} {
			if strings.Contains(text, secret) {
				t.Errorf("span %s carries a secret:\n%s", s.Name, text)
			}
		}
		if trace.TraceID(s.TraceId) == unsampledTrace {
			t.Errorf("span %s recorded for a call whose parent was not sampled", s.Name)
		}
	}
	// A call without a trace context (the harness's Version probe at start)
	// is a root of its own: sampling_ratio = 1 records it.
	if !slices.ContainsFunc(spans, func(s *tracepb.Span) bool {
		return s.Name == "runtime.v1.RuntimeService/Version" && len(s.ParentSpanId) == 0 && trace.TraceID(s.TraceId) != root.TraceID()
	}) {
		t.Error("no root span for a Version call without a parent")
	}

	tr := newTraceView(t, spans, cl.rec.Ended(), root)
	tr.checkTree()

	// PullImage: one download and one unpack span per layer, under the pull.
	pull := tr.child(tr.server("runtime.v1.ImageService/PullImage"), "image.pull")
	if got := attr(pull.Attributes, "crid.image.ref"); got != images.NginxE2E {
		t.Errorf("image.pull crid.image.ref = %q, want %q", got, images.NginxE2E)
	}
	if got := attr(pull.Attributes, "crid.image.id"); got == "" || !strings.Contains(pr.ImageRef, strings.TrimPrefix(got, "sha256:")) {
		t.Errorf("image.pull crid.image.id = %q, pulled %q", got, pr.ImageRef)
	}
	want := nginxLayers(t)
	for _, name := range []string{"image.layer.download", "image.layer.unpack"} {
		var got []string
		for _, s := range tr.children(pull, name) {
			got = append(got, attr(s.Attributes, "crid.layer.digest"))
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s spans under image.pull for layers %v, want one per layer %v", name, got, want)
		}
	}

	// RunPodSandbox: the pause image pulled on first use, CNI ADD, the
	// pause's spec and the runtime's run, all children of the call's span.
	run := tr.server("runtime.v1.RuntimeService/RunPodSandbox")
	if got := attr(run.Attributes, "crid.pod.id"); got != podID {
		t.Errorf("RunPodSandbox span crid.pod.id = %q, want %q", got, podID)
	}
	if add := tr.child(run, "cni.add"); attr(add.Attributes, "crid.pod.id") != podID || attr(add.Attributes, "crid.pod.ip") == "" {
		t.Errorf("cni.add attributes %v", add.Attributes)
	}
	if spec := tr.child(run, "oci.spec"); attr(spec.Attributes, "crid.spec.kind") != "sandbox" {
		t.Errorf("sandbox oci.spec attributes %v", spec.Attributes)
	}
	if r := tr.child(run, "runtime.run"); attr(r.Attributes, "crid.runtime.handler") != "runc" {
		t.Errorf("runtime.run attributes %v", r.Attributes)
	}
	if p := tr.child(run, "image.pull"); len(tr.children(p, "image.layer.unpack")) == 0 {
		t.Error("the pause image's pull has no layer spans")
	}

	// CreateContainer, StartContainer, ExecSync.
	create := tr.server("runtime.v1.RuntimeService/CreateContainer")
	if got := attr(create.Attributes, "crid.container.id"); got != cid {
		t.Errorf("CreateContainer span crid.container.id = %q, want %q", got, cid)
	}
	if spec := tr.child(create, "oci.spec"); attr(spec.Attributes, "crid.spec.kind") != "container" {
		t.Errorf("container oci.spec attributes %v", spec.Attributes)
	}
	tr.child(create, "monitor.start")
	start := tr.server("runtime.v1.RuntimeService/StartContainer")
	if got := attr(start.Attributes, "crid.container.id"); got != cid {
		t.Errorf("StartContainer span crid.container.id = %q, want %q", got, cid)
	}
	tr.child(start, "runtime.start")
	tr.child(tr.server("runtime.v1.RuntimeService/ExecSync"), "exec.nsexec")

	// CNI DEL runs under the stop (or, had it failed there, the remove).
	stop, remove := tr.server("runtime.v1.RuntimeService/StopPodSandbox"), tr.server("runtime.v1.RuntimeService/RemovePodSandbox")
	if len(tr.children(stop, "cni.del"))+len(tr.children(remove, "cni.del")) == 0 {
		t.Errorf("no cni.del span under StopPodSandbox or RemovePodSandbox; names in trace: %v", tr.names())
	}
	t.Logf("trace:\n%s", tr.dump())
}

// nginxLayers are the layer digests of the nginx test image, sorted.
func nginxLayers(t *testing.T) []string {
	t.Helper()
	cat, err := images.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := cat[images.NginxE2E].Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	sort.Strings(out)
	return out
}

// traceView is one trace: crid's spans as received, and the client's
// spans (kubelet's side) as recorded in the test.
type traceView struct {
	t      *testing.T
	root   trace.SpanContext
	crid   []*tracepb.Span
	byID   map[trace.SpanID]*tracepb.Span
	client map[trace.SpanID]sdktrace.ReadOnlySpan
}

func newTraceView(t *testing.T, received []*tracepb.Span, client []sdktrace.ReadOnlySpan, root trace.SpanContext) *traceView {
	v := &traceView{t: t, root: root, byID: map[trace.SpanID]*tracepb.Span{}, client: map[trace.SpanID]sdktrace.ReadOnlySpan{}}
	for _, s := range received {
		if trace.TraceID(s.TraceId) == root.TraceID() {
			v.crid = append(v.crid, s)
			v.byID[trace.SpanID(s.SpanId)] = s
		}
	}
	for _, s := range client {
		if s.SpanContext().TraceID() == root.TraceID() {
			v.client[s.SpanContext().SpanID()] = s
		}
	}
	return v
}

// checkTree: every span of crid's in the trace has its parent in the
// trace, a server span's being the client's call span, and following
// parents from any span ends at the client's root span.
func (v *traceView) checkTree() {
	v.t.Helper()
	if len(v.crid) == 0 {
		v.t.Fatalf("no span of crid's in the client's trace %s", v.root.TraceID())
	}
	rootSpan, ok := v.client[v.root.SpanID()]
	if !ok || rootSpan.Parent().IsValid() {
		v.t.Fatalf("client root span missing or not a root")
	}
	for _, s := range v.crid {
		parent := trace.SpanID(s.ParentSpanId)
		if s.Kind == tracepb.Span_SPAN_KIND_SERVER {
			cs, ok := v.client[parent]
			if !ok || cs.SpanKind() != trace.SpanKindClient || cs.Name() != s.Name || cs.Parent().SpanID() != v.root.SpanID() {
				v.t.Errorf("server span %s: parent %s is not the client's call span for it under the root", s.Name, parent)
			}
			continue
		}
		if _, ok := v.byID[parent]; !ok {
			v.t.Errorf("span %s: parent %s is not a span of crid's in the trace", s.Name, parent)
			continue
		}
		// Up to the server span, within a bounded depth (no cycles).
		cur := s
		for depth := 0; cur.Kind != tracepb.Span_SPAN_KIND_SERVER; depth++ {
			p, ok := v.byID[trace.SpanID(cur.ParentSpanId)]
			if !ok || depth > 10 {
				v.t.Errorf("span %s does not lead up to a CRI call's span", s.Name)
				break
			}
			cur = p
		}
	}
}

// server is the one server span named name (a CRI method).
func (v *traceView) server(name string) *tracepb.Span {
	v.t.Helper()
	var found []*tracepb.Span
	for _, s := range v.crid {
		if s.Name == name && s.Kind == tracepb.Span_SPAN_KIND_SERVER {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		v.t.Fatalf("%d server spans %s in the trace, want 1; names: %v", len(found), name, v.names())
	}
	return found[0]
}

// children are the direct children of p named name.
func (v *traceView) children(p *tracepb.Span, name string) []*tracepb.Span {
	var out []*tracepb.Span
	for _, s := range v.crid {
		if s.Name == name && trace.SpanID(s.ParentSpanId) == trace.SpanID(p.SpanId) {
			out = append(out, s)
		}
	}
	return out
}

// child is the one direct child of p named name.
func (v *traceView) child(p *tracepb.Span, name string) *tracepb.Span {
	v.t.Helper()
	c := v.children(p, name)
	if len(c) != 1 {
		v.t.Fatalf("%d %s spans under %s, want 1; trace:\n%s", len(c), name, p.Name, v.dump())
	}
	return c[0]
}

func (v *traceView) names() []string {
	var out []string
	for _, s := range v.crid {
		out = append(out, s.Name)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// dump renders the trace as an indented tree.
func (v *traceView) dump() string {
	kids := map[string][]*tracepb.Span{}
	for _, s := range v.crid {
		k := hex.EncodeToString(s.ParentSpanId)
		kids[k] = append(kids[k], s)
	}
	var b strings.Builder
	var walk func(id string, depth int)
	walk = func(id string, depth int) {
		ks := kids[id]
		sort.Slice(ks, func(i, j int) bool { return ks[i].StartTimeUnixNano < ks[j].StartTimeUnixNano })
		for _, s := range ks {
			fmt.Fprintf(&b, "%s%s %.1fms\n", strings.Repeat("  ", depth), s.Name, float64(s.EndTimeUnixNano-s.StartTimeUnixNano)/1e6)
			walk(hex.EncodeToString(s.SpanId), depth+1)
		}
	}
	fmt.Fprintf(&b, "[client] %s\n", v.client[v.root.SpanID()].Name())
	calls := []sdktrace.ReadOnlySpan{}
	for _, s := range v.client {
		if s.Parent().SpanID() == v.root.SpanID() {
			calls = append(calls, s)
		}
	}
	sort.Slice(calls, func(i, j int) bool { return calls[i].StartTime().Before(calls[j].StartTime()) })
	for _, s := range calls {
		fmt.Fprintf(&b, "  [client] %s\n", s.Name())
		id := s.SpanContext().SpanID()
		walk(hex.EncodeToString(id[:]), 2)
	}
	return b.String()
}
