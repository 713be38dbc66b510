package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// freeLoopbackAddr is a loopback host:port nothing listens on now.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a port for crid's metrics: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// scrape is one parse of crid's /metrics by Prometheus' own text parser.
type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t *testing.T) scrape {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + h.metrics + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("scrape: content type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return mfs
}

// value is the value (a histogram's sample count) of the series of name
// whose labels include want; 0 if there is none.
func (s scrape) value(name string, want map[string]string) float64 {
	mf := s[name]
	if mf == nil {
		return 0
	}
	total := 0.0
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
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			total += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			total += m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			total += float64(m.GetHistogram().GetSampleCount())
		case dto.MetricType_UNTYPED:
			total += m.GetUntyped().GetValue()
		}
	}
	return total
}

func rpcLabels(service, method string) map[string]string {
	return map[string]string{"service": "runtime.v1." + service, "method": method, "code": "OK"}
}

// TestPrometheusEndpoint drives crid through a pod's life and checks that
// its /metrics, parsed as Prometheus parses it, counted what happened, with
// no pod, container or image in any label.
func TestPrometheusEndpoint(t *testing.T) {
	before := scrapeMetrics(t)

	imageRef := pull(t, busybox)
	if _, err := h.img.PullImage(ctxT(t), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: "registry.k8s.io/e2e-test-images/crid-no-such-image:1"}}); err == nil {
		t.Fatal("pull of a missing image succeeded")
	}
	pod := podConfig(t)
	podID := runPod(t, pod, "")
	ctrID := createStart(t, podID, pod, containerConfig("sleeper", "sleep", "3600"))
	if out := execSync(t, ctrID, 10, "echo", "hello"); string(out.Stdout) != "hello\n" {
		t.Fatalf("ExecSync output %q", out.Stdout)
	}
	// A memory hog is OOM-killed.
	hogCfg := containerConfig("hog", "tail", "/dev/zero")
	hogCfg.Linux = &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: 20 << 20}}
	hogID := createStart(t, podID, pod, hogCfg)
	if st := waitExited(t, hogID, 60*time.Second); st.Reason != "OOMKilled" {
		t.Fatalf("memory hog ended %q, want OOMKilled", st.Reason)
	}

	during := scrapeMetrics(t)
	delta := func(name string, labels map[string]string) float64 {
		return during.value(name, labels) - before.value(name, labels)
	}
	for _, c := range []struct {
		service, method string
		calls           float64
	}{
		{"ImageService", "PullImage", 1},
		{"RuntimeService", "RunPodSandbox", 1},
		{"RuntimeService", "CreateContainer", 2},
		{"RuntimeService", "StartContainer", 2},
		{"RuntimeService", "ExecSync", 1},
	} {
		if got := delta("crid_grpc_requests_total", rpcLabels(c.service, c.method)); got < c.calls {
			t.Errorf("%s %s code OK counted %v more times, want at least %v", c.service, c.method, got, c.calls)
		}
		if got := delta("crid_grpc_request_duration_seconds", map[string]string{"method": c.method}); got < c.calls {
			t.Errorf("%s timed %v more times, want at least %v", c.method, got, c.calls)
		}
	}
	if got := delta("crid_grpc_requests_total", map[string]string{"method": "PullImage", "code": "NotFound"}); got != 1 {
		t.Errorf("PullImage NotFound counted %v more times, want 1", got)
	}
	if got := delta("crid_image_pulls_total", nil); got < 2 {
		t.Errorf("pulls went up by %v, want at least 2", got)
	}
	if got := delta("crid_image_pull_failures_total", map[string]string{"reason": "not_found"}); got != 1 {
		t.Errorf("not_found pull failures went up by %v, want 1", got)
	}
	if got := delta("crid_image_pull_duration_seconds", nil); got < 1 {
		t.Errorf("successful pulls timed %v more times, want at least 1", got)
	}
	if got := delta("crid_cni_operation_duration_seconds", map[string]string{"operation": "add"}); got < 1 {
		t.Errorf("CNI ADD timed %v more times", got)
	}
	for _, op := range []string{"create", "start"} {
		if got := delta("crid_runtime_operation_duration_seconds", map[string]string{"handler": "runc", "operation": op}); got < 2 {
			t.Errorf("runc %s timed %v more times, want at least 2", op, got)
		}
	}
	if got := delta("crid_exec_duration_seconds", map[string]string{"kind": "sync", "path": "nsexec"}); got < 1 {
		t.Errorf("ExecSync through crid-nsexec timed %v more times", got)
	}
	if got := delta("crid_container_oom_kills_total", nil); got < 1 {
		t.Errorf("OOM kills went up by %v, want at least 1", got)
	}
	// Pods and containers by state: at least what this test holds now.
	if got := during.value("crid_pods", map[string]string{"state": "ready"}); got < 1 {
		t.Errorf("ready pods = %v", got)
	}
	if got := during.value("crid_containers", map[string]string{"state": "running"}); got < 1 {
		t.Errorf("running containers = %v", got)
	}
	if got := during.value("crid_containers", map[string]string{"state": "exited"}); got < 1 {
		t.Errorf("exited containers = %v", got)
	}
	if got := during.value("crid_monitors", nil); got < 1 {
		t.Errorf("monitors = %v, want at least the sleeper's", got)
	}
	for _, name := range []string{"process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "go_goroutines", "go_memstats_heap_inuse_bytes", "crid_build_info"} {
		if during.value(name, nil) <= 0 {
			t.Errorf("%s missing or 0", name)
		}
	}

	// No label value names a pod, a container or an image: series would
	// grow with every pod the node ever ran.
	banned := []string{podID, ctrID, hogID, imageRef, strings.TrimPrefix(imageRef, "sha256:"), "busybox", pod.Metadata.Name, pod.Metadata.Uid, "crid-no-such-image"}
	for name, mf := range during {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				for _, b := range banned {
					v := lp.GetValue()
					if b != "" && (strings.Contains(v, b) || (len(v) >= 12 && strings.HasPrefix(b, v))) {
						t.Errorf("%s has label %s=%q naming %q", name, lp.GetName(), v, b)
					}
				}
			}
		}
	}

	// The removed container's writable layer is deleted from the trash in
	// the background, and counted.
	if _, err := h.rt.RemoveContainer(ctxT(t), &runtime.RemoveContainerRequest{ContainerId: hogID}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		after := scrapeMetrics(t)
		freed := after.value("crid_disk_freed_bytes_total", map[string]string{"kind": "trash"}) - before.value("crid_disk_freed_bytes_total", map[string]string{"kind": "trash"})
		if freed > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no trash bytes freed counted 20s after RemoveContainer")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMetricsAddressRefused starts the real binary with a metrics address
// it cannot use: it must exit at once naming the key, not run unobserved.
func TestMetricsAddressRefused(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, c := range []struct{ name, addr string }{
		{"host name", "localhost:9090"},
		{"no port", "127.0.0.1"},
		{"port taken", taken.Addr().String()},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := fmt.Sprintf("root = %q\nstate = %q\nsocket = %q\n[runtime.handlers.runc]\npath = \"/usr/local/sbin/runc\"\n[network]\nconf_dir = %q\n[metrics]\naddress = %q\n",
				dir+"/root", dir+"/state", dir+"/state/crid.sock", dir+"/cni", c.addr)
			p := dir + "/crid.toml"
			if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(filepath.Join(h.binDir, "crid"), "--config", p)
			done := make(chan struct{})
			var out []byte
			go func() { out, err = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("crid still running with metrics address %q; output:\n%s", c.addr, out)
			}
			if err == nil || !strings.Contains(string(out), "metrics.address") {
				t.Errorf("crid exited with %v, output %q; want an error naming metrics.address", err, out)
			}
			// Refused before it set anything up: no namespace pin dirs
			// mounted, no state recovered.
			mounts, merr := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
			if merr != nil {
				t.Fatal(merr)
			}
			for i := len(mounts) - 1; i >= 0; i-- {
				t.Errorf("crid mounted %s before refusing its metrics address", mounts[i].Mountpoint)
				_ = syscall.Unmount(mounts[i].Mountpoint, syscall.MNT_DETACH)
			}
		})
	}
}
