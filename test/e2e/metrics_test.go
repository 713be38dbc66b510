package e2e

import (
	"errors"
	"io"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestMetrics: CRI metrics (KEP-2371) describe a fixed set and report it,
// with matching labels, for a running pod: cgroup values reflect the
// container's limits, network counters come from the pod's namespace.
func TestMetrics(t *testing.T) {
	ctx := ctxT(t)
	pull(t, busybox)
	pod := podConfig(t)
	podID := runPod(t, pod, "")
	cfg := containerConfig("metrics", "sh", "-c", "dd if=/dev/zero of=/written bs=1M count=6 2>/dev/null; touch /written.done; sleep 300")
	cfg.Linux = &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{
		CpuPeriod: 100000, CpuQuota: 20000, CpuShares: 512, MemoryLimitInBytes: 64 << 20,
	}}
	cid := createStart(t, podID, pod, cfg)
	// Until dd is done the writable layer holds less than 6 MiB.
	if r := execSync(t, cid, 20, "sh", "-c", "for i in $(seq 150); do test -e /written.done && exit 0; sleep 0.1; done; exit 1"); r.ExitCode != 0 {
		t.Fatal("the container did not finish writing /written")
	}

	dr, err := h.rt.ListMetricDescriptors(ctx, &runtime.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatalf("ListMetricDescriptors: %v", err)
	}
	keys := map[string][]string{}
	for _, d := range dr.Descriptors {
		if d.Help == "" || len(d.LabelKeys) == 0 {
			t.Errorf("descriptor %s lacks help or labels", d.Name)
		}
		keys[d.Name] = d.LabelKeys
	}
	if len(keys) < 40 {
		t.Fatalf("only %d descriptors", len(keys))
	}

	mr, err := h.rt.ListPodSandboxMetrics(ctx, &runtime.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatalf("ListPodSandboxMetrics: %v", err)
	}
	var pm *runtime.PodSandboxMetrics
	for _, m := range mr.PodMetrics {
		if m.PodSandboxId == podID {
			pm = m
		}
	}
	if pm == nil {
		t.Fatalf("no metrics for pod %s", podID)
	}
	// label lookup: first value of a metric with the given label value.
	values := map[string]map[string]uint64{} // name -> label values joined -> value
	check := func(ms []*runtime.Metric) {
		for _, m := range ms {
			k, ok := keys[m.Name]
			if !ok {
				t.Errorf("metric %s is not described", m.Name)
				continue
			}
			if len(k) != len(m.LabelValues) {
				t.Errorf("metric %s: %d label values for %d keys", m.Name, len(m.LabelValues), len(k))
			}
			if values[m.Name] == nil {
				values[m.Name] = map[string]uint64{}
			}
			values[m.Name][strings.Join(m.LabelValues, "|")] = m.Value.GetValue()
		}
	}
	check(pm.Metrics)
	if len(pm.ContainerMetrics) != 1 || pm.ContainerMetrics[0].ContainerId != cid {
		t.Fatalf("container metrics %+v, want one for %s", pm.ContainerMetrics, cid)
	}
	check(pm.ContainerMetrics[0].Metrics)
	for name := range keys {
		optional := strings.HasPrefix(name, "container_fs_reads") || strings.HasPrefix(name, "container_fs_writes") || name == "container_blkio_device_usage_total"
		if values[name] == nil && !optional {
			t.Errorf("described metric %s not reported", name)
		}
	}
	base := pod.Metadata.Name + "|e2e|metrics|" + cid + "|" + busybox
	one := func(name, labels string) uint64 {
		t.Helper()
		v, ok := values[name][labels]
		if !ok {
			t.Fatalf("%s{%s} missing; have %v", name, labels, values[name])
		}
		return v
	}
	if v := one("container_spec_memory_limit_bytes", base); v != 64<<20 {
		t.Errorf("memory limit %d, want %d", v, 64<<20)
	}
	if v := one("container_spec_cpu_period", base); v != 100000 {
		t.Errorf("cpu period %d", v)
	}
	if v := one("container_spec_cpu_shares", base); v != 512 {
		t.Errorf("cpu shares %d", v)
	}
	if v := one("container_processes", base); v < 1 {
		t.Errorf("processes %d", v)
	}
	if v := one("container_memory_usage_bytes", base); v == 0 {
		t.Error("memory usage 0")
	}
	if v := one("container_fs_usage_bytes", base+"|"+deviceOf(t, values["container_fs_usage_bytes"])); v < 6<<20 {
		t.Errorf("writable layer usage %d, want >= 6 MiB", v)
	}
	podBase := pod.Metadata.Name + "|e2e||" + podID + "|"
	if v := one("container_network_receive_packets_total", podBase+"|eth0"); v == 0 {
		// CNI setup sends at least router solicitations/ARP; the counter
		// exists either way, a zero is not an error.
		t.Logf("eth0 received no packets yet")
	}

	// The stream carries the same pods, each once.
	st, err := h.rt.StreamPodSandboxMetrics(ctx, &runtime.StreamPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatalf("StreamPodSandboxMetrics: %v", err)
	}
	seen := map[string]int{}
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		if len(r.PodSandboxMetrics) == 0 {
			t.Error("empty stream message")
		}
		for _, m := range r.PodSandboxMetrics {
			seen[m.PodSandboxId]++
		}
	}
	if seen[podID] != 1 {
		t.Errorf("pod seen %d times in the stream", seen[podID])
	}

	// A stopped pod is no longer reported.
	if _, err := h.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	mr, err = h.rt.ListPodSandboxMetrics(ctx, &runtime.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mr.PodMetrics {
		if m.PodSandboxId == podID {
			t.Errorf("stopped pod still reported")
		}
	}
}

// deviceOf returns the device label of a metric's only series.
func deviceOf(t *testing.T, series map[string]uint64) string {
	t.Helper()
	for k := range series {
		parts := strings.Split(k, "|")
		return parts[len(parts)-1]
	}
	t.Fatal("no series")
	return ""
}
