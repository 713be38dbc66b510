package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// testCgroup removes cgroup name from every hierarchy when the test ends,
// whatever state the test left it in.
func testCgroup(t *testing.T, name string) {
	t.Helper()
	t.Cleanup(func() {
		if err := Remove(name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// startInCgroup starts a shell that waits for a line on stdin, moves it
// into the given cgroup directories, then lets it run script. It returns
// after the script printed "ready" (the shell then sleeps until killed).
func startInCgroup(t *testing.T, dirs []string, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "read go; "+script+"; echo ready; exec sleep 60")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			t.Fatalf("join %s: %v", d, err)
		}
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("child did not get ready: %q %v", line, err)
	}
	return cmd
}

func killAndWait(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

func TestReadV1(t *testing.T) {
	if Unified() {
		t.Fatal("this test is for the v1/hybrid hosts crid is developed on; /sys/fs/cgroup is cgroup2")
	}
	mounts, err := v1Mounts()
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("/crid-test-%d", os.Getpid())
	testCgroup(t, name)
	var dirs []string
	for _, ctl := range []string{"cpuacct", "memory", "pids"} {
		mp, ok := mounts[ctl]
		if !ok {
			t.Fatalf("controller %s not mounted", ctl)
		}
		d := filepath.Join(mp, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	// Burn some CPU and touch memory (1 MiB dd buffer, 4 MiB of page cache).
	tmp := t.TempDir()
	cmd := startInCgroup(t, dirs, "dd if=/dev/zero of=/dev/null bs=1M count=300 2>/dev/null; dd if=/dev/zero of="+tmp+"/f bs=1M count=4 2>/dev/null")

	st, err := Read(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: %+v", *st)
	if st.CPUUsageNanos == 0 {
		t.Error("cpu usage is 0")
	}
	if st.MemoryUsage < 4<<20 {
		t.Errorf("memory usage %d, want >= 4MiB (page cache written)", st.MemoryUsage)
	}
	if st.MemoryWorkingSet == 0 || st.MemoryWorkingSet > st.MemoryUsage {
		t.Errorf("working set %d not in (0, usage %d]", st.MemoryWorkingSet, st.MemoryUsage)
	}
	if st.PageFaults == 0 {
		t.Error("page faults is 0")
	}
	if st.Pids != 1 {
		t.Errorf("pids %d, want 1 (the sleeping shell)", st.Pids)
	}
	if st.OOMKills != 0 {
		t.Errorf("oom kills %d, want 0", st.OOMKills)
	}

	// Removing while a process is inside must fail, not pretend.
	if err := Remove(name); err == nil {
		t.Error("Remove of a busy cgroup succeeded")
	}
	killAndWait(t, cmd)
	if err := Remove(name); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists: %v", d, err)
		}
	}
	if _, err := Read(name); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Read after Remove: %v, want ErrNotFound", err)
	}
	// Removing again is fine.
	if err := Remove(name); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestReadV1OOMKill(t *testing.T) {
	if Unified() {
		t.Fatal("this test is for v1/hybrid hosts")
	}
	mounts, err := v1Mounts()
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("/crid-test-oom-%d", os.Getpid())
	testCgroup(t, name)
	d := filepath.Join(mounts["memory"], name)
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "memory.limit_in_bytes"), []byte("16777216"), 0o644); err != nil {
		t.Fatal(err)
	}
	// dd with a 64 MiB buffer cannot fit in 16 MiB: the kernel kills it.
	cmd := startInCgroup(t, []string{d}, "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null")
	st, err := Read(name)
	if err != nil {
		t.Fatal(err)
	}
	if st.OOMKills < 1 {
		t.Errorf("oom kills %d, want >= 1", st.OOMKills)
	}
	killAndWait(t, cmd)
}

// TestReadV2 exercises the v2 reader on the hybrid host's unified tree
// (which has no controllers enabled, so only cpu.stat is meaningful).
func TestReadV2(t *testing.T) {
	root := cgroupRoot
	if !Unified() {
		root = filepath.Join(cgroupRoot, "unified")
	}
	name := fmt.Sprintf("crid-test-v2-%d", os.Getpid())
	d := filepath.Join(root, name)
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := removeTree(d); err != nil {
			t.Error(err)
		}
	})
	cmd := startInCgroup(t, []string{d}, "dd if=/dev/zero of=/dev/null bs=1M count=300 2>/dev/null")
	// cpu.stat is flushed lazily; give the kernel a moment.
	deadline := time.Now().Add(2 * time.Second)
	var st *Stats
	var err error
	for {
		st, err = readV2(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.CPUUsageNanos > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.CPUUsageNanos == 0 {
		t.Error("v2 cpu usage is 0")
	}
	// PSI files exist in every cgroup of a kernel with PSI on; where they
	// do, the reader must have parsed them.
	for res, got := range map[string]*PSI{"cpu": st.CPUPressure, "memory": st.MemoryPressure, "io": st.IOPressure} {
		if _, err := os.Stat(filepath.Join(d, res+".pressure")); err == nil && got == nil {
			t.Errorf("%s.pressure exists but was not read", res)
		}
	}
	killAndWait(t, cmd)
	if _, err := readV2(filepath.Join(root, name+"-missing")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing v2 cgroup: %v, want ErrNotFound", err)
	}
}

func TestPathChecks(t *testing.T) {
	for _, p := range []string{"", "/", "/a/../..", "../x"} {
		if _, err := Read(p); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Read(%q): %v, want ErrInvalidArgument", p, err)
		}
		if err := Remove(p); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Remove(%q): %v, want ErrInvalidArgument", p, err)
		}
	}
	if _, err := Read("/crid-test-does-not-exist"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing cgroup: %v, want ErrNotFound", err)
	}
}

