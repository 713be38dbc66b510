package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crid-dev/crid/internal/network"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func podConfig(t *testing.T) *runtime.PodSandboxConfig {
	name := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: randHex(8)},
		Hostname:     "pod-" + randHex(3),
		LogDirectory: filepath.Join(h.base, "logs", randHex(4)),
		DnsConfig:    &runtime.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"e2e.svc.cluster.local"}, Options: []string{"ndots:5"}},
		Labels:       map[string]string{"test": "e2e"},
		Linux:        &runtime.LinuxPodSandboxConfig{CgroupParent: "/crid-e2e"},
	}
}

// runPod starts a pod and removes it when the test ends.
func runPod(t *testing.T, cfg *runtime.PodSandboxConfig, handler string) string {
	t.Helper()
	ctx := ctxT(t)
	resp, err := h.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\ncrid log:\n%s", err, h.logTail())
	}
	id := resp.PodSandboxId
	t.Cleanup(func() {
		if h.conn == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := h.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("cleanup RemovePodSandbox: %v", err)
		}
	})
	return id
}

func pull(t *testing.T, ref string) string {
	t.Helper()
	resp, err := h.img.PullImage(ctxT(t), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatalf("PullImage %s: %v", ref, err)
	}
	return resp.ImageRef
}

func containerConfig(name string, cmd ...string) *runtime.ContainerConfig {
	return &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: name},
		Image:    &runtime.ImageSpec{Image: busybox},
		Command:  cmd,
		LogPath:  name + ".log",
		Labels:   map[string]string{"container": name},
	}
}

func createStart(t *testing.T, podID string, pod *runtime.PodSandboxConfig, cfg *runtime.ContainerConfig) string {
	t.Helper()
	ctx := ctxT(t)
	cr, err := h.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
	if err != nil {
		t.Fatalf("CreateContainer: %v\ncrid log:\n%s", err, h.logTail())
	}
	if _, err := h.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v\ncrid log:\n%s", err, h.logTail())
	}
	return cr.ContainerId
}

func containerStatus(t *testing.T, id string) *runtime.ContainerStatus {
	t.Helper()
	st, err := h.rt.ContainerStatus(ctxT(t), &runtime.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStatus: %v", err)
	}
	return st.Status
}

func waitExited(t *testing.T, id string, within time.Duration) *runtime.ContainerStatus {
	t.Helper()
	return h.waitExited(t, id, within)
}

// waitExited waits for hh's crid to report the container EXITED.
func (hh *harness) waitExited(t *testing.T, id string, within time.Duration) *runtime.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r, err := hh.rt.ContainerStatus(ctxT(t), &runtime.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatalf("ContainerStatus: %v", err)
		}
		st := r.Status
		if st.State == runtime.ContainerState_CONTAINER_EXITED {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s still %v after %v", id, st.State, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func execSync(t *testing.T, id string, timeout int64, cmd ...string) *runtime.ExecSyncResponse {
	t.Helper()
	resp, err := h.rt.ExecSync(ctxT(t), &runtime.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: timeout})
	if err != nil {
		t.Fatalf("ExecSync %v: %v", cmd, err)
	}
	return resp
}

