package cgroups

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseBlkio(t *testing.T) {
	byteCounts := parseBlkioV1("8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\n253:1 Read 10\nTotal 12298\n", true)
	ops := parseBlkioV1("8:0 Read 1\n8:0 Write 2\n8:16 Write 5\nTotal 8\n", false)
	got := mergeBlkio(byteCounts, ops)
	want := []BlkioDevice{
		{Major: 8, Minor: 0, ReadBytes: 4096, WriteBytes: 8192, Reads: 1, Writes: 2},
		{Major: 253, Minor: 1, ReadBytes: 10},
		{Major: 8, Minor: 16, Writes: 5},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("v1 blkio = %+v, want %+v", got, want)
	}
	v2 := parseIOStatV2("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\nbogus\n")
	if want := []BlkioDevice{{Major: 8, Minor: 0, ReadBytes: 4096, WriteBytes: 8192, Reads: 1, Writes: 2}}; !slices.Equal(v2, want) {
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

// TestReadMetricsV1 reads a fake v1 hierarchy.
func TestReadMetricsV1(t *testing.T) {
	root := t.TempDir()
	cg := "kubepods/pod1/c1"
	v1 := map[string]string{}
	for _, ctl := range []string{"cpu", "cpuacct", "memory", "pids", "blkio"} {
		v1[ctl] = filepath.Join(root, ctl)
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
	got, err := readMetrics(cg, v1)
	if err != nil {
		t.Fatal(err)
	}
	want := Metrics{
		CPUTotal: 3500000000, CPUUser: 2000000000, CPUSystem: 1500000000,
		Periods: 10, ThrottledPeriods: 4, ThrottledNanos: 2000000000, CPUPeriod: 100000, CPUShares: 1024,
		MemUsage: 1000, MemMaxUsage: 2000, MemWorkingSet: 600, MemCache: 50, MemRSS: 60, MemMapped: 7,
		MemFailcnt: 3, PgFault: 11, PgMajFault: 1, PgFaultHierarchy: 12, PgMajFaultHierarchy: 2, OOMKills: 1,
		MemLimit: 64 << 20, MemSwapLimit: 0, MemReservation: 0, PidsMax: 0, Pids: []int{self},
		Blkio: []BlkioDevice{{Major: 7, Minor: 0, ReadBytes: 512, WriteBytes: 1024, Reads: 1, Writes: 2}},
	}
	if !slices.Equal(got.Pids, want.Pids) || !slices.Equal(got.Blkio, want.Blkio) {
		t.Errorf("pids/blkio = %v %+v, want %v %+v", got.Pids, got.Blkio, want.Pids, want.Blkio)
	}
	got.Pids, got.Blkio, want.Pids, want.Blkio = nil, nil, nil, nil
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("metrics\n got %+v\nwant %+v", *got, want)
	}
}

func TestReadMetricsMissing(t *testing.T) {
	if _, err := readMetrics("gone/c", map[string]string{"cpuacct": t.TempDir()}); err == nil {
		t.Fatal("reading a missing cgroup succeeded")
	}
	if _, err := readMetrics("/", nil); err == nil {
		t.Fatal("reading the root cgroup succeeded")
	}
}

func TestReadMetricsPathRules(t *testing.T) {
	for _, p := range []string{"", "/", "a/../../etc"} {
		if _, err := ReadMetrics(p); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ReadMetrics(%q) = %v, want InvalidArgument", p, err)
		}
	}
	if _, err := ReadMetrics("/crid-test-no-such-cgroup-" + strconv.Itoa(os.Getpid())); !errdefs.IsNotFound(err) {
		t.Errorf("ReadMetrics of a missing cgroup = %v, want NotFound", err)
	}
}

func TestSharesGiveWeight(t *testing.T) {
	for _, tt := range []struct {
		shares, weight uint64
		want           bool
	}{
		{512, 20, true},  // linear (runc 1.1.5)
		{512, 59, true},  // quadratic (runc 1.4+)
		{300, 12, true},  // linear
		{300, 39, true},  // quadratic
		{1024, 39, true}, // linear
		{1024, 100, true},
		{2, 1, true},
		{262144, 10000, true},
		{512, 58, false},
		{300, 59, false},
		{0, 1, false},
		{512, 0, false},
	} {
		if got := SharesGiveWeight(tt.shares, tt.weight); got != tt.want {
			t.Errorf("SharesGiveWeight(%d, %d) = %v, want %v", tt.shares, tt.weight, got, tt.want)
		}
	}
}
