package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crid-dev/crid/test/e2e/leakcheck"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/tools/remotecommand"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// faultPoints are the named steps crid's core offers to internal/fault,
// in the order a pod's life reaches them.
var faultPoints = []string{
	"RunPodSandbox/recorded", "RunPodSandbox/netns", "RunPodSandbox/files", "RunPodSandbox/network", "RunPodSandbox/before-ready",
	"CreateContainer/recorded", "CreateContainer/rootfs", "CreateContainer/spec", "CreateContainer/runtime-created",
	"StartContainer/before-start", "StartContainer/started",
	"StopContainer/before-kill",
	"RemoveContainer/runtime-deleted", "RemoveContainer/rootfs-released", "RemoveContainer/files-removed",
	"StopPodSandbox/containers-stopped", "StopPodSandbox/pause-stopped", "StopPodSandbox/network-removed",
	"RemovePodSandbox/containers-removed", "RemovePodSandbox/rootfs-released", "RemovePodSandbox/files-removed",
}

var (
	faultBinOnce sync.Once
	faultBinDir  string
	faultBinErr  error
)

// faultBin builds crid with the faultinject tag once, next to links to the
// run's crid-monitor and crid-nsexec (crid finds them beside itself).
func faultBin(t *testing.T) string {
	t.Helper()
	faultBinOnce.Do(func() {
		dir := filepath.Join(h.base, "faultbin")
		if err := buildFaultCrid(filepath.Join(dir, "crid")); err != nil {
			faultBinErr = err
			return
		}
		for _, b := range []string{"crid-monitor", "crid-nsexec"} {
			if _, err := os.Stat(filepath.Join(h.binDir, b)); err != nil {
				continue // crid-nsexec is optional
			}
			if err := os.Symlink(filepath.Join(h.binDir, b), filepath.Join(dir, b)); err != nil {
				faultBinErr = err
				return
			}
		}
		faultBinDir = dir
	})
	if faultBinErr != nil {
		t.Fatal(faultBinErr)
	}
	return faultBinDir
}

// buildFaultCrid builds crid with the faultinject tag at out, or copies
// the one in $CRID_E2E_PREBUILT (crid-e2e-crid-faultinject) on a node
// without Go (test/vm/e2e.sh builds it).
func buildFaultCrid(out string) error {
	if pre := os.Getenv("CRID_E2E_PREBUILT"); pre != "" {
		b, err := os.ReadFile(filepath.Join(pre, "crid-e2e-crid-faultinject"))
		if err != nil {
			return fmt.Errorf("prebuilt crid with faultinject: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o755)
	}
	cmd := exec.Command("go", "build", "-tags", "faultinject", "-o", out, "../../cmd/crid")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build crid with faultinject: %v\n%s", err, b)
	}
	return nil
}

// startFaultLife starts c, pulls busybox, takes the leak checker's
// baseline and returns a pod's life to drive on c, logging under c.
func startFaultLife(t *testing.T, c *harness) (*podLife, leakcheck.Snapshot) {
	t.Helper()
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.img.PullImage(ctxT(t), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}); err != nil {
		t.Fatalf("PullImage: %v", err)
	}
	before, err := leakcheck.Take(ctxT(t), c.leakTarget())
	if err != nil {
		t.Fatal(err)
	}
	l := &podLife{c: c, pod: leakPodConfig(t)}
	l.pod.LogDirectory = filepath.Join(c.base, "logs")
	return l, before
}

// faultCrid is a crid of its own, built with fault injection, on the
// run's registry and CNI network.
func faultCrid(t *testing.T) *harness {
	t.Helper()
	return faultCridWith(t, faultOpts{})
}

// faultOpts are what boundary fault tests change in a fault crid's config.
type faultOpts struct {
	// runtime and monitor, if set, are the faultwrap links crid runs as
	// the runc handler's binary and as crid-monitor.
	runtime, monitor string
	// registry replaces the run's registry as the mirror of the images.
	registry string
	// more is added to the config's [runtime], [network] and [images].
	runtimeTOML, networkTOML, imagesTOML string
}

