package core

import (
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crid-dev/crid/internal/cgroups"
	"github.com/crid-dev/crid/internal/config"
)

func TestMetricDescriptors(t *testing.T) {
	descs := metricDescriptors()
	seen := map[string]bool{}
	for _, d := range descs {
		if seen[d.Name] {
			t.Errorf("descriptor %s listed twice", d.Name)
		}
		seen[d.Name] = true
		if d.Help == "" {
			t.Errorf("descriptor %s has no help", d.Name)
		}
		if !slices.Equal(d.LabelKeys[:len(metricBaseLabels)], metricBaseLabels) {
			t.Errorf("descriptor %s label keys %v do not start with the base labels", d.Name, d.LabelKeys)
		}
	}
	// The cAdvisor names kubelet's dashboards and critest expect.
	for _, name := range []string{
		"container_cpu_usage_seconds_total", "container_cpu_user_seconds_total", "container_cpu_system_seconds_total",
		"container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total", "container_cpu_cfs_throttled_seconds_total",
		"container_memory_working_set_bytes", "container_memory_usage_bytes", "container_memory_rss", "container_memory_cache",
		"container_memory_swap", "container_memory_failcnt", "container_memory_failures_total", "container_memory_kernel_usage",
		"container_memory_mapped_file", "container_memory_max_usage_bytes", "container_oom_events_total",
		"container_network_receive_bytes_total", "container_network_transmit_bytes_total",
		"container_network_receive_packets_total", "container_network_transmit_packets_total",
		"container_network_receive_errors_total", "container_network_transmit_errors_total",
		"container_network_receive_packets_dropped_total", "container_network_transmit_packets_dropped_total",
		"container_fs_usage_bytes", "container_fs_limit_bytes", "container_fs_inodes_free", "container_fs_inodes_total",
		"container_fs_reads_bytes_total", "container_fs_writes_bytes_total", "container_fs_reads_total", "container_fs_writes_total",
		"container_blkio_device_usage_total", "container_processes", "container_threads", "container_threads_max",
		"container_file_descriptors", "container_sockets", "container_spec_cpu_period", "container_spec_cpu_shares",
		"container_spec_memory_limit_bytes", "container_spec_memory_swap_limit_bytes",
		"container_last_seen", "container_start_time_seconds",
	} {
		if !seen[name] {
			t.Errorf("descriptor %s missing", name)
		}
	}
}

func TestParseNetDev(t *testing.T) {
	in := `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth0:    1500      12    1    2    0     0          0         0      900       7    3    4    0     0       0          0
`
	got := parseNetDev([]byte(in))
	want := []netDev{{name: "eth0", rxBytes: 1500, rxPackets: 12, rxErrors: 1, rxDropped: 2, txBytes: 900, txPackets: 7, txErrors: 3, txDropped: 4}}
	if !slices.Equal(got, want) {
		t.Fatalf("parseNetDev = %+v, want %+v", got, want)
	}
}

// TestContainerMetrics checks the values emitted for a container's
// counters and that every emitted metric is described with the same number
// of labels. (Reading the counters is tested in internal/cgroups.)
func TestContainerMetrics(t *testing.T) {
	root := t.TempDir()
	cg := &cgroups.Metrics{
		CPUTotal: 3500000000, CPUUser: 2000000000, CPUSystem: 1500000000,
		Periods: 10, ThrottledPeriods: 4, ThrottledNanos: 2000000000, CPUPeriod: 100000, CPUShares: 1024,
		MemUsage: 1000, MemMaxUsage: 2000, MemWorkingSet: 600, MemCache: 50, MemRSS: 60, MemMapped: 7,
		MemFailcnt: 3, PgFault: 11, PgMajFault: 1, PgFaultHierarchy: 12, PgMajFaultHierarchy: 2, OOMKills: 1,
		MemLimit: 64 << 20, Pids: []int{os.Getpid()},
		Blkio: []cgroups.BlkioDevice{{Major: 7, Minor: 0, ReadBytes: 512, WriteBytes: 1024, Reads: 1, Writes: 2}},
	}
	s := &Service{cfg: &config.Config{Root: root}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	fsInfo := s.rootFsInfo()
	if fsInfo.capacity == 0 || fsInfo.inodes == 0 || fsInfo.device == "" {
		t.Fatalf("root filesystem info not read: %+v", fsInfo)
	}
	now := time.Unix(1700000000, 0)
	rec := containerRecord{ID: "c1", CgroupsPath: "kubepods/pod1/c1", StartedAt: time.Unix(1690000000, 5).UnixNano()}
	ms := s.containerMetrics(rec, []string{"pod", "ns", "ctr", "c1", "img"}, cg, fsInfo, now)
	descs := map[string]int{}
	for _, d := range metricDescriptors() {
		descs[d.Name] = len(d.LabelKeys)
	}
	values := map[string]uint64{}
	for _, m := range ms {
		n, ok := descs[m.Name]
		if !ok {
			t.Errorf("metric %s is not described", m.Name)
		}
		if len(m.LabelValues) != n {
			t.Errorf("metric %s has %d label values, descriptor has %d keys", m.Name, len(m.LabelValues), n)
		}
		if _, dup := values[m.Name]; !dup {
			values[m.Name] = m.Value.GetValue()
		}
	}
	for name := range descs {
		if _, ok := values[name]; !ok && !strings.HasPrefix(name, "container_network_") {
			t.Errorf("metric %s described but not emitted for a container", name)
		}
	}
	for name, want := range map[string]uint64{
		"container_cpu_usage_seconds_total":         3,
		"container_cpu_user_seconds_total":          2,
		"container_cpu_system_seconds_total":        1,
		"container_cpu_cfs_periods_total":           10,
		"container_cpu_cfs_throttled_periods_total": 4,
		"container_cpu_cfs_throttled_seconds_total": 2,
		"container_memory_usage_bytes":              1000,
		"container_memory_max_usage_bytes":          2000,
		"container_memory_working_set_bytes":        600,
		"container_memory_cache":                    50,
		"container_memory_rss":                      60,
		"container_memory_mapped_file":              7,
		"container_memory_failcnt":                  3,
		"container_memory_failures_total":           11, // first series: pgfault, container
		"container_oom_events_total":                1,
		"container_spec_memory_limit_bytes":         64 << 20,
		"container_spec_memory_swap_limit_bytes":    0,
		"container_spec_cpu_period":                 100000,
		"container_spec_cpu_shares":                 1024,
		"container_threads_max":                     0,
		"container_processes":                       1,
		"container_fs_reads_bytes_total":            512,
		"container_fs_writes_total":                 2,
		"container_last_seen":                       1700000000,
		"container_start_time_seconds":              1690000000,
	} {
		if got := values[name]; got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	if values["container_threads"] < 1 || values["container_file_descriptors"] < 1 {
		t.Errorf("process counts of the test process not read: threads %d fds %d", values["container_threads"], values["container_file_descriptors"])
	}
}
