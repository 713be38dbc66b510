package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/internal/cgroups"
)

const runcBin = "/usr/sbin/runc"

// busyboxRootfs builds a rootfs from the host's dynamic busybox and the
// libraries it needs, with applet symlinks and the test /etc files.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	root := writeRootfs(t)
	copyFile := func(src, dst string) {
		t.Helper()
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, dst)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dst), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile("/bin/busybox", "bin/busybox")
	out, err := exec.Command("ldd", "/bin/busybox").Output()
	if err != nil {
		t.Fatalf("ldd busybox: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				copyFile(f, strings.TrimPrefix(f, "/"))
			}
		}
	}
	for _, a := range []string{"sh", "id", "cat", "hostname", "sleep", "grep", "touch", "echo", "ls"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func runc(ctx context.Context, t *testing.T, stateDir string, stdout io.Writer, args ...string) error {
	t.Helper()
	cmd := exec.CommandContext(ctx, runcBin, append([]string{"--root", stateDir}, args...)...)
	// Files, not pipes: a detached container inherits runc's stdio, and
	// Wait would block on a pipe it holds open until it exits.
	stderr, err := os.CreateTemp(t.TempDir(), "runc-stderr")
	if err != nil {
		return err
	}
	defer stderr.Close()
	cmd.Stderr = stderr
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(stderr.Name())
		return fmt.Errorf("runc %v: %w: %s", args, err, b)
	}
	return nil
}

