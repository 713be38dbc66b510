package core

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

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

func TestParseBlkio(t *testing.T) {
	byteCounts := parseBlkioV1("8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\n253:1 Read 10\nTotal 12298\n", true)
	ops := parseBlkioV1("8:0 Read 1\n8:0 Write 2\n8:16 Write 5\nTotal 8\n", false)
	got := mergeBlkio(byteCounts, ops)
	want := []blkioDevice{
		{major: 8, minor: 0, readBytes: 4096, writeBytes: 8192, reads: 1, writes: 2},
		{major: 253, minor: 1, readBytes: 10},
		{major: 8, minor: 16, writes: 5},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("v1 blkio = %+v, want %+v", got, want)
	}
	v2 := parseIOStatV2("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\nbogus\n")
	if want := []blkioDevice{{major: 8, minor: 0, readBytes: 4096, writeBytes: 8192, reads: 1, writes: 2}}; !slices.Equal(v2, want) {
		t.Fatalf("v2 io.stat = %+v, want %+v", v2, want)
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestContainerMetricsV1 reads a fake v1 hierarchy and checks values and
// that every emitted metric is described with the same number of labels.
func TestContainerMetricsV1(t *testing.T) {
	root := t.TempDir()
	cg := "kubepods/pod1/c1"
	v1 := map[string]string{}
	for _, ctl := range []string{"cpu", "cpuacct", "memory", "pids", "blkio"} {
		v1[ctl] = filepath.Join(root, "cg", ctl)
	}
	self := os.Getpid()
	writeFiles(t, filepath.Join(v1["cpuacct"], cg), map[string]string{
		"cpuacct.usage": "3500000000", "cpuacct.usage_user": "2000000000", "cpuacct.usage_sys": "1500000000",
		"cgroup.procs": "",
	})
	writeFiles(t, filepath.Join(v1["cpu"], cg), map[string]string{
		"cpu.stat": "nr_periods 10\nnr_throttled 4\nthrottled_time 2000000000\n", "cpu.cfs_period_us": "100000",
		"cpu.shares": "1024",
	})
	writeFiles(t, filepath.Join(v1["memory"], cg), map[string]string{
		"memory.usage_in_bytes": "1000", "memory.max_usage_in_bytes": "2000", "memory.failcnt": "3",
		"memory.limit_in_bytes": "67108864", "memory.memsw.limit_in_bytes": "9223372036854771712",
		"memory.soft_limit_in_bytes": "9223372036854771712",
		"memory.stat":                "cache 5\nrss 6\ntotal_cache 50\ntotal_rss 60\ntotal_mapped_file 7\ntotal_swap 0\ntotal_inactive_file 400\npgfault 11\npgmajfault 1\ntotal_pgfault 12\ntotal_pgmajfault 2\n",
		"memory.oom_control":         "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
	})
	writeFiles(t, filepath.Join(v1["pids"], cg), map[string]string{
		"pids.max": "max", "cgroup.procs": strconv.Itoa(self) + "\n",
	})
	writeFiles(t, filepath.Join(v1["blkio"], cg), map[string]string{
		"blkio.throttle.io_service_bytes_recursive": "7:0 Read 512\n7:0 Write 1024\nTotal 1536\n",
		"blkio.throttle.io_serviced_recursive":      "7:0 Read 1\n7:0 Write 2\nTotal 3\n",
	})
	s := &Service{cfg: &config.Config{Root: root}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	fsInfo := s.rootFsInfo()
	if fsInfo.capacity == 0 || fsInfo.inodes == 0 || fsInfo.device == "" {
		t.Fatalf("root filesystem info not read: %+v", fsInfo)
	}
	now := time.Unix(1700000000, 0)
	rec := containerRecord{ID: "c1", CgroupsPath: cg, StartedAt: time.Unix(1690000000, 5).UnixNano()}
	ms, err := s.containerMetrics(rec, []string{"pod", "ns", "ctr", "c1", "img"}, v1, fsInfo, now)
	if err != nil {
		t.Fatal(err)
	}
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

func TestReadCgroupMetricsMissing(t *testing.T) {
	if _, err := readCgroupMetrics("gone/c", map[string]string{"cpuacct": t.TempDir()}); err == nil {
		t.Fatal("reading a missing cgroup succeeded")
	}
	if _, err := readCgroupMetrics("/", nil); err == nil {
		t.Fatal("reading the root cgroup succeeded")
	}
}