func faultCridWith(t *testing.T, o faultOpts) *harness {
	t.Helper()
	c := secondHarness(t, "fault")
	c.binDir = faultBin(t)
	runcPath, registry := "/usr/local/sbin/runc", h.registry
	if o.runtime != "" {
		runcPath = o.runtime
	}
	if o.registry != "" {
		registry = o.registry
	}
	rtTOML := o.runtimeTOML
	if o.monitor != "" {
		rtTOML += fmt.Sprintf("monitor_path = %q\n", o.monitor)
	}
	cfg := fmt.Sprintf(`root = %q
state = %q
socket = %q
log_level = "debug"
[images]
sandbox_image = "registry.k8s.io/pause:3.10"
%s%s
[runtime]
%s
[runtime.handlers.runc]
path = %q
[network]
conf_dir = %q
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin", %q]
%s`, filepath.Join(c.base, "root"), filepath.Join(c.base, "state"), c.socket, o.imagesTOML, mirrorsTOML(registry),
		rtTOML, runcPath, filepath.Join(h.base, "cni"), filepath.Join(h.base, "cnibin"), o.networkTOML)
	if err := os.WriteFile(c.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

// podLife is one pod's life as kubelet drives it: each step is retried
// after a failure, as kubelet's sync loop would.
type podLife struct {
	c     *harness
	pod   *runtime.PodSandboxConfig
	podID string
	ctrID string
	// container, if set, edits each container's config before its create;
	// execCmd, if set, is the terminal exec's command (it must print
	// tty-exec-ok).
	container func(*runtime.ContainerConfig)
	execCmd   []string
}

// step runs the lifecycle step named op. It returns the RPC's error.
func (l *podLife) step(ctx context.Context, op string) error {
	rt := l.c.rt
	switch op {
	case "RunPodSandbox":
		r, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: l.pod})
		if err != nil {
			return err
		}
		l.podID = r.PodSandboxId
	case "CreateContainer":
		cfg := containerConfig("main", "sleep", "3600")
		if l.container != nil {
			l.container(cfg)
		}
		r, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: l.podID, Config: cfg, SandboxConfig: l.pod})
		if err != nil {
			return err
		}
		l.ctrID = r.ContainerId
	case "StartContainer":
		_, err := rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: l.ctrID})
		return err
	case "StopContainer":
		_, err := rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: l.ctrID})
		return err
	case "RemoveContainer":
		_, err := rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: l.ctrID})
		return err
	case "StopPodSandbox":
		_, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: l.podID})
		return err
	case "RemovePodSandbox":
		_, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: l.podID})
		return err
	case "UpdateContainerResources":
		_, err := rt.UpdateContainerResources(ctx, &runtime.UpdateContainerResourcesRequest{ContainerId: l.ctrID,
			Linux: &runtime.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 256 << 20}})
		return err
	case "ExecTTY":
		return l.execTTY(ctx)
	default:
		return fmt.Errorf("unknown step %s", op)
	}
	return nil
}

// execTTY runs a terminal exec in the container over the streaming server
// (SPDY, as kubelet's API server proxies it): crid runs `runc exec --tty`
// for it, not crid-nsexec. The client going away at ctx's end is
// DeadlineExceeded, as a gRPC call's would be; the stream's own failure
// carries crid's message.
func (l *podLife) execTTY(ctx context.Context) error {
	cmd := []string{"echo", "tty-exec-ok"}
	if l.execCmd != nil {
		cmd = l.execCmd
	}
	r, err := l.c.rt.Exec(ctx, &runtime.ExecRequest{ContainerId: l.ctrID, Cmd: cmd, Stdout: true, Tty: true})
	if err != nil {
		return err
	}
	e, err := newExecutor("spdy", r.Url)
	if err != nil {
		return err
	}
	var out syncBuffer
	err = e.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Tty: true})
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	if err != nil {
		return fmt.Errorf("tty exec: %w", err)
	}
	if !strings.Contains(out.String(), "tty-exec-ok") {
		return fmt.Errorf("tty exec printed %q, want tty-exec-ok", out.String())
	}
	return nil
}

var lifeSteps = []string{"RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"}