func writeBundle(t *testing.T, s *specs.Spec) string {
	t.Helper()
	dir := t.TempDir()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRuncRunsGeneratedSpecs runs a pause-like sandbox and a container
// joining it with real runc, checking the container sees what the spec
// promised: user and groups, the pod's hostname, capabilities, seccomp,
// mounts (rw, rro, /etc/hosts) and the sandbox's cgroup.
func TestRuncRunsGeneratedSpecs(t *testing.T) {
	if _, err := os.Stat(runcBin); err != nil {
		t.Fatalf("runc is required: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	minOOM := 0
	if b, err := os.ReadFile("/proc/self/oom_score_adj"); err == nil {
		minOOM, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	stateDir := t.TempDir()
	suffix := strconv.Itoa(os.Getpid())
	parent := "/crid-oci-test-" + suffix
	sbID, ctrID := "sb-"+suffix, "ctr-"+suffix
	t.Cleanup(func() {
		_ = runc(context.Background(), t, stateDir, io.Discard, "delete", "-f", ctrID)
		_ = runc(context.Background(), t, stateDir, io.Discard, "delete", "-f", sbID)
		if err := cgroups.Remove(parent); err != nil {
			t.Errorf("cleanup cgroups: %v", err)
		}
	})

	rootfs := busyboxRootfs(t)
	podDir := t.TempDir()
	hosts := filepath.Join(podDir, "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost crid-pod-marker\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sbCfg := baseSandboxConfig()
	sbCfg.Hostname = "crid-test-pod"
	sbCfg.Linux.SecurityContext.Seccomp = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}
	sbCgroup := CgroupsPath("cgroupfs", parent, sbID)
	sb, err := SandboxSpec(SandboxParams{
		ID: sbID, Config: sbCfg, RootfsPath: rootfs,
		Image:       ocispec.ImageConfig{Entrypoint: []string{"/bin/sleep"}, Cmd: []string{"60"}},
		HostsPath:   hosts,
		CgroupsPath: sbCgroup, MinOOMScoreAdj: minOOM,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := runc(ctx, t, stateDir, nil, "run", "-d", "--bundle", writeBundle(t, sb), sbID); err != nil {
		t.Fatal(err)
	}
	var state struct {
		Pid    int    `json:"pid"`
		Status string `json:"status"`
	}
	var out bytes.Buffer
	if err := runc(ctx, t, stateDir, &out, "state", sbID); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out.Bytes(), &state); err != nil || state.Status != "running" {
		t.Fatalf("sandbox state %s: %v", out.String(), err)
	}
	st, err := cgroups.Read(sbCgroup)
	if err != nil {
		t.Fatalf("sandbox cgroup stats: %v", err)
	}
	if st.Pids != 1 || st.MemoryUsage == 0 {
		t.Errorf("sandbox stats %+v", *st)
	}

	data := t.TempDir()
	if err := os.Chmod(data, 0o777); err != nil { // the container runs as uid 1000
		t.Fatal(err)
	}
	roDir := t.TempDir()
	script := strings.Join([]string{
		"id", "hostname",
		"grep -E '^(CapBnd|Seccomp|NoNewPrivs):' /proc/self/status",
		"grep -c crid-pod-marker /etc/hosts",
		"echo hello > /data/written",
		"touch /ro/x 2>/dev/null && echo ro-writable || echo ro-refused",
		"echo done",
	}, "; ")
	ctrCfg := &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "app"},
		Command:  []string{"/bin/sh", "-c", script},
		Mounts: []*runtime.Mount{
			{ContainerPath: "/data", HostPath: data},
			{ContainerPath: "/ro", HostPath: roDir, Readonly: true, RecursiveReadOnly: true},
		},
		Linux: &runtime.LinuxContainerConfig{
			Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 256, OomScoreAdj: 500},
			SecurityContext: &runtime.LinuxContainerSecurityContext{
				RunAsUser: i64(1000), SupplementalGroups: []int64{5000},
				Capabilities:     &runtime.Capability{DropCapabilities: []string{"NET_RAW"}},
				Seccomp:          &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault},
				NoNewPrivs:       true,
				NamespaceOptions: &runtime.NamespaceOption{},
				MaskedPaths:      []string{"/proc/kcore"},
				ReadonlyPaths:    []string{"/proc/sys"},
			},
		},
	}
	ctr, err := ContainerSpec(ContainerParams{
		ID: ctrID, SandboxID: sbID, Config: ctrCfg, SandboxConfig: sbCfg, RootfsPath: rootfs,
		SandboxPID: state.Pid, HostsPath: hosts,
		CgroupsPath: CgroupsPath("cgroupfs", parent, ctrID), MinOOMScoreAdj: minOOM,
	})
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := runc(ctx, t, stateDir, &out, "run", "--bundle", writeBundle(t, ctr), ctrID); err != nil {
		t.Fatalf("%v\noutput: %s", err, out.String())
	}
	got := out.String()
	t.Logf("container output:\n%s", got)
	wantMask := uint64(0)
	for _, c := range ctr.Process.Capabilities.Bounding {
		for i, n := range capNames {
			if n == c {
				wantMask |= 1 << uint(i)
			}
		}
	}
	for _, want := range []string{
		"uid=1000(alice) gid=1000(alice) groups=10(wheel),50(staff),1000(alice),5000",
		"\ncrid-test-pod\n",
		fmt.Sprintf("CapBnd:\t%016x", wantMask),
		"NoNewPrivs:\t1", "Seccomp:\t2",
		"\n1\n", // the pod's /etc/hosts
		"ro-refused", "done",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("container output lacks %q", want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(data, "written")); err != nil || string(b) != "hello\n" {
		t.Errorf("rw bind mount: %q %v", b, err)
	}
}

// TestRuncPrivilegedHostNetwork runs a privileged container in a
// host-network, host-pid sandbox: host devices, all of crid's capabilities,
// writable /sys, no uts namespace and so no hostname.
func TestRuncPrivilegedHostNetwork(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stateDir := t.TempDir()
	suffix := strconv.Itoa(os.Getpid())
	parent := "/crid-oci-test-priv-" + suffix
	sbID, ctrID := "psb-"+suffix, "pctr-"+suffix
	t.Cleanup(func() {
		_ = runc(context.Background(), t, stateDir, io.Discard, "delete", "-f", ctrID)
		_ = runc(context.Background(), t, stateDir, io.Discard, "delete", "-f", sbID)
		if err := cgroups.Remove(parent); err != nil {
			t.Errorf("cleanup cgroups: %v", err)
		}
	})
	rootfs := busyboxRootfs(t)
	sbCfg := baseSandboxConfig()
	sbCfg.Linux.Sysctls = nil // net sysctls need a network namespace
	sbCfg.Linux.SecurityContext.Privileged = true
	sbCfg.Linux.SecurityContext.NamespaceOptions = &runtime.NamespaceOption{
		Network: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_NODE}
	sb, err := SandboxSpec(SandboxParams{
		ID: sbID, Config: sbCfg, RootfsPath: rootfs,
		Image:       ocispec.ImageConfig{Entrypoint: []string{"/bin/sleep", "60"}},
		CgroupsPath: CgroupsPath("cgroupfs", parent, sbID),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := runc(ctx, t, stateDir, nil, "run", "-d", "--bundle", writeBundle(t, sb), sbID); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var state struct{ Pid int }
	if err := runc(ctx, t, stateDir, &out, "state", sbID); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out.Bytes(), &state); err != nil {
		t.Fatal(err)
	}
	ctrCfg := &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "priv"},
		Command:  []string{"/bin/sh", "-c", "grep CapBnd /proc/self/status; ls /dev/null /dev/full; touch /sys/fs/cgroup/x 2>/dev/null; hostname; echo done"},
		Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
			Privileged: true,
			NamespaceOptions: &runtime.NamespaceOption{
				Network: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_NODE},
		}},
	}
	ctr, err := ContainerSpec(ContainerParams{
		ID: ctrID, SandboxID: sbID, Config: ctrCfg, SandboxConfig: sbCfg, RootfsPath: rootfs,
		SandboxPID: state.Pid, CgroupsPath: CgroupsPath("cgroupfs", parent, ctrID),
	})
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := runc(ctx, t, stateDir, &out, "run", "--bundle", writeBundle(t, ctr), ctrID); err != nil {
		t.Fatalf("%v\noutput: %s", err, out.String())
	}
	got := out.String()
	t.Logf("container output:\n%s", got)
	host, _ := os.Hostname()
	status, _ := os.ReadFile("/proc/self/status")
	var capEff string
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			capEff = strings.TrimSpace(v)
		}
	}
	for _, want := range []string{"CapBnd:\t" + capEff, "/dev/null", "/dev/full", "\n" + host + "\n", "done"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
