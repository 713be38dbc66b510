package bench

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	p, ok := parseStat(42, []byte("42 (weird ) name) S 7 42 42 0 -1 4194560"))
	if !ok || p.comm != "weird ) name" || p.ppid != 7 {
		t.Fatalf("parseStat = %+v %v", p, ok)
	}
	if _, ok := parseStat(1, []byte("garbage")); ok {
		t.Fatal("parseStat accepted garbage")
	}
}

func TestMatchName(t *testing.T) {
	shim := proc{comm: "containerd-shim", exe: "containerd-shim-runc-v2"}
	if !shim.matchName("containerd-shim-runc-v2") {
		t.Error("15-byte comm should match the full name")
	}
	if (proc{comm: "containerd"}).matchName("containerd-shim-runc-v2") {
		t.Error("containerd must not match the shim name")
	}
	if (proc{comm: "x"}).matchName("") {
		t.Error("empty name matched")
	}
}

// writeProc makes a fake /proc/<pid> with stat, cmdline and smaps_rollup.
func writeProc(t *testing.T, root string, pid, ppid int, comm, cmdline string, rssKB, pssKB int) {
	t.Helper()
	d := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	stat := strconv.Itoa(pid) + " (" + comm + ") S " + strconv.Itoa(ppid) + " 1 1 0 -1"
	files := map[string]string{
		"stat":    stat,
		"cmdline": strings.ReplaceAll(cmdline, " ", "\x00") + "\x00",
		"smaps_rollup": "00400000-7ffd0000 ---p 00000000 00:00 0 [rollup]\n" +
			"Rss:            " + strconv.Itoa(rssKB) + " kB\n" +
			"Pss:            " + strconv.Itoa(pssKB) + " kB\n" +
			"Pss_Anon:       1 kB\n",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(d, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMeasureTree(t *testing.T) {
	root := t.TempDir()
	// init
	writeProc(t, root, 1, 0, "init", "/sbin/init", 1000, 1000)
	// the daemon and a transient child (runc) of it
	writeProc(t, root, 100, 1, "containerd", "/usr/bin/containerd --config a.toml", 40960, 30720)
	writeProc(t, root, 101, 100, "runc", "runc create", 2048, 1024)
	// our shim, reparented to init, with pause and a workload
	writeProc(t, root, 200, 1, "containerd-shim", "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -address /w/containerd.sock", 10240, 5120)
	writeProc(t, root, 201, 200, "pause", "/pause", 512, 256)
	writeProc(t, root, 202, 200, "sleep", "sleep 3600", 300, 100)
	// another runtime's shim and pause: not ours
	writeProc(t, root, 300, 1, "containerd-shim", "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -address /other/containerd.sock", 9999, 9999)
	writeProc(t, root, 301, 300, "pause", "/pause", 9999, 9999)
	// a non-numeric entry is ignored
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	sel := treeSelector{daemonPID: 100, monitorNames: []string{"containerd-shim-runc-v2"}, monitorMatch: "/w/containerd.sock", pauseName: "pause"}
	u, err := measureTree(root, sel)
	if err != nil {
		t.Fatal(err)
	}
	want := MemoryUsage{DaemonRSS: 40960, DaemonPSS: 30720, MonitorRSS: 10240, MonitorPSS: 5120, PauseRSS: 512, PausePSS: 256,
		OtherRSS: 2048 + 300, OtherPSS: 1024 + 100, Monitors: 1, Pauses: 1, Others: 2}
	if u != want {
		t.Fatalf("measureTree = %+v\nwant %+v", u, want)
	}
	// Without the match, the other runtime's shim is counted too.
	sel.monitorMatch = ""
	u, err = measureTree(root, sel)
	if err != nil {
		t.Fatal(err)
	}
	if u.Monitors != 2 || u.Pauses != 2 {
		t.Fatalf("unfiltered: %d monitors %d pauses, want 2 and 2", u.Monitors, u.Pauses)
	}
	if _, err := measureTree(root, treeSelector{daemonPID: 999}); err == nil {
		t.Fatal("missing daemon not reported")
	}
	procs, err := readProcs(root)
	if err != nil {
		t.Fatal(err)
	}
	if pid, err := findDaemon(procs, "containerd"); err != nil || pid != 100 {
		t.Fatalf("findDaemon = %d, %v", pid, err)
	}
	if _, err := findDaemon(procs, "pause"); err == nil {
		t.Fatal("findDaemon accepted two processes of the name")
	}
}

func TestMemoryMetrics(t *testing.T) {
	idle := MemoryUsage{DaemonRSS: 40 * 1024, DaemonPSS: 30 * 1024}
	loaded := MemoryUsage{DaemonRSS: 44 * 1024, DaemonPSS: 32 * 1024, MonitorRSS: 100 * 1024, MonitorPSS: 50 * 1024,
		PauseRSS: 16 * 1024, PausePSS: 8 * 1024, OtherRSS: 1e6}
	get := func(ms []Metric, group, name string) float64 {
		for _, m := range ms {
			if m.Group == group && m.Name == name {
				return m.Value
			}
		}
		return math.NaN()
	}
	ms := memoryMetrics(idle, loaded, 8)
	// (4 + 100 + 16) / 8 = 15 MiB; workload (OtherRSS) excluded.
	if v := get(ms, "pods=8", "per-pod overhead RSS"); v != 15 {
		t.Errorf("per-pod RSS = %v, want 15", v)
	}
	if v := get(ms, "pods=8", "per-pod overhead PSS"); v != 7.5 {
		t.Errorf("per-pod PSS = %v, want 7.5", v)
	}
	if v := get(ms, "idle", "daemon RSS"); v != 40 {
		t.Errorf("idle daemon RSS = %v", v)
	}
	if v := get(memoryMetrics(idle, loaded, 0), "pods=0", "per-pod overhead RSS"); !math.IsNaN(v) {
		t.Errorf("per-pod with 0 pods should be absent, got %v", v)
	}
}