// TestCrashAtEveryStep kills crid (SIGKILL, from inside, as a crash) at
// each named step of a pod's life, restarts it, lets kubelet-style retries
// finish the life, and then checks that nothing is left: no record, mount,
// netns, IP, runc container, monitor, cgroup or file. The same with an
// injected error at each step (the RPC answers Unavailable naming the
// step; a retry succeeds; nothing is left either), and with each step
// slower than the caller's deadline (DeadlineExceeded; the repeated
// request converges).
func TestCrashAtEveryStep(t *testing.T) {
	// CI runs the slow steps at one point of each operation;
	// CRID_E2E_FAULTS_FULL=1 runs them at every point (docs/faults.md).
	slowPoints := map[string]bool{}
	for _, p := range []string{"RunPodSandbox/network", "CreateContainer/spec", "StartContainer/before-start",
		"StopContainer/before-kill", "RemoveContainer/rootfs-released", "StopPodSandbox/network-removed", "RemovePodSandbox/files-removed"} {
		slowPoints[p] = true
	}
	full := os.Getenv("CRID_E2E_FAULTS_FULL") != ""
	for _, action := range []string{"kill", "error:1", "sleep:2s", "hang:1"} {
		for _, point := range faultPoints {
			if action == "sleep:2s" && !full && !slowPoints[point] {
				continue
			}
			// CI hangs one step; the full matrix every one, the create
			// points too (endHungCreate).
			op := strings.SplitN(point, "/", 2)[0]
			if action == "hang:1" && !full && point != "StopContainer/before-kill" {
				continue
			}
			createHang := action == "hang:1" && (op == "RunPodSandbox" || op == "CreateContainer")
			t.Run(strings.SplitN(action, ":", 2)[0]+"/"+point, func(t *testing.T) {
				c := faultCrid(t)
				c.env = []string{"CRID_FAULTS=" + point + "=" + action}
				l, before := startFaultLife(t, c)
				for _, s := range lifeSteps {
					deadline := time.Minute
					if s == op && (strings.HasPrefix(action, "sleep") || strings.HasPrefix(action, "hang")) {
						deadline = time.Second // kubelet's deadline passes during the slow step
					}
					ctx, cancel := context.WithTimeout(context.Background(), deadline)
					err := l.step(ctx, s)
					cancel()
					if s != op {
						if err != nil {
							t.Fatalf("%s before the fault: %v\n%s", s, err, c.logTail())
						}
						continue
					}
					if err == nil {
						t.Fatalf("%s succeeded through the fault at %s", s, point)
					}
					checkFaultError(t, c, action, point, err)
					if action == "kill" {
						// The crid that crashed is gone; a plain one takes over.
						c.stop(syscall.SIGKILL)
						c.env = nil
						if err := c.start(); err != nil {
							t.Fatal(err)
						}
					}
					if createHang {
						endHungCreate(t, l, s)
					}
					l.retry(t, s)
				}
				checkNothingLeft(t, c, before)
			})
		}
	}
}

// endHungCreate ends a create (op) hung at an internal point. It runs
// under crid's lifetime, not its caller's (core/pending.go), so it would
// hang for its 4-minute bound: kubelet's repeat waits for it and times out
// too, while crid answers other calls. What ends it sooner is crid's stop:
// its lifetime ends, the hung step returns, and the create rolls back.
// The test stops crid so (SIGTERM) and starts it without the fault.
func endHungCreate(t *testing.T, l *podLife, op string) {
	t.Helper()
	timesOut(t, "kubelet's repeat of "+op+" while the first attempt hangs", func(ctx context.Context) error { return l.step(ctx, op) })
	checkAnswering(t, l, op)
	proc := l.c.crid.Process
	l.c.stop(syscall.SIGTERM)
	if proc.Signal(syscall.Signal(0)) == nil {
		t.Fatalf("crid still runs 10s after SIGTERM with %s hung:\n%s", op, l.c.logTail())
	}
	l.c.env = nil
	if err := l.c.start(); err != nil {
		t.Fatal(err)
	}
}

// checkFaultError checks what the caller saw: a crash is a broken
// connection (Unavailable); an injected error is Unavailable and names
// the point.
func checkFaultError(t *testing.T, c *harness, action, point string, err error) {
	t.Helper()
	if strings.HasPrefix(action, "sleep") || strings.HasPrefix(action, "hang") {
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("slow or hung step %s = %v, want DeadlineExceeded", point, err)
		}
		return
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("error at %s = %v, want Unavailable", point, err)
	}
	if action != "kill" && !strings.Contains(err.Error(), "fault injected at "+point) {
		t.Errorf("error at %s does not name the step: %v", point, err)
	}
	if action == "kill" && c.crid != nil {
		// The process must be gone: give the wait goroutine a moment.
		deadline := time.Now().Add(5 * time.Second)
		for c.crid.Process.Signal(syscall.Signal(0)) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("crid still runs after the kill at %s", point)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// retry repeats a failed step as kubelet would until it succeeds. A pod
// or container whose creation failed is created anew; a stop or remove is
// repeated (they are idempotent).
func (l *podLife) retry(t *testing.T, op string) {
	t.Helper()
	var err error
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		// kubelet repeats the request first: a slow step that outlived the
		// caller's deadline hands its result to the repeat.
		err = l.step(ctx, op)
		if err != nil {
			switch op {
			case "RunPodSandbox":
				// kubelet removes what it no longer wants (a pod that
				// failed to start and is still listed), then makes it anew.
				if err = l.removeStrayPods(ctx); err == nil {
					err = l.step(ctx, op)
				}
			case "CreateContainer":
				if err = l.removeStrayContainers(ctx); err == nil {
					err = l.step(ctx, op)
				}
			case "StartContainer":
				// A container whose start failed is replaced by a new one.
				_, _ = l.c.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: l.ctrID})
				if err = l.step(ctx, "CreateContainer"); err == nil {
					err = l.step(ctx, op)
				}
			}
		}
		cancel()
		if err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("retry of %s after the fault: %v\n%s", op, err, l.c.logTail())
}