func TestDetection(t *testing.T) {
	// Expectations are computed from the host's own files, so the test
	// holds on pure v2, v1 and hybrid hosts alike.
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	if Unified() != (err == nil) {
		t.Fatalf("Unified() = %v, /sys/fs/cgroup/cgroup.controllers present: %v", Unified(), err == nil)
	}
	if Unified() {
		return // the v1 probes below do not apply
	}
	_, err = os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	if SwapAvailable() != (err == nil) {
		t.Errorf("SwapAvailable %v, memory.memsw.limit_in_bytes present: %v", SwapAvailable(), err == nil)
	}
	_, err = os.Stat("/sys/fs/cgroup/hugetlb")
	if HugetlbAvailable() != (err == nil) {
		t.Errorf("HugetlbAvailable %v, hugetlb v1 hierarchy present: %v", HugetlbAvailable(), err == nil)
	}
}

func TestProcessDirs(t *testing.T) {
	v1 := func() (map[string]string, error) {
		return map[string]string{"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct", "memory": "/sys/fs/cgroup/memory", "name=systemd": "/sys/fs/cgroup/systemd"}, nil
	}
	v2 := func() (string, error) { return "/sys/fs/cgroup/unified", nil }
	noV2 := func() (string, error) { return "", errors.New("none") }
	tests := []struct {
		name    string
		proc    string
		path    string
		v2      func() (string, error)
		want    []string
		wantErr bool
	}{
		{
			name: "hybrid", path: "/kubepods/c1", v2: v2,
			proc: "12:memory:/kubepods/c1\n4:cpu,cpuacct:/kubepods/c1\n1:name=systemd:/kubepods/c1\n0::/kubepods/c1\n",
			want: []string{"/sys/fs/cgroup/memory/kubepods/c1", "/sys/fs/cgroup/cpu,cpuacct/kubepods/c1", "/sys/fs/cgroup/systemd/kubepods/c1", "/sys/fs/cgroup/unified/kubepods/c1"},
		},
		{
			name: "unknown hierarchy skipped, no v2", path: "kubepods/c1", v2: noV2,
			proc: "9:rdma:/kubepods/c1\n12:memory:/kubepods/c1\n0::/\n",
			want: []string{"/sys/fs/cgroup/memory/kubepods/c1"},
		},
		{
			name: "another container's process", path: "/kubepods/c1", v2: v2,
			proc: "12:memory:/kubepods/c2\n0::/kubepods/c2\n", wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := processDirs(tt.proc, tt.path, v1, tt.v2)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want error, got %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestProcessDirsSelf(t *testing.T) {
	// This test process is in some cgroup on every host: find its own
	// v1 memory or v2 path and check the directories exist.
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var own string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && (parts[1] == "memory" || parts[0] == "0") {
			own = parts[2]
			break
		}
	}
	dirs, err := ProcessDirs(os.Getpid(), own)
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no cgroup directories")
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
}

func TestResolveSystemdPath(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		bad      bool
	}{
		{in: "/kubepods/burstable/pod1/abc", want: "/kubepods/burstable/pod1/abc"},
		{in: "kubepods-burstable-pod1.slice:crid:abc", want: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/crid-abc.scope"},
		{in: "system.slice:crid:abc", want: "/system.slice/crid-abc.scope"},
		{in: ":crid:abc", want: "/system.slice/crid-abc.scope"},
		{in: "-.slice:crid:abc", want: "/crid-abc.scope"},
		{in: "kubepods.slice::abc", want: "/kubepods.slice/abc.scope"},
		{in: "kubepods.slice:crid:sub.slice", want: "/kubepods.slice/sub.slice"},
		{in: "kubepods--x.slice:crid:abc", bad: true},
		{in: "kubepods:crid:abc", bad: true},
		{in: "a/b.slice:crid:abc", bad: true},
		{in: "kubepods.slice:crid:", bad: true},
		{in: "kubepods.slice:crid:a/../..", bad: true},
		{in: "a:b", bad: true},
		{in: "/", bad: true},
	} {
		got, err := resolve(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("resolve(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("resolve(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if IsSystemdPath("/kubepods/pod1/abc") || !IsSystemdPath("kubepods.slice:crid:abc") {
		t.Error("IsSystemdPath")
	}
}
