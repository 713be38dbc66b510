package e2e

// NRI (issue 14, docs/nri.md): a real plugin (./nriplugin, built with NRI's
// stub) connects to a crid of its own with [nri] enabled, adjusts the
// containers it creates and records the events it gets. A plugin that
// hangs in CreateContainer is disconnected after plugin_request_timeout:
// the create goes on without it by default, and fails, leaving nothing
// behind, with fail_on_plugin_error.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const nriRequestTimeout = 2 * time.Second

// nriCrid is a private crid with NRI on and the plugin binary.
type nriCrid struct {
	*harness
	socket string // NRI socket
	plugin string // nriplugin binary
}

// startNRICrid starts a second crid with NRI listening under its base.
func startNRICrid(t *testing.T) *nriCrid {
	t.Helper()
	c := &nriCrid{}
	c.harness = secondHarness(t, "nri")
	c.socket = filepath.Join(c.base, "nri", "nri.sock")
	c.plugin = filepath.Join(c.base, "nriplugin")
	if err := buildHelper("./nriplugin", c.plugin); err != nil {
		t.Fatalf("build nriplugin: %v", err)
	}
	c.configure(t, false, "")
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	return c
}

// configure writes the crid config; failOnPluginError sets
// [nri] fail_on_plugin_error, pluginPath [nri] plugin_path.
func (c *nriCrid) configure(t *testing.T, failOnPluginError bool, pluginPath string) {
	t.Helper()
	cfg := fmt.Sprintf(`root = %q
state = %q
socket = %q
log_level = "debug"
%s
[runtime.handlers.runc]
path = "/usr/local/sbin/runc"
[network]
conf_dir = %q
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin", %q]
[runtime]
cdi_spec_dirs = [%q]
[nri]
enable = true
socket_path = %q
plugin_path = %q
plugin_request_timeout = %q
fail_on_plugin_error = %v
`, filepath.Join(c.base, "root"), filepath.Join(c.base, "state"), c.harness.socket, mirrorsTOML(h.registry),
		filepath.Join(h.base, "cni"), filepath.Join(h.base, "cnibin"), filepath.Join(c.base, "cdi"), c.socket, pluginPath, nriRequestTimeout.String(), failOnPluginError)
	if err := os.WriteFile(c.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// nriPlugin is a running nriplugin process.
type nriPlugin struct {
	cmd    *exec.Cmd
	events string
}

// startPlugin runs the plugin with args and waits until crid has
// synchronized it.
func (c *nriCrid) startPlugin(t *testing.T, name, idx string, args ...string) *nriPlugin {
	t.Helper()
	p := &nriPlugin{events: filepath.Join(c.base, "events-"+name+"-"+randHex(2))}
	before := strings.Count(readFile(c.logPath), fmt.Sprintf(`plugin \"%s-%s\" connected and synchronized`, idx, name))
	p.cmd = exec.Command(c.plugin, append([]string{"-socket", c.socket, "-name", name, "-idx", idx, "-events", p.events}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = os.Stderr, os.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(readFile(c.logPath), fmt.Sprintf(`plugin \"%s-%s\" connected and synchronized`, idx, name)) == before {
		if time.Now().After(deadline) {
			t.Fatalf("plugin %s did not register; crid log:\n%s", name, c.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// lines are the events the plugin recorded.
func (p *nriPlugin) lines() []string {
	return strings.Split(strings.TrimSpace(readFile(p.events)), "\n")
}

// waitEvent waits until the plugin recorded ev.
func (p *nriPlugin) waitEvent(t *testing.T, ev string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(p.lines(), ev) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin did not record %q; it has %q", ev, p.lines())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *nriCrid) exec(t *testing.T, id, script string) string {
	t.Helper()
	r, err := c.rt.ExecSync(ctxT(t), &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", script}, Timeout: 20})
	if err != nil {
		t.Fatalf("ExecSync %q: %v", script, err)
	}
	if r.ExitCode != 0 {
		t.Fatalf("%q: exit %d: %s", script, r.ExitCode, r.Stderr)
	}
	return strings.TrimSpace(string(r.Stdout))
}

func (c *nriCrid) runPod(t *testing.T, name string) (string, *runtime.PodSandboxConfig) {
	t.Helper()
	pod := &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: randHex(8)},
		Linux:    &runtime.LinuxPodSandboxConfig{CgroupParent: "/crid-e2e"},
	}
	resp, err := c.rt.RunPodSandbox(ctxT(t), &runtime.RunPodSandboxRequest{Config: pod})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\ncrid log:\n%s", err, c.logTail())
	}
	return resp.PodSandboxId, pod
}

func (c *nriCrid) create(ctx context.Context, podID string, pod *runtime.PodSandboxConfig, name string) (string, error) {
	cfg := &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: name},
		Image:    &runtime.ImageSpec{Image: busybox},
		Command:  []string{"sleep", "1000"},
	}
	r, err := c.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
	if err != nil {
		return "", err
	}
	return r.ContainerId, nil
}

func TestNRIPluginAdjustsAndSeesEvents(t *testing.T) {
	c := startNRICrid(t)
	ctx := ctxT(t)
	if _, err := c.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(c.base, "nri-data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "hello"), []byte("from-nri\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A CDI device the plugin adds, resolved from crid's CDI spec dirs.
	cdiDir := filepath.Join(c.base, "cdi")
	if err := os.MkdirAll(cdiDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cdiSpec := `{"cdiVersion": "0.6.0", "kind": "e2e.crid.dev/nri", "devices": [{"name": "dev", "containerEdits": {"env": ["CDI_NRI=yes"]}}]}`
	if err := os.WriteFile(filepath.Join(cdiDir, "nri.json"), []byte(cdiSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	const pluginMem = 96 << 20
	adjust := []string{"-prefix", "nri-e2e", "-env", "NRI_E2E=adjusted", "-mount", data + ":/nri-data",
		"-update-mem", fmt.Sprint(pluginMem), "-cdi", "e2e.crid.dev/nri=dev"}
	p := c.startPlugin(t, "e2e", "10", adjust...)

	podID, pod := c.runPod(t, "nri-e2e-pod")
	id, err := c.create(ctx, podID, pod, "nri-e2e-ctr")
	if err != nil {
		t.Fatalf("CreateContainer: %v\ncrid log:\n%s", err, c.logTail())
	}
	if _, err := c.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if got := c.exec(t, id, "echo $NRI_E2E; cat /nri-data/hello; echo $CDI_NRI"); got != "adjusted\nfrom-nri\nyes" {
		t.Errorf("container sees %q, want the plugin's env var, mount and CDI device's env", got)
	}
	// The adjusted spec is the one in the bundle: it outlives crid.
	var spec specs.Spec
	if err := json.Unmarshal([]byte(readFile(filepath.Join(c.base, "state", "containers", id, "config.json"))), &spec); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(spec.Process.Env, "NRI_E2E=adjusted") {
		t.Errorf("config.json env %q lacks the adjustment", spec.Process.Env)
	}

	p.waitEvent(t, "PostStartContainer nri-e2e-ctr")
	if got, want := p.lines(), []string{
		"RunPodSandbox nri-e2e-pod", "CreateContainer nri-e2e-ctr", "PostCreateContainer nri-e2e-ctr",
		"StartContainer nri-e2e-ctr", "PostStartContainer nri-e2e-ctr",
	}; !slices.Equal(got, want) {
		t.Errorf("plugin saw\n%q\nwant\n%q", got, want)
	}

	// After a restart the plugin reconnects and is synchronized with the
	// running container (in the test body: the plugin must outlive it).
	c.stop(syscall.SIGTERM)
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	p2 := c.startPlugin(t, "e2e", "10", adjust...)
	p2.waitEvent(t, "Synchronize pod nri-e2e-pod")
	p2.waitEvent(t, "Synchronize container nri-e2e-ctr CONTAINER_RUNNING")
	if got := c.exec(t, id, "echo $NRI_E2E"); got != "adjusted" {
		t.Errorf("after restart the container sees NRI_E2E=%q", got)
	}
	p = p2

	t.Run("update", func(t *testing.T) {
		// The plugin replaces the memory limit kubelet asks for; the rest
		// of the request (CPU shares) still applies.
		ctx := ctxT(t)
		if _, err := c.rt.UpdateContainerResources(ctx, &runtime.UpdateContainerResourcesRequest{
			ContainerId: id, Linux: &runtime.LinuxContainerResources{MemoryLimitInBytes: 200 << 20, CpuShares: 300},
		}); err != nil {
			t.Fatalf("UpdateContainerResources: %v\ncrid log:\n%s", err, c.logTail())
		}
		if got := c.exec(t, id, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"); got != fmt.Sprint(pluginMem) {
			t.Errorf("memory limit %s, want the plugin's %d", got, pluginMem)
		}
		// cgroup v2: cpu.weight 12 from the linear conversion of 300 shares
		// older runc uses (Debian's 1.1.5), 39 from the quadratic one of
		// the pinned v1.5.3.
		if got := c.exec(t, id, "cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || cat /sys/fs/cgroup/cpu.weight"); got != "300" && got != "12" && got != "39" {
			t.Errorf("cpu shares/weight %s, want the requested 300 shares", got)
		}
		p.waitEvent(t, "PostUpdateContainer nri-e2e-ctr")
		if !slices.Contains(p.lines(), "UpdateContainer nri-e2e-ctr") {
			t.Errorf("plugin saw no UpdateContainer: %q", p.lines())
		}
	})

	t.Run("events in order", func(t *testing.T) {
		ctx := ctxT(t)
		id2, err := c.create(ctx, podID, pod, "nri-e2e-second")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id2}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id2}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id2}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatal(err)
		}
		p.waitEvent(t, "RemovePodSandbox nri-e2e-pod")
		var got []string
		for _, l := range p.lines() {
			if strings.HasSuffix(l, " nri-e2e-second") || strings.HasSuffix(l, "PodSandbox nri-e2e-pod") {
				got = append(got, l)
			}
		}
		want := []string{
			"CreateContainer nri-e2e-second", "PostCreateContainer nri-e2e-second",
			"StartContainer nri-e2e-second", "PostStartContainer nri-e2e-second",
			"StopContainer nri-e2e-second", "RemoveContainer nri-e2e-second",
			"StopPodSandbox nri-e2e-pod", "RemovePodSandbox nri-e2e-pod",
		}
		if !slices.Equal(got, want) {
			t.Errorf("plugin saw\n%q\nwant\n%q", got, want)
		}
		// The first container was stopped with its pod.
		if !slices.Contains(p.lines(), "StopContainer nri-e2e-ctr") {
			t.Errorf("no StopContainer for the container stopped with its pod: %q", p.lines())
		}
	})
}

func TestNRIHungPlugin(t *testing.T) {
	c := startNRICrid(t)
	ctx := ctxT(t)
	if _, err := c.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}); err != nil {
		t.Fatal(err)
	}
	good := c.startPlugin(t, "good", "10", "-prefix", "nri-hang", "-env", "NRI_E2E=good")

	t.Run("skipped by default", func(t *testing.T) {
		c.startPlugin(t, "hang", "20", "-prefix", "nri-hang", "-hang")
		podID, pod := c.runPod(t, "nri-hang-skip")
		start := time.Now()
		id, err := c.create(ctx, podID, pod, "nri-hang-skip-ctr")
		took := time.Since(start)
		if err != nil {
			t.Fatalf("CreateContainer with a hung plugin, which should be skipped: %v", err)
		}
		if took < nriRequestTimeout || took > nriRequestTimeout+10*time.Second {
			t.Errorf("CreateContainer took %v, want about the request timeout %v", took, nriRequestTimeout)
		}
		if _, err := c.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
		if got := c.exec(t, id, "echo $NRI_E2E"); got != "good" {
			t.Errorf("the good plugin's adjustment is missing: NRI_E2E=%q", got)
		}
		// No plugin changes this update (NRI then answers with no update
		// for it): it applies as asked.
		if _, err := c.rt.UpdateContainerResources(ctx, &runtime.UpdateContainerResourcesRequest{
			ContainerId: id, Linux: &runtime.LinuxContainerResources{CpuShares: 512},
		}); err != nil {
			t.Errorf("UpdateContainerResources no plugin changes: %v", err)
		} else if got := c.exec(t, id, "cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || echo 512"); got != "512" {
			t.Errorf("cpu.shares %s after the update, want 512", got)
		}
		if !strings.Contains(readFile(c.logPath), `closing plugin 20-hang`) {
			t.Errorf("crid did not log that it dropped the hung plugin; log:\n%s", c.logTail())
		}
	})

	t.Run("fails with fail_on_plugin_error", func(t *testing.T) {
		c.stop(syscall.SIGTERM)
		c.configure(t, true, "")
		if err := c.start(); err != nil {
			t.Fatal(err)
		}
		good = c.startPlugin(t, "good", "10", "-prefix", "nri-hang", "-env", "NRI_E2E=good")
		c.startPlugin(t, "hang", "20", "-prefix", "nri-hang", "-hang")
		podID, pod := c.runPod(t, "nri-hang-fail")
		dirs := func() []string {
			var out []string
			for _, d := range []string{filepath.Join(c.base, "root", "containers"), filepath.Join(c.base, "state", "containers")} {
				es, _ := os.ReadDir(d)
				for _, e := range es {
					out = append(out, filepath.Join(d, e.Name()))
				}
			}
			return out
		}
		before := dirs()
		start := time.Now()
		_, err := c.create(ctx, podID, pod, "nri-hang-fail-ctr")
		took := time.Since(start)
		if err == nil {
			t.Fatal("CreateContainer succeeded with a hung plugin and fail_on_plugin_error")
		}
		if took > nriRequestTimeout+10*time.Second {
			t.Errorf("CreateContainer failed only after %v", took)
		}
		if !strings.Contains(err.Error(), "20-hang") {
			t.Errorf("error %q does not name the plugin", err)
		}
		list, lerr := c.rt.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID}})
		if lerr != nil {
			t.Fatal(lerr)
		}
		if len(list.Containers) != 0 {
			t.Errorf("failed create left containers: %v", list.Containers)
		}
		if after := dirs(); !slices.Equal(before, after) {
			t.Errorf("failed create left directories: before %q after %q", before, after)
		}
		// The plugin that adjusted the container hears that it is gone.
		good.waitEvent(t, "RemoveContainer nri-hang-fail-ctr")
		// The name is free again: a retry with the plugin gone works.
		id, err := c.create(ctx, podID, pod, "nri-hang-fail-ctr")
		if err != nil {
			t.Fatalf("retry after the hung plugin was dropped: %v", err)
		}
		if _, err := c.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestNRIPluginFromPluginPath: crid starts the plugins in plugin_path
// itself, handing each its connection; such a plugin's unsolicited
// container update is applied.
func TestNRIPluginFromPluginPath(t *testing.T) {
	c := startNRICrid(t)
	ctx := ctxT(t)
	if _, err := c.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(c.base, "plugins")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	events := filepath.Join(c.base, "events-launched")
	const unsolicitedMem = 80 << 20
	script := fmt.Sprintf("#!/bin/sh\nexec %s -events %s -prefix nri-launched -env NRI_LAUNCHED=yes -unsolicited-mem %d\n",
		c.plugin, events, unsolicitedMem)
	if err := os.WriteFile(filepath.Join(dir, "30-launched"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c.stop(syscall.SIGTERM)
	c.configure(t, false, dir)
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	podID, pod := c.runPod(t, "nri-launched-pod")
	id, err := c.create(ctx, podID, pod, "nri-launched-ctr")
	if err != nil {
		t.Fatalf("CreateContainer: %v\ncrid log:\n%s", err, c.logTail())
	}
	if _, err := c.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if got := c.exec(t, id, "echo $NRI_LAUNCHED"); got != "yes" {
		t.Errorf("NRI_LAUNCHED=%q: the plugin crid started did not adjust the container", got)
	}
	// The plugin sets a memory limit on its own after the start.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := c.exec(t, id, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max")
		if got == fmt.Sprint(unsolicitedMem) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("memory limit %s, want %d from the plugin's unsolicited update; crid log:\n%s", got, unsolicitedMem, c.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	p := &nriPlugin{events: events}
	p.waitEvent(t, "RunPodSandbox nri-launched-pod")
	p.waitEvent(t, "CreateContainer nri-launched-ctr")
	// A pod resize reaches the plugin before and after it is recorded.
	if _, err := c.rt.UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{
		PodSandboxId: podID, Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: 300 << 20},
	}); err != nil {
		t.Fatalf("UpdatePodSandboxResources: %v", err)
	}
	p.waitEvent(t, fmt.Sprintf("UpdatePodSandbox nri-launched-pod memory %d", 300<<20))
	p.waitEvent(t, "PostUpdatePodSandbox nri-launched-pod")
	// crid stops the plugins it started when it stops.
	pid := strings.TrimSpace(readFile(events + ".pid"))
	if _, err := os.Stat("/proc/" + pid); pid == "" || err != nil {
		t.Fatalf("launched plugin pid %q not running: %v", pid, err)
	}
	c.stop(syscall.SIGTERM)
	deadline = time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat("/proc/" + pid); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin %s crid started still runs after crid stopped", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNRIStartHookBeforeExec checks what StartContainer and exec do while
// runc runs a startContainer hook, between the init's release and its
// execve: StartContainer answers at the release (as `runc start` does)
// without waiting for the hook, and an exec sent then waits until the
// container's process runs rather than meeting `runc init`. The hook here
// (added by the NRI plugin) waits on a FIFO the test opens.
func TestNRIStartHookBeforeExec(t *testing.T) {
	c := startNRICrid(t)
	ctx := ctxT(t)
	if _, err := c.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(c.base, "hook-gate")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	gate := filepath.Join(data, "gate")
	if err := syscall.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	c.startPlugin(t, "hook", "10", "-prefix", "nri-hook", "-mount", data+":/gate", "-start-hook", "read x < /gate/gate")
	podID, pod := c.runPod(t, "nri-hook-pod")
	cfg := &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "nri-hook-ctr"},
		Image:    &runtime.ImageSpec{Image: busybox},
		Command:  []string{"sleep", "1000"},
		Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER},
		}},
	}
	cr, err := c.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
	if err != nil {
		t.Fatalf("CreateContainer: %v\ncrid log:\n%s", err, c.logTail())
	}
	// The hook holds the init until the gate opens, so StartContainer
	// must answer with the gate shut.
	if _, err := c.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v\ncrid log:\n%s", err, c.logTail())
	}
	got := make(chan string, 1)
	go func() {
		r, err := c.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: cr.ContainerId, Cmd: []string{"sh", "-c", `tr '\0' ' ' < /proc/1/cmdline`}, Timeout: 20})
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- strings.TrimSpace(string(r.Stdout))
	}()
	select {
	case s := <-got:
		t.Fatalf("exec answered %q while the startContainer hook still held the init", s)
	case <-time.After(300 * time.Millisecond):
	}
	// Opening the write side lets the hook's read finish.
	if err := os.WriteFile(gate, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "sleep 1000" {
		t.Errorf("the exec sent during the hook saw pid 1 run %q, want the container's process, sleep 1000", s)
	}
}