func (l *podLife) removeStrayPods(ctx context.Context) error {
	pods, err := l.c.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		if _, err := l.c.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			return err
		}
	}
	return nil
}

func (l *podLife) removeStrayContainers(ctx context.Context) error {
	cs, err := l.c.rt.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: l.podID}})
	if err != nil {
		return err
	}
	for _, x := range cs.Containers {
		if _, err := l.c.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: x.Id}); err != nil {
			return err
		}
	}
	return nil
}

// checkNothingLeft checks, with crid restarted once more (recovery must
// not bring anything back), that the pod's life left nothing behind
// (leakcheck: records, mounts, pins, IPs, veths, iptables rules, runtime
// state, cgroups, processes, zombies, object dirs, image leftovers, fds
// and goroutines) compared with before, a freshly started crid too.
func checkNothingLeft(t *testing.T, c *harness, before leakcheck.Snapshot) {
	t.Helper()
	c.stop(syscall.SIGTERM)
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	leaks, err := leakcheck.Check(ctxT(t), c.leakTarget(), before, restartSlack, leakWait)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaks) > 0 {
		t.Errorf("left behind:\n  %s\ncrid log:\n%s", strings.Join(leaks, "\n  "), c.logTail())
	}
}

// restartSlack compares two freshly started crids: their fds and
// goroutines differ by what each happened to have started (a collector
// tick, the client's connection), not by what they hold for pods.
var restartSlack = leakcheck.Slack{FDs: 8, Goroutines: 20}

// TestPullFaults kills crid (and, separately, fails the pull) once the
// layers are downloaded and once they are unpacked but not recorded: the
// image is never listed half-made, a repeated pull succeeds, and after the
// image is removed and crid restarted nothing of it is left (leakcheck:
// image-orphan and image-tmp include every blob and snapshot no listed
// image uses).
func TestPullFaults(t *testing.T) {
	for _, action := range []string{"kill", "error:1"} {
		for _, point := range []string{"PullImage/downloaded", "PullImage/unpacked"} {
			t.Run(strings.SplitN(action, ":", 2)[0]+"/"+point, func(t *testing.T) {
				c := faultCrid(t)
				c.env = []string{"CRID_FAULTS=" + point + "=" + action}
				before := startBaseline(t, c)
				req := &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}
				_, err := c.img.PullImage(ctxT(t), req)
				if err == nil {
					t.Fatalf("PullImage succeeded through the fault at %s", point)
				}
				checkFaultError(t, c, action, point, err)
				if action == "kill" {
					c.stop(syscall.SIGKILL)
					c.env = nil
					if err := c.start(); err != nil {
						t.Fatal(err)
					}
				}
				st, err := c.img.ImageStatus(ctxT(t), &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: busybox}})
				if err != nil || st.Image != nil {
					t.Fatalf("after the failed pull the image is listed: %v %v", st, err)
				}
				resp, err := c.img.PullImage(ctxT(t), req)
				if err != nil {
					t.Fatalf("repeated pull: %v\n%s", err, c.logTail())
				}
				if _, err := c.img.RemoveImage(ctxT(t), &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: resp.ImageRef}}); err != nil {
					t.Fatal(err)
				}
				checkNothingLeft(t, c, before)
			})
		}
	}
}

// startBaseline starts c and takes what the leak checker finds before
// the test makes anything: what must be all that is left at its end.
func startBaseline(t *testing.T, c *harness) leakcheck.Snapshot {
	t.Helper()
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	before, err := leakcheck.Take(ctxT(t), c.leakTarget())
	if err != nil {
		t.Fatal(err)
	}
	return before
}