func TestVersionAndStatus(t *testing.T) {
	ctx := ctxT(t)
	v, err := h.rt.Version(ctx, &runtime.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "crid" || v.RuntimeApiVersion != "v1" {
		t.Errorf("version = %+v", v)
	}
	st, err := h.rt.Status(ctx, &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Status.Conditions {
		if !c.Status {
			t.Errorf("condition %s false: %s %s", c.Type, c.Reason, c.Message)
		}
	}
	names := map[string]bool{}
	for _, hd := range st.RuntimeHandlers {
		names[hd.Name] = true
	}
	for _, n := range []string{"runc", "runc-b"} {
		if !names[n] {
			t.Errorf("handler %s not reported: %v", n, st.RuntimeHandlers)
		}
	}
	rc, err := h.rt.RuntimeConfig(ctx, &runtime.RuntimeConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rc.Linux.CgroupDriver != runtime.CgroupDriver_CGROUPFS {
		t.Errorf("cgroup driver = %v", rc.Linux.CgroupDriver)
	}
}

func TestPullThroughMirror(t *testing.T) {
	ctx := ctxT(t)
	ref := "gcr.io/k8s-staging-cri-tools/test-image-latest:latest"
	id := pull(t, ref)
	st, err := h.img.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: ref}, Verbose: true})
	if err != nil || st.Image == nil {
		t.Fatalf("ImageStatus: %v %v", st, err)
	}
	if st.Image.Id != id || len(st.Image.RepoDigests) == 0 || st.Image.Size == 0 {
		t.Fatalf("image status = %+v (pulled %s)", st.Image, id)
	}
	digestRef := st.Image.RepoDigests[0]
	if !strings.HasPrefix(digestRef, "gcr.io/k8s-staging-cri-tools/test-image-latest@sha256:") {
		t.Errorf("repo digest %q", digestRef)
	}
	if _, err := h.img.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: id}}); err != nil {
		t.Fatal(err)
	}
	if st, err := h.img.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: ref}}); err != nil || st.Image != nil {
		t.Fatalf("after remove: %v %v", st, err)
	}
	// Removing again is fine.
	if _, err := h.img.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: id}}); err != nil {
		t.Fatalf("second RemoveImage: %v", err)
	}
	// By digest.
	if got := pull(t, digestRef); got != id {
		t.Errorf("pull by digest gave %s, want %s", got, id)
	}
	list, err := h.img.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, img := range list.Images {
		found = found || img.Id == id
	}
	if !found {
		t.Errorf("ListImages lacks %s", id)
	}
	// Errors.
	_, err = h.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: "registry.k8s.io/does-not-exist:1"}})
	if err == nil {
		t.Error("pull of a missing image succeeded")
	}
	_, err = h.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: "UPPER/Case::bad"}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("invalid reference: code %v (%v), want InvalidArgument", status.Code(err), err)
	}
	fs, err := h.img.ImageFsInfo(ctx, &runtime.ImageFsInfoRequest{})
	if err != nil || len(fs.ImageFilesystems) == 0 || fs.ImageFilesystems[0].UsedBytes.GetValue() == 0 {
		t.Errorf("ImageFsInfo = %v, %v", fs, err)
	}
}

var logLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d) (stdout|stderr) (P|F) (.*)$`)

func TestPodLifecycle(t *testing.T) {
	pull(t, busybox)
	ctx := ctxT(t)
	pod := podConfig(t)
	pod.Linux.CgroupParent = leakCgroupParent
	leaks := leakBaseline(t, h)
	podID := runPod(t, pod, "")
	ps, err := h.rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if ps.Status.State != runtime.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod state %v", ps.Status.State)
	}
	_, subnet, _ := net.ParseCIDR(podSubnet)
	if ip := net.ParseIP(ps.Status.Network.GetIp()); ip == nil || !subnet.Contains(ip) {
		t.Fatalf("pod IP %q not in %s", ps.Status.Network.GetIp(), podSubnet)
	}
	if !strings.Contains(ps.Info["info"], `"pid"`) {
		t.Errorf("verbose info lacks pid: %v", ps.Info)
	}

	cfg := containerConfig("main", "sh", "-c", "echo hello; echo oops >&2; exec sleep 1000")
	cfg.Envs = []*runtime.KeyValue{{Key: "GREETING", Value: []byte("hi there")}}
	id := createStart(t, podID, pod, cfg)
	st := containerStatus(t, id)
	if st.State != runtime.ContainerState_CONTAINER_RUNNING || st.StartedAt == 0 {
		t.Fatalf("status = %+v", st)
	}
	// Exec: environment, DNS, hostname, hosts, exit codes.
	if out := execSync(t, id, 10, "sh", "-c", "echo $GREETING"); strings.TrimSpace(string(out.Stdout)) != "hi there" {
		t.Errorf("env: %q", out.Stdout)
	}
	rc := string(execSync(t, id, 10, "cat", "/etc/resolv.conf").Stdout)
	for _, want := range []string{"nameserver 10.96.0.10", "search e2e.svc.cluster.local", "options ndots:5"} {
		if !strings.Contains(rc, want) {
			t.Errorf("resolv.conf lacks %q:\n%s", want, rc)
		}
	}
	if hn := strings.TrimSpace(string(execSync(t, id, 10, "hostname").Stdout)); hn != pod.Hostname {
		t.Errorf("hostname = %q, want %q", hn, pod.Hostname)
	}
	if hosts := string(execSync(t, id, 10, "cat", "/etc/hosts").Stdout); !strings.Contains(hosts, ps.Status.Network.Ip) {
		t.Errorf("/etc/hosts lacks the pod IP:\n%s", hosts)
	}
	if ip := string(execSync(t, id, 10, "ip", "-4", "addr", "show", "eth0").Stdout); !strings.Contains(ip, ps.Status.Network.Ip) {
		t.Errorf("eth0 lacks pod IP:\n%s", ip)
	}
	if r := execSync(t, id, 10, "sh", "-c", "echo out; echo err >&2; exit 3"); r.ExitCode != 3 || string(r.Stdout) != "out\n" || string(r.Stderr) != "err\n" {
		t.Errorf("exec = code %d stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}

	// Logs in CRI format.
	logPath := filepath.Join(pod.LogDirectory, "main.log")
	if st.LogPath != logPath {
		t.Errorf("log path = %q, want %q", st.LogPath, logPath)
	}
	var lines []string
	for i := 0; i < 50 && len(lines) < 2; i++ {
		lines = readLines(t, logPath)
		time.Sleep(50 * time.Millisecond)
	}
	got := map[string]bool{}
	for _, l := range lines {
		m := logLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("bad log line %q", l)
			continue
		}
		got[m[2]+" "+m[3]+" "+m[4]] = true
	}
	if !got["stdout F hello"] || !got["stderr F oops"] {
		t.Errorf("log lines = %q", lines)
	}

	stats, err := h.rt.ContainerStats(ctx, &runtime.ContainerStatsRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Stats.Memory.GetWorkingSetBytes().GetValue() == 0 || stats.Stats.Cpu.GetUsageCoreNanoSeconds().GetValue() == 0 {
		t.Errorf("stats = %+v", stats.Stats)
	}
	list, err := h.rt.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{
		PodSandboxId: podID, LabelSelector: map[string]string{"container": "main"},
		State: &runtime.ContainerStateValue{State: runtime.ContainerState_CONTAINER_RUNNING},
	}})
	if err != nil || len(list.Containers) != 1 || list.Containers[0].Id != id {
		t.Fatalf("ListContainers = %v, %v", list, err)
	}

	// Stop: sleep ignores nothing, SIGTERM ends it.
	start := time.Now()
	if _, err := h.rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 10}); err != nil {
		t.Fatal(err)
	}
	st = containerStatus(t, id)
	if st.State != runtime.ContainerState_CONTAINER_EXITED || st.FinishedAt == 0 || st.ExitCode != 143 || st.Reason != "Error" {
		t.Errorf("after stop: state %v exit %d reason %q", st.State, st.ExitCode, st.Reason)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop took %v", d)
	}
	// Idempotent stop and remove.
	if _, err := h.rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id}); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if _, err := h.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Errorf("second remove: %v", err)
	}
	if _, err := h.rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id}); status.Code(err) != codes.NotFound {
		t.Errorf("status of removed container: %v", err)
	}
	if _, err := os.Stat(logPath); err != nil {
		t.Errorf("log removed with the container: %v", err)
	}

	if _, err := h.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Errorf("second StopPodSandbox: %v", err)
	}
	ps, err = h.rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil || ps.Status.State != runtime.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("after stop: %v %v", ps, err)
	}
	if _, err := h.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	assertNoLeftovers(t, podID, id)
	assertNoLeaks(t, h, leaks)
}

// assertNoLeftovers checks that nothing of the given objects remains on the host.
func assertNoLeftovers(t *testing.T, ids ...string) {
	t.Helper()
	state := filepath.Join(h.base, "state")
	root := filepath.Join(h.base, "root")
	for _, id := range ids {
		for _, p := range []string{
			filepath.Join(state, "sandboxes", id), filepath.Join(state, "containers", id),
			filepath.Join(root, "sandboxes", id), filepath.Join(root, "containers", id),
			filepath.Join(state, "netns", id),
		} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("left behind: %s", p)
			}
		}
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		if strings.Contains(string(mounts), id) {
			t.Errorf("mount of %s left behind", id)
		}
		if out, _ := runOut("runc", "--root", filepath.Join(state, "runtime", "runc"), "list", "-q"); strings.Contains(out, id) {
			t.Errorf("runc container %s left behind", id)
		}
	}
}

func TestExecSyncTimeoutAndBackgroundChild(t *testing.T) {
	pull(t, busybox)
	pod := podConfig(t)
	podID := runPod(t, pod, "")
	id := createStart(t, podID, pod, containerConfig("sleeper", "sleep", "1000"))
	start := time.Now()
	_, err := h.rt.ExecSync(ctxT(t), &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"sleep", "30"}, Timeout: 1})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("timed-out exec: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("timed-out exec took %v", d)
	}
	start = time.Now()
	r := execSync(t, id, 0, "sh", "-c", "sleep 60 & echo started")
	if strings.TrimSpace(string(r.Stdout)) != "started" || r.ExitCode != 0 {
		t.Errorf("background exec = %q code %d", r.Stdout, r.ExitCode)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("exec with a background child took %v", d)
	}
}

func TestRestartKeepsContainersAndLogs(t *testing.T) {
	pull(t, busybox)
	pod := podConfig(t)
	podID := runPod(t, pod, "")
	counter := createStart(t, podID, pod, containerConfig("counter", "sh", "-c", "i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done"))
	quitter := createStart(t, podID, pod, containerConfig("quitter", "sh", "-c", "sleep 2; exit 7"))
	before := containerStatus(t, counter)

	// Crash crid: no chance to clean up.
	h.stop(syscall.SIGKILL)
	time.Sleep(3 * time.Second) // the quitter exits while crid is down
	if err := h.start(); err != nil {
		t.Fatal(err)
	}
	after := containerStatus(t, counter)
	if after.State != runtime.ContainerState_CONTAINER_RUNNING || after.StartedAt != before.StartedAt {
		t.Fatalf("counter after restart: %v started %d (before %d)", after.State, after.StartedAt, before.StartedAt)
	}
	q := waitExited(t, quitter, 10*time.Second)
	if q.ExitCode != 7 || q.FinishedAt == 0 {
		t.Errorf("quitter after restart: exit %d finished %d", q.ExitCode, q.FinishedAt)
	}
	ps, err := h.rt.PodSandboxStatus(ctxT(t), &runtime.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil || ps.Status.State != runtime.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod after restart: %v %v", ps, err)
	}
	if r := execSync(t, counter, 10, "echo", "alive"); string(r.Stdout) != "alive\n" {
		t.Errorf("exec after restart: %q", r.Stdout)
	}
	// The log has no gap: consecutive numbers across the crash.
	time.Sleep(500 * time.Millisecond)
	lines := readLines(t, filepath.Join(pod.LogDirectory, "counter.log"))
	if len(lines) < 60 {
		t.Fatalf("only %d log lines", len(lines))
	}
	for i, l := range lines {
		m := logLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("bad log line %q", l)
		}
		if n, err := strconv.Atoi(m[4]); err != nil || n != i {
			t.Fatalf("log line %d is %q: gap or corruption", i, l)
		}
	}
}

func TestRollback(t *testing.T) {
	pull(t, busybox)
	ctx := ctxT(t)
	countPins := func() int {
		e, _ := os.ReadDir(filepath.Join(h.base, "state", "netns"))
		return len(e)
	}
	countIPs := func() int { // host-local keeps one file per allocated IP
		e, _ := os.ReadDir(filepath.Join("/var/lib/cni/networks", networkName))
		n := 0
		for _, f := range e {
			if net.ParseIP(f.Name()) != nil {
				n++
			}
		}
		return n
	}
	pinsBefore, ipsBefore := countPins(), countIPs()
	leaks := leakBaseline(t, h)

	// The runtime fails to create the pause container: the network set up
	// for it must be torn down again.
	_, err := h.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: leakPodConfig(t), RuntimeHandler: "broken"})
	if err == nil {
		t.Fatal("RunPodSandbox with a failing runtime succeeded")
	}
	// CNI ADD fails in the last plugin of the chain, after bridge and
	// portmap set things up.
	bad := leakPodConfig(t)
	bad.Metadata.Name = "cnifail-pod"
	bad.PortMappings = []*runtime.PortMapping{{ContainerPort: 80, HostPort: 18080}}
	if _, err := h.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: bad}); err == nil || !strings.Contains(err.Error(), "failpoint") {
		t.Errorf("RunPodSandbox with a failing CNI ADD: %v", err)
	}
	if out, _ := runOut("iptables-save", "-t", "nat"); strings.Contains(out, "18080") {
		t.Errorf("hostport rule left behind after rollback:\n%s", out)
	}
	if p, i := countPins(), countIPs(); p != pinsBefore || i != ipsBefore {
		t.Errorf("after failed pods: %d netns pins (was %d), %d IPs held (was %d)", p, pinsBefore, i, ipsBefore)
	}
	pods, err := h.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Metadata.Name == bad.Metadata.Name {
			t.Errorf("failed pod listed: %v", p)
		}
	}

	// A container whose command does not exist.
	pod := leakPodConfig(t)
	podID := runPod(t, pod, "")
	_, err = h.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod,
		Config: containerConfig("nocmd", "/does/not/exist")})
	if err == nil {
		// runc may defer the check to start; then start must fail and leave it exited.
		list, _ := h.rt.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID}})
		for _, c := range list.Containers {
			if _, err := h.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: c.Id}); err == nil {
				t.Error("start of a container without its command succeeded")
			}
		}
	} else {
		list, _ := h.rt.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID}})
		if len(list.Containers) != 0 {
			t.Errorf("failed container listed: %v", list.Containers)
		}
		entries, _ := os.ReadDir(filepath.Join(h.base, "state", "containers"))
		for _, e := range entries {
			if _, err := h.rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: e.Name()}); err != nil {
				t.Errorf("container dir %s left behind", e.Name())
			}
		}
	}
	// A container of an image that is not there.
	_, err = h.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "noimage"}, Image: &runtime.ImageSpec{Image: "registry.k8s.io/not-pulled:1"}}})
	if status.Code(err) != codes.NotFound {
		t.Errorf("create with missing image: %v, want NotFound", err)
	}
	// Failed pods and containers, and the pod once removed: nothing left.
	// The ADD the broken runtime's failure cancelled may have orphaned
	// its IPAM plugin, which crid's stray reaper takes up to a minute to
	// reap; the check returns as soon as nothing is left.
	if _, err := h.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	assertNoLeaksWithin(t, h, leaks, strayReapWait)
}

func TestValidation(t *testing.T) {
	ctx := ctxT(t)
	check := func(name string, err error, want codes.Code) {
		t.Helper()
		if status.Code(err) != want {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	_, err := h.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{})
	check("RunPodSandbox without config", err, codes.InvalidArgument)
	_, err = h.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "x"}}})
	check("RunPodSandbox without uid/namespace", err, codes.InvalidArgument)
	_, err = h.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podConfig(t), RuntimeHandler: "nope"})
	check("RunPodSandbox with unknown handler", err, codes.InvalidArgument)
	badPort := podConfig(t)
	badPort.PortMappings = []*runtime.PortMapping{{ContainerPort: 80, HostPort: 8080, HostIp: "not-an-ip"}}
	_, err = h.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: badPort})
	check("RunPodSandbox with a bad host IP", err, codes.InvalidArgument)
	_, err = h.rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: "0123456789abcdef"})
	check("PodSandboxStatus unknown", err, codes.NotFound)
	_, err = h.rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{})
	check("PodSandboxStatus empty id", err, codes.InvalidArgument)
	_, err = h.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: "0123456789abcdef"})
	check("StopPodSandbox unknown", err, codes.OK)
	_, err = h.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: "0123456789abcdef"})
	check("RemovePodSandbox unknown", err, codes.OK)
	_, err = h.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: "0123456789abcdef", Config: containerConfig("x", "true")})
	check("CreateContainer in unknown pod", err, codes.NotFound)
	_, err = h.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: "0123456789abcdef", Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "x"}}})
	check("CreateContainer without image", err, codes.InvalidArgument)
	_, err = h.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: "0123456789abcdef"})
	check("StartContainer unknown", err, codes.NotFound)
	_, err = h.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: "0123456789abcdef", Cmd: []string{"true"}})
	check("ExecSync unknown", err, codes.NotFound)
	_, err = h.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{}})
	check("PullImage empty", err, codes.InvalidArgument)
	_, err = h.img.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: "registry.k8s.io/never-pulled:1"}})
	check("RemoveImage missing", err, codes.OK)

	// Duplicate pod name.
	pull(t, busybox)
	pod := podConfig(t)
	podID := runPod(t, pod, "")
	_, err = h.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	check("RunPodSandbox duplicate name", err, codes.AlreadyExists)
	cfg := containerConfig("dup", "sleep", "100")
	createStart(t, podID, pod, cfg)
	_, err = h.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
	check("CreateContainer duplicate name", err, codes.AlreadyExists)
	// An image in use cannot be removed.
	_, err = h.img.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: busybox}})
	check("RemoveImage in use", err, codes.FailedPrecondition)
}

// TestSecondHandler runs a pod under a second runtime handler (a RuntimeClass).
// crun would be the natural second handler, but Debian 12's crun 1.8.1
// refuses this machine's hybrid cgroup layout, so a second runc handler with
// its own state root stands in.
func TestSecondHandler(t *testing.T) {
	pull(t, busybox)
	pod := podConfig(t)
	podID := runPod(t, pod, "runc-b")
	id := createStart(t, podID, pod, containerConfig("c", "sleep", "100"))
	// runc-b has direct_exec = false: this exec runs `runc exec`.
	if r := execSync(t, id, 10, "sh", "-c", "echo second; exit 3"); string(r.Stdout) != "second\n" || r.ExitCode != 3 {
		t.Errorf("exec under runc-b: %q, exit %d", r.Stdout, r.ExitCode)
	}
	if out, _ := runOut("runc", "--root", filepath.Join(h.base, "state", "runtime", "runc-b"), "list", "-q"); !strings.Contains(out, id) || !strings.Contains(out, podID) {
		t.Errorf("pod not run by handler runc-b: %q", out)
	}
	ps, err := h.rt.PodSandboxStatus(ctxT(t), &runtime.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil || ps.Status.RuntimeHandler != "runc-b" {
		t.Errorf("status runtime handler = %v, %v", ps.GetStatus().GetRuntimeHandler(), err)
	}
}

// TestRestartSweepsUnrecordedNetNS plays a crash while a pod's network
// namespace was being pinned beside its first record (RunPodSandbox does
// both at once): the pin exists, mounted or still an empty placeholder,
// but no record names it. The restart removes such pins and keeps the pin
// of every recorded pod.
func TestRestartSweepsUnrecordedNetNS(t *testing.T) {
	pull(t, busybox)
	pod := podConfig(t)
	podID := runPod(t, pod, "")
	pins := filepath.Join(h.base, "state", "netns")
	mounted, placeholder := filepath.Join(pins, randHex(32)), filepath.Join(pins, randHex(32))
	for _, p := range []string{mounted, placeholder} {
		if err := os.WriteFile(p, nil, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	holder := exec.Command("unshare", "--net", "sleep", "60")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Process.Kill(); _ = holder.Wait() }()
	// unshare execs sleep once the namespace is made: wait for that.
	self, _ := os.Readlink("/proc/self/ns/net")
	deadline := time.Now().Add(5 * time.Second)
	for {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid))
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", holder.Process.Pid))
		if err == nil && ns != self && strings.HasSuffix(exe, "sleep") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unshare did not make a network namespace (%s, %v)", ns, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if out, err := exec.Command("mount", "--bind", fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid), mounted).CombinedOutput(); err != nil {
		t.Fatalf("pin a namespace: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = unix.Unmount(mounted, unix.MNT_DETACH); _ = os.Remove(mounted) })

	h.stop(syscall.SIGKILL)
	if err := h.start(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{mounted, placeholder} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("unrecorded pin %s after the restart: %v, want it removed", filepath.Base(p), err)
		}
	}
	if log := h.logTail(); !strings.Contains(log, "removed a network namespace pin no pod records") {
		t.Errorf("crid's log does not say it removed the pins:\n%s", log)
	}
	ps, err := h.rt.PodSandboxStatus(ctxT(t), &runtime.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil || ps.Status.State != runtime.PodSandboxState_SANDBOX_READY {
		t.Fatalf("recorded pod after the restart: %v %v", ps, err)
	}
	if !network.IsNSMount(filepath.Join(pins, podID)) {
		t.Errorf("the recorded pod's netns pin is not a mounted namespace after the restart")
	}
}
