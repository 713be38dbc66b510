package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/crid-dev/crid/test/e2e/leakcheck"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// boundTimeout is the fault crids' runtime.command_timeout and
// network.plugin_timeout: short, so that a hung runtime or plugin is
// killed within the test's patience.
const boundTimeout = 3 * time.Second

// kubeletDeadline is the deadline of a faulted call that is to pass
// before crid's own bound does.
const kubeletDeadline = 1500 * time.Millisecond

// boundaryCase is one fault at a boundary crid calls: the OCI runtime,
// a CNI plugin, the monitor, the store, or a registry.
type boundaryCase struct {
	name string
	ci   bool // in the CI selection (the rest with CRID_E2E_FAULTS_FULL=1)
	// pod is the pod's name ("" the test's); pause gives it a shared PID
	// namespace, hence a pause container (runc run).
	pod   string
	pause bool
	env   string // CRID_FAULTS
	// runtime and monitor are faultwrap rules armed for the runc handler
	// and crid-monitor right before step.
	runtime, monitor string
	// prepAt and prepRules arm the runtime's wrapper before an earlier
	// step, e.g. so that the exit's runtime delete fails and
	// RemoveContainer has to delete.
	prepAt, prepRules string
	step              string        // the RPC that meets the fault
	deadline          time.Duration // its caller's deadline (0: a minute)
	// code and msg are what step answers (codes.OK: crid absorbs the
	// fault, e.g. by its own retry or fallback). With deadline set the
	// caller gives up first and sees gRPC's own words: msg is then what
	// crid's handler answered, from crid's log.
	code codes.Code
	msg  string
	// hung names the process the step waits on, for hang cases:
	// "runtime:<subcommand>", "monitor", "cni:<command>" or "init" (the
	// container's init, stopped before its release). It must be gone
	// (killed and reaped) soon after the step answers. "store" is a write
	// held inside bbolt's one writer: no process, but other calls must
	// be served meanwhile all the same.
	hung string
	// wedged: the fault lasts as long as crid (a store write that never
	// ends): the handler never answers, so what the caller sees is its
	// own deadline, and the operator's remedy is the one tested: SIGKILL
	// and restart crid, then kubelet's retry.
	wedged bool
	// setup, if set, adjusts the case's pod, container or exec before the
	// pod's life (e.g. a poststart hook, a PID namespace of the
	// container's own); check, if set, checks what the fault left once the
	// step answered and what hung is gone, before kubelet's retry.
	setup, check func(t *testing.T, b *boundaryRun)
	// unmet: crid must not run the faulted subcommand at this step at all
	// (it does the runtime's work itself), so the armed fault is not met.
	unmet bool
}

// runningSteps are the steps a case may fault that act on a running
// container (not in lifeSteps): they run right after StartContainer, and
// the container must still run after their fault.
var runningSteps = map[string]bool{"UpdateContainerResources": true, "ExecTTY": true}

// TestBoundaryFaults makes what crid calls fail, hang or be slow at each
// step of a pod's life: the OCI runtime's subcommands and crid-monitor
// through faultwrap, CNI ADD and DEL through cnifail's cnifault pods, the
// store's writes through internal/fault. Each case checks the RPC's answer
// (code and message), that crid answers other calls while a step hangs and
// kills and reaps what hung, that kubelet-style retries finish the pod's
// life, and that the leak checker finds nothing after a restart.
func TestBoundaryFaults(t *testing.T) {
	full := os.Getenv("CRID_E2E_FAULTS_FULL") != ""
	wrap := faultWrapBin(t)
	for _, tc := range boundaryCases() {
		if !tc.ci && !full {
			continue
		}
		t.Run(tc.name, func(t *testing.T) { runBoundaryCase(t, wrap, tc) })
	}
}

func boundaryCases() []boundaryCase {
	dl := codes.DeadlineExceeded
	return []boundaryCase{
		// hang: one case per RPC.
		{name: "hang/RunPodSandbox/cni-add", ci: true, pod: "cnifault-add-hang", step: "RunPodSandbox",
			code: dl, msg: "network.plugin_timeout", hung: "cni:add"},
		{name: "hang/CreateContainer/runtime-create", ci: true, runtime: "create hang 1", step: "CreateContainer",
			code: dl, msg: "runtime.command_timeout", hung: "runtime:create"},
		{name: "hang/StartContainer/init-stopped", ci: true, step: "StartContainer",
			code: dl, msg: "runtime.command_timeout", hung: "init"},
		{name: "hang/StopContainer/runtime-delete", ci: true, runtime: "delete hang 1", step: "StopContainer",
			deadline: kubeletDeadline, code: dl, msg: "stop container", hung: "runtime:delete"},
		{name: "hang/RemoveContainer/runtime-delete", ci: true, prepAt: "StopContainer", prepRules: "delete error 2",
			runtime: "delete hang 1", step: "RemoveContainer",
			deadline: kubeletDeadline, code: dl, msg: "remove container", hung: "runtime:delete"},
		{name: "hang/StopPodSandbox/cni-del", ci: true, pod: "cnifault-del-hang", step: "StopPodSandbox",
			deadline: kubeletDeadline, code: dl, msg: "teardown network for sandbox", hung: "cni:del"},
		{name: "hang/RemovePodSandbox/runtime-delete", ci: true, pause: true, runtime: "delete hang 1", step: "RemovePodSandbox",
			deadline: kubeletDeadline, code: dl, msg: "remove pod sandbox", hung: "runtime:delete"},
		{name: "hang/RunPodSandbox/runtime-run", pause: true, runtime: "run hang 1", step: "RunPodSandbox",
			code: dl, msg: "runtime.command_timeout", hung: "runtime:run"},
		{name: "hang/CreateContainer/monitor", monitor: "main hang 1", step: "CreateContainer",
			code: dl, msg: "runtime.command_timeout", hung: "monitor"},
		{name: "hang/RunPodSandbox/cni-add-kubelet-deadline", pod: "cnifault-add-hang", step: "RunPodSandbox",
			deadline: kubeletDeadline, code: dl, msg: "still in progress after the caller's deadline", hung: "cni:add"},
		// The pods here share a PID namespace (nil NamespaceOptions), so
		// StopContainer's SIGKILL goes through `runc kill --all`.
		{name: "hang/StopContainer/runtime-kill", runtime: "kill hang 1", step: "StopContainer",
			deadline: kubeletDeadline, code: dl, msg: "stop container", hung: "runtime:kill"},
		{name: "error/StopContainer/runtime-kill", runtime: "kill error 1", step: "StopContainer",
			code: codes.Unknown, msg: "faultwrap: injected failure of kill"},
		// error: the runtime's or plugin's own words reach the caller.
		{name: "error/RunPodSandbox/runtime-run", pause: true, runtime: "run error 1", step: "RunPodSandbox",
			code: codes.Unknown, msg: "faultwrap: injected failure of run"},
		{name: "error/CreateContainer/runtime-create", runtime: "create error 1", step: "CreateContainer",
			code: codes.Unknown, msg: "faultwrap: injected failure of create"},
		{name: "error/CreateContainer/monitor-start", monitor: "main error 1", step: "CreateContainer",
			code: codes.Unknown, msg: "faultwrap: injected failure of main"},
		{name: "error/RemoveContainer/runtime-delete", prepAt: "StopContainer", prepRules: "delete error 2",
			runtime: "delete error 2", step: "RemoveContainer",
			code: codes.Unknown, msg: "faultwrap: injected failure of delete"},
		{name: "error/RunPodSandbox/cni-add", ci: true, pod: "cnifault-add-error", step: "RunPodSandbox",
			code: codes.Unknown, msg: "failpoint: ADD refused once"},
		{name: "error/StopPodSandbox/cni-del", pod: "cnifault-del-error", step: "StopPodSandbox", code: codes.OK},
		// slow: within the caller's deadline the step succeeds.
		{name: "slow/CreateContainer/runtime-create", runtime: "create sleep:2s 1", step: "CreateContainer", code: codes.OK},
		{name: "slow/RunPodSandbox/cni-add", pod: "cnifault-add-slow", step: "RunPodSandbox", code: codes.OK},
		{name: "slow/StopPodSandbox/cni-del", pod: "cnifault-del-slow", step: "StopPodSandbox", code: codes.OK},
		// store: a bbolt write that fails or is slow.
		{name: "error/RunPodSandbox/store-put", ci: true, env: "Store/put-sandboxes=error:1", step: "RunPodSandbox",
			code: codes.Unavailable, msg: "fault injected at Store/put-sandboxes"},
		{name: "error/CreateContainer/store-put", env: "Store/put-containers=error:1", step: "CreateContainer",
			code: codes.Unavailable, msg: "fault injected at Store/put-containers"},
		{name: "error/RemoveContainer/store-delete", env: "Store/delete-containers=error:1", step: "RemoveContainer",
			code: codes.Unavailable, msg: "fault injected at Store/delete-containers"},
		{name: "error/RemovePodSandbox/store-delete", env: "Store/delete-sandboxes=error:1", step: "RemovePodSandbox",
			code: codes.Unavailable, msg: "fault injected at Store/delete-sandboxes"},
		// A disk that stalls in the commit: every write of the bucket holds
		// bbolt's writer for 2 s, past kubelet's deadline; reads are served
		// from memory meanwhile.
		{name: "slow/CreateContainer/store-put", ci: true, env: "Store/put-containers=sleep:2s", step: "CreateContainer",
			deadline: kubeletDeadline, code: dl, msg: "still in progress after the caller's deadline", hung: "store"},
		{name: "slow/RunPodSandbox/store-put", env: "Store/put-sandboxes=sleep:2s", step: "RunPodSandbox",
			deadline: kubeletDeadline, code: dl, msg: "still in progress after the caller's deadline", hung: "store"},
		// The first record of a pod, written by a create that outlives its
		// caller: the create holds crid's lifetime's work group too, so
		// only the shutdown bound ends crid (TestStoreStalls: the exit's
		// record and the image's).
		{name: "hang/RunPodSandbox/store-put", env: "Store/put-sandboxes=hang", step: "RunPodSandbox",
			deadline: kubeletDeadline, code: dl, hung: "store", wedged: true},
		// A store write that never ends (the store has no context): the
		// record's delete is the last step of RemoveContainer, after the
		// runtime's delete and the rootfs and files are gone.
		{name: "hang/RemoveContainer/store-delete", ci: true, env: "Store/delete-containers=hang", step: "RemoveContainer",
			deadline: kubeletDeadline, code: dl, hung: "store", wedged: true},
		// runc update (UpdateContainerResources): the container runs on.
		{name: "hang/UpdateContainerResources/runtime-update", ci: true, runtime: "update hang 1", step: "UpdateContainerResources",
			code: dl, msg: "runtime.command_timeout", hung: "runtime:update"},
		{name: "error/UpdateContainerResources/runtime-update", runtime: "update error 1", step: "UpdateContainerResources",
			code: codes.Unknown, msg: "faultwrap: injected failure of update"},
		// A terminal exec runs `runc exec --tty` (crid-nsexec has no tty):
		// the client goes away at its deadline, and crid must kill the hung
		// runtime then; an error reaches the client in the stream.
		{name: "hang/ExecTTY/runtime-exec", ci: true, runtime: "exec hang 1", step: "ExecTTY",
			deadline: kubeletDeadline, code: dl, msg: "context canceled", hung: "runtime:exec"},
		{name: "error/ExecTTY/runtime-exec", runtime: "exec error 1", step: "ExecTTY",
			code: codes.Unknown, msg: "faultwrap: injected failure of exec"},
	}
}

var (
	faultWrapOnce sync.Once
	faultWrapPath string
	faultWrapErr  error
)

// faultWrapBin builds faultwrap once.
func faultWrapBin(t *testing.T) string {
	t.Helper()
	faultWrapOnce.Do(func() {
		faultWrapPath = filepath.Join(h.base, "faultwrap", "faultwrap")
		faultWrapErr = buildHelper("./faultwrap", faultWrapPath)
	})
	if faultWrapErr != nil {
		t.Fatalf("build faultwrap: %v", faultWrapErr)
	}
	return faultWrapPath
}

// wrapped is a faultwrap link named like the program it stands for.
type wrapped struct{ link, real string }

func newWrapped(t *testing.T, bin, dir, name, real string) wrapped {
	t.Helper()
	w := wrapped{link: filepath.Join(dir, name), real: real}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, w.link); err != nil {
		t.Fatal(err)
	}
	w.arm(t, "")
	return w
}

// arm replaces the wrapper's rules (and forgets its counts).
func (w wrapped) arm(t *testing.T, rules string) {
	t.Helper()
	old, _ := filepath.Glob(w.link + ".count*")
	for _, f := range old {
		os.Remove(f)
	}
	if err := os.WriteFile(w.link+".faults", []byte("exec "+w.real+"\n"+rules+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// hitPID is the pid of the last invocation of sub that met a rule.
func (w wrapped) hitPID(sub string) int {
	b, _ := os.ReadFile(w.link + ".hits")
	pid := 0
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && (f[0] == sub || sub == "") {
			pid, _ = strconv.Atoi(f[1])
		}
	}
	return pid
}

// boundaryRun is one case's crid and pod.
type boundaryRun struct {
	tc      boundaryCase
	c       *harness
	rt, mon wrapped
	life    *podLife
	initPID int // the init stopped for StartContainer
	// hook is the container's OCI hook (a setup's), armed with the
	// runtime's rules.
	hook *runtimeHook
}

func runBoundaryCase(t *testing.T, wrap string, tc boundaryCase) {
	b := &boundaryRun{tc: tc}
	wdir := filepath.Join(h.base, "wrap-"+randHex(3))
	b.rt = newWrapped(t, wrap, wdir, "runc", "/usr/local/sbin/runc")
	b.mon = newWrapped(t, wrap, wdir, "crid-monitor", filepath.Join(h.binDir, "crid-monitor"))
	bound := fmt.Sprintf("command_timeout = %q\ncdi_spec_dirs = [%q]\n", boundTimeout, filepath.Join(wdir, "cdi"))
	b.c = faultCridWith(t, faultOpts{runtime: b.rt.link, monitor: b.mon.link, runtimeTOML: bound,
		networkTOML: fmt.Sprintf("plugin_timeout = %q\n", boundTimeout)})
	if tc.env != "" {
		b.c.env = []string{"CRID_FAULTS=" + tc.env}
	}
	if err := b.c.start(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.c.img.PullImage(ctxT(t), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}); err != nil {
		t.Fatalf("PullImage: %v", err)
	}
	if tc.pause {
		// The pause image, pulled before the baseline.
		if _, err := b.c.img.PullImage(ctxT(t), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: "registry.k8s.io/pause:3.10"}}); err != nil {
			t.Fatalf("PullImage pause: %v", err)
		}
	}
	before, err := leakcheck.Take(ctxT(t), b.c.leakTarget())
	if err != nil {
		t.Fatal(err)
	}
	pod := leakPodConfig(t)
	pod.LogDirectory = filepath.Join(b.c.base, "logs")
	if tc.pod != "" {
		pod.Metadata.Name = tc.pod + "-" + randHex(3)
	}
	if tc.pause {
		pod.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD}}
	}
	b.life = &podLife{c: b.c, pod: pod}
	if tc.setup != nil {
		tc.setup(t, b)
	}
	for _, s := range caseSteps(tc.step) {
		if s == tc.prepAt {
			b.rt.arm(t, tc.prepRules)
		}
		if s != tc.step {
			if err := b.step(s, time.Minute); err != nil {
				t.Fatalf("%s before the fault: %v\n%s", s, err, b.c.logTail())
			}
			continue
		}
		b.faultedStep(t)
	}
	checkNothingLeft(t, b.c, before)
}

// caseSteps is a pod's life with step in it: a running container's step
// right after StartContainer.
func caseSteps(step string) []string {
	if !runningSteps[step] {
		return lifeSteps
	}
	var out []string
	for _, s := range lifeSteps {
		out = append(out, s)
		if s == "StartContainer" {
			out = append(out, step)
		}
	}
	return out
}

func (b *boundaryRun) step(op string, deadline time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	return b.life.step(ctx, op)
}

// faultedStep arms the fault, runs the step, checks its answer, what hung
// and crid's service meanwhile, and retries as kubelet would.
func (b *boundaryRun) faultedStep(t *testing.T) {
	tc := b.tc
	b.rt.arm(t, tc.runtime)
	b.mon.arm(t, tc.monitor)
	if b.hook != nil {
		b.hook.arm(t)
	}
	if tc.hung == "init" {
		b.stopInit(t)
	}
	deadline := tc.deadline
	if deadline == 0 {
		deadline = time.Minute
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- b.step(tc.step, deadline) }()
	if tc.hung != "" {
		b.checkServing(t, done)
	}
	err := <-done
	took := time.Since(start)
	t.Logf("%s answered after %v: %v", tc.step, took.Round(time.Millisecond), err)
	checkAnswer(t, tc, err, b.c)
	b.checkFaultMet(t)
	if tc.hung != "" {
		// Answered at the caller's deadline or crid's bound, not later.
		if limit := min(deadline, boundTimeout) + 2*time.Second; took > limit {
			t.Errorf("%s hung for %v, want an answer within %v", tc.step, took, limit)
		}
		b.checkHungGone(t)
	}
	if runningSteps[tc.step] {
		b.checkRunning(t)
	}
	if tc.check != nil {
		tc.check(t, b)
	}
	if tc.wedged {
		b.restartWedged(t)
	}
	if err != nil {
		b.life.retry(t, tc.step)
	}
}

// checkRunning checks that the container still runs after a fault in a
// step that must not stop it.
func (b *boundaryRun) checkRunning(t *testing.T) {
	t.Helper()
	r, err := b.c.rt.ContainerStatus(ctxT(t), &runtime.ContainerStatusRequest{ContainerId: b.life.ctrID})
	if err != nil {
		t.Fatalf("ContainerStatus after the fault: %v", err)
	}
	if st := r.Status.State; st != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container %v after %s's fault, want it running", st, b.tc.step)
	}
}

// restartWedged is what an operator does with a crid wedged in its store:
// learn it from the log (the store names the write it has waited on for
// 10 s), stop crid (SIGTERM, as systemctl does) and start it again once
// the disk answers (here: without the fault). The stop cannot finish
// (closing the store waits for the held write), so crid must give up on
// it within its shutdown bound (cmd/crid: 20 s, below systemd's
// TimeoutStopSec) and say so, rather than keep the socket and the store's
// lock for ever.
func (b *boundaryRun) restartWedged(t *testing.T) {
	t.Helper()
	restartWedged(t, b.c, b.tc.env)
}

// restartWedged stops c, wedged in its store by the rule env
// ("Store/<op>-<bucket>=hang..."), with SIGTERM, checks that it exits
// within its shutdown bound saying so and that it named the held write,
// and starts it again without the fault.
func restartWedged(t *testing.T, c *harness, env string) {
	t.Helper()
	const shutdownBound = 20 * time.Second
	start := time.Now()
	if err := c.crid.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	gone := waitFor(shutdownBound+5*time.Second, func() bool { return c.crid.Process.Signal(syscall.Signal(0)) != nil })
	t.Logf("crid wedged in its store: gone=%v %v after SIGTERM", gone, time.Since(start).Round(time.Millisecond))
	if !gone {
		t.Errorf("crid wedged in its store still runs %v after SIGTERM", shutdownBound+5*time.Second)
	} else {
		checkLogged(t, c, "level=ERROR", "shutdown did not finish in time")
	}
	// Logged 10 s into the write, within the stop's 20 s.
	point, _, _ := strings.Cut(strings.TrimPrefix(env, "Store/"), "=") // delete-containers
	checkLogged(t, c, `msg="store write not finished`, strings.Replace(point, "-", " ", 1)+"/")
	c.stop(syscall.SIGKILL) // kills a crid that outlived its bound; forgets a gone one
	c.env = nil
	if err := c.start(); err != nil {
		t.Fatalf("restart after the wedged store: %v", err)
	}
}

// checkAnswer checks the RPC's code and message.
func checkAnswer(t *testing.T, tc boundaryCase, err error, c *harness) {
	t.Helper()
	if tc.code == codes.OK {
		if err != nil {
			t.Fatalf("%s through %s: %v, want success\n%s", tc.step, tc.name, err, c.logTail())
		}
		return
	}
	if err == nil {
		t.Fatalf("%s succeeded through %s", tc.step, tc.name)
	}
	if status.Code(err) != tc.code {
		t.Errorf("%s through %s = %v, want %v", tc.step, tc.name, err, tc.code)
	}
	if tc.msg == "" && !tc.wedged {
		t.Fatalf("case %s names no message to expect", tc.name)
	}
	switch {
	case tc.wedged:
		// The handler is still blocked: only the caller's deadline ended it.
		return
	case tc.step == "ExecTTY" && tc.deadline != 0:
		// Not a CRI call: the streaming server logs how the exec ended.
		checkLogged(t, c, `msg="exec stream failed"`, tc.msg)
		return
	case tc.deadline != 0:
		checkLoggedAnswer(t, c, "RuntimeService/"+tc.step, tc.msg)
		return
	}
	if !strings.Contains(status.Convert(err).Message(), tc.msg) {
		t.Errorf("%s through %s = %q, want it to say %q", tc.step, tc.name, status.Convert(err).Message(), tc.msg)
	}
}

// checkFaultMet checks that the step met the armed fault, so that a step
// that succeeded did so through it, not around it.
func (b *boundaryRun) checkFaultMet(t *testing.T) {
	t.Helper()
	tc := b.tc
	if tc.runtime != "" && (b.rt.hitPID(strings.Fields(tc.runtime)[0]) <= 0) != tc.unmet {
		t.Errorf("%s: the runtime met %q: %v, want %v", tc.name, tc.runtime, !tc.unmet, tc.unmet)
	}
	if tc.monitor != "" && b.mon.hitPID("") <= 0 {
		t.Errorf("%s: crid-monitor never met %q", tc.name, tc.monitor)
	}
	if strings.HasPrefix(tc.pod, "cnifault-") {
		cmd := strings.Split(tc.pod, "-")[1]
		runs := readLines(t, filepath.Join(h.base, "cnibin", b.life.pod.Metadata.Name+"."+cmd+".pids"))
		if len(runs) == 0 {
			t.Errorf("%s: the plugin never met its %s fault", tc.name, cmd)
		}
		if tc.code == codes.OK && strings.Contains(tc.pod, "-error") && len(runs) < 2 {
			t.Errorf("%s: the step succeeded after a failed %s without running it again", tc.name, cmd)
		}
	}
	if point, _, ok := strings.Cut(tc.env, "="); ok {
		b, err := os.ReadFile(b.c.logPath)
		if err != nil || !strings.Contains(string(b), `msg="fault injected" point=`+point) {
			t.Errorf("%s: crid never reached %s (%v)", tc.name, point, err)
		}
	}
}

// checkLoggedAnswer waits for crid's log to show the handler of method
// ("RuntimeService/StopContainer") returning an error that says one of
// msgs: the handler, not only its caller, gave up on what hung.
func checkLoggedAnswer(t *testing.T, c *harness, method string, msgs ...string) {
	t.Helper()
	checkLogged(t, c, `msg="cri call failed" method=/runtime.v1.`+method+" ", msgs...)
}

// checkLogged waits for a line of crid's log that has prefix (a part that
// names what ended) and one of msgs.
func checkLogged(t *testing.T, c *harness, prefix string, msgs ...string) {
	t.Helper()
	deadline := time.Now().Add(boundTimeout + 2*time.Second)
	for {
		b, err := os.ReadFile(c.logPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, prefix) {
				continue
			}
			for _, msg := range msgs {
				if strings.Contains(line, msg) {
					if i := strings.Index(line, "error="); i >= 0 {
						line = line[i:]
					}
					t.Logf("crid logged: %s", line)
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("crid's log shows no %s with %q:\n%s", prefix, msgs, c.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkServing checks, while the step waits on what hangs, that crid
// answers other calls.
func (b *boundaryRun) checkServing(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("%s answered before anything hung: %v", b.tc.step, err)
	case <-time.After(500 * time.Millisecond):
	}
	checkAnswering(t, b.life, b.tc.step)
}

// checkAnswering checks that l's crid answers Version, the lists and
// kubelet's polls of l's pod and container while what (a step) hangs.
func checkAnswering(t *testing.T, l *podLife, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	rt := l.c.rt
	if _, err := rt.Version(ctx, &runtime.VersionRequest{}); err != nil {
		t.Errorf("Version while %s hangs: %v", what, err)
	}
	if _, err := rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{}); err != nil {
		t.Errorf("ListPodSandbox while %s hangs: %v", what, err)
	}
	if _, err := rt.ListContainers(ctx, &runtime.ListContainersRequest{}); err != nil {
		t.Errorf("ListContainers while %s hangs: %v", what, err)
	}
	// NotFound is an answer too: the life's container is removed before
	// its pod is stopped.
	if l.podID != "" {
		if _, err := rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: l.podID}); err != nil && status.Code(err) != codes.NotFound {
			t.Errorf("PodSandboxStatus while %s hangs: %v", what, err)
		}
	}
	if l.ctrID != "" {
		if _, err := rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: l.ctrID}); err != nil && status.Code(err) != codes.NotFound {
			t.Errorf("ContainerStatus while %s hangs: %v", what, err)
		}
	}
}

// hungPID is the process the case's step waited on.
func (b *boundaryRun) hungPID(t *testing.T) int {
	t.Helper()
	kind, arg, _ := strings.Cut(b.tc.hung, ":")
	switch kind {
	case "runtime":
		return b.rt.hitPID(arg)
	case "monitor":
		return b.mon.hitPID("")
	case "cni":
		f := filepath.Join(h.base, "cnibin", b.life.pod.Metadata.Name+"."+arg+".pids")
		lines := readLines(t, f)
		if len(lines) == 0 {
			return 0
		}
		pid, _ := strconv.Atoi(lines[0])
		return pid
	case "init":
		return b.initPID
	case "hook":
		return b.hook.lastPID(t)
	}
	t.Fatalf("unknown hung process %q", b.tc.hung)
	return 0
}

// checkHungGone waits for the hung process to be killed and reaped: no
// process, no zombie with its pid.
func (b *boundaryRun) checkHungGone(t *testing.T) {
	t.Helper()
	if b.tc.hung == "store" {
		// A held write is no process: the slow commit ends on its own, the
		// wedged one with crid (restartWedged); the retry's writes show
		// the writer is free again.
		return
	}
	pid := b.hungPID(t)
	if pid <= 0 {
		t.Fatalf("%s: the hung %s left no pid", b.tc.name, b.tc.hung)
	}
	deadline := time.Now().Add(boundTimeout + 5*time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			t.Fatalf("the hung %s (pid %d) is still there: %s", b.tc.hung, pid, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopInit stops the created container's init (SIGSTOP) before it is
// released: StartContainer then waits on an init that never takes its
// release, as with one stuck in the kernel.
func (b *boundaryRun) stopInit(t *testing.T) {
	t.Helper()
	pid := containerFilePID(t, b.c, b.life.ctrID, "pid")
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("stop init %d: %v", pid, err)
	}
	b.initPID = pid
}

// containerFilePID reads a pid file of a container's bundle: "pid" (its
// init), "monitor.pid".
func containerFilePID(t *testing.T, c *harness, id, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.base, "state", "containers", id, name))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		t.Fatalf("%s of container %s: %q", name, id, b)
	}
	return pid
}

// TestPullHang: a registry that stops answering in the middle of a pull
// (a blob request that never gets a byte). With kubelet's deadline first,
// PullImage answers DeadlineExceeded, crid serves other calls meanwhile
// and drops the hung request; with crid's images.pull_progress_timeout
// first, crid answers itself, naming the stall. Each time a repeated pull
// succeeds, and once the image is removed nothing of it is left.
func TestPullHang(t *testing.T) {
	var requests atomic.Int32
	released := make(chan struct{}, 4)
	target, err := url.Parse("http://" + h.registry)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") && requests.Add(1) == 1 {
			<-r.Context().Done() // never a byte, until crid gives up on it
			released <- struct{}{}
			return
		}
		proxy.ServeHTTP(w, r)
	})}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close()
	c := faultCridWith(t, faultOpts{registry: lis.Addr().String(), imagesTOML: fmt.Sprintf("pull_progress_timeout = %q\n", boundTimeout)})
	before := startBaseline(t, c)
	req := &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}
	for _, tc := range []struct {
		name     string
		deadline time.Duration
		msg      string
	}{
		{"kubelet-deadline", kubeletDeadline, "context deadline exceeded"},
		{"pull-progress-timeout", time.Minute, "pull made no progress"},
	} {
		requests.Store(0)
		start := time.Now()
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), tc.deadline)
			defer cancel()
			_, err := c.img.PullImage(ctx, req)
			done <- err
		}()
		time.Sleep(500 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if _, err := c.rt.Version(ctx, &runtime.VersionRequest{}); err != nil {
			t.Errorf("%s: Version during the hung pull: %v", tc.name, err)
		}
		if _, err := c.img.ListImages(ctx, &runtime.ListImagesRequest{}); err != nil {
			t.Errorf("%s: ListImages during the hung pull: %v", tc.name, err)
		}
		cancel()
		err := <-done
		took := time.Since(start)
		t.Logf("%s: PullImage answered after %v: %v", tc.name, took.Round(time.Millisecond), err)
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("%s: PullImage through a hung registry = %v, want DeadlineExceeded", tc.name, err)
		}
		if tc.deadline == kubeletDeadline {
			// The caller's deadline passed first: what it got is gRPC's own
			// text ("context deadline exceeded", or the server's stream
			// reset, whichever came first); crid's handler must have ended
			// with it too.
			checkLoggedAnswer(t, c, "ImageService/PullImage", "context deadline exceeded", "context canceled")
		} else if !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("%s: PullImage through a hung registry = %v, want it to say %q", tc.name, err, tc.msg)
		}
		if limit := min(tc.deadline, boundTimeout) + 2*time.Second; took > limit {
			t.Errorf("%s: PullImage answered after %v, want within %v", tc.name, took, limit)
		}
		select {
		case <-released:
		case <-time.After(boundTimeout + 5*time.Second):
			t.Fatalf("%s: crid still holds the hung blob request", tc.name)
		}
		resp, err := c.img.PullImage(ctxT(t), req)
		if err != nil {
			t.Fatalf("%s: repeated pull: %v\n%s", tc.name, err, c.logTail())
		}
		if _, err := c.img.RemoveImage(ctxT(t), &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: resp.ImageRef}}); err != nil {
			t.Fatal(err)
		}
	}
	checkNothingLeft(t, c, before)
}

// TestMonitorFaults: a container's crid-monitor dies (SIGKILL) while the
// container runs, and another's stops answering on its socket (SIGSTOP).
// The dead monitor's container is reported exited with the reason, its
// process is killed, and the pod's removal leaves nothing; a call that
// waits on the stopped monitor answers at the caller's deadline while crid
// serves others, and succeeds once the monitor answers again.
func TestMonitorFaults(t *testing.T) {
	c := faultCrid(t)
	l, before := startFaultLife(t, c)
	for _, s := range []string{"RunPodSandbox", "CreateContainer", "StartContainer"} {
		if err := l.step(ctxT(t), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	t.Run("dies", func(t *testing.T) { monitorDies(t, c, l) })
	t.Run("hangs", func(t *testing.T) { monitorHangs(t, c, l) })
	t.Run("stopped-at-exit", func(t *testing.T) { monitorStoppedAtExit(t, c, l) })
	for _, s := range []string{"StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"} {
		if err := l.step(ctxT(t), s); err != nil {
			t.Fatalf("%s: %v\n%s", s, err, c.logTail())
		}
	}
	checkNothingLeft(t, c, before)
}

func monitorDies(t *testing.T, c *harness, l *podLife) {
	initPID := containerFilePID(t, c, l.ctrID, "pid")
	monPID := containerFilePID(t, c, l.ctrID, "monitor.pid")
	if err := syscall.Kill(monPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	st := c.waitExited(t, l.ctrID, 10*time.Second)
	t.Logf("after the monitor's death: exit %d, reason %q, message %q", st.ExitCode, st.Reason, st.Message)
	if st.Reason == "" || st.Message == "" || st.ExitCode == 0 {
		t.Errorf("exit after the monitor's death: code %d reason %q message %q, want an unknown exit explained", st.ExitCode, st.Reason, st.Message)
	}
	// Its process must not run on unmonitored: crid kills it.
	for syscall.Kill(initPID, 0) == nil {
		if time.Now().After(deadline) {
			out, _ := exec.Command("ps", "-e", "-o", "pid,ppid,stat,args").Output()
			t.Fatalf("the container's process (pid %d) outlived its monitor (crid is %d):\n%s", initPID, c.crid.Process.Pid, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	replaceContainer(t, l, "the monitor's death")
}

// replaceContainer removes the life's container and runs a new one, as
// kubelet replaces a container that exited.
func replaceContainer(t *testing.T, l *podLife, after string) {
	t.Helper()
	for _, s := range []string{"RemoveContainer", "CreateContainer", "StartContainer"} {
		if err := l.step(ctxT(t), s); err != nil {
			t.Fatalf("%s after %s: %v\n%s", s, after, err, l.c.logTail())
		}
	}
}

// stopProcess stops pid (SIGSTOP) and waits until it is stopped; the
// function it returns lets it run again, and runs at the test's end if
// the test did not.
func stopProcess(t *testing.T, pid int) (resume func()) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for !processStopped(pid) {
		time.Sleep(10 * time.Millisecond) // the stop is delivered asynchronously
	}
	var once sync.Once
	resume = func() {
		once.Do(func() {
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Errorf("resume %d: %v", pid, err)
			}
		})
	}
	t.Cleanup(resume)
	return resume
}

func monitorHangs(t *testing.T, c *harness, l *podLife) {
	resume := stopProcess(t, containerFilePID(t, c, l.ctrID, "monitor.pid"))
	req := &runtime.ReopenContainerLogRequest{ContainerId: l.ctrID}
	timesOut(t, "ReopenContainerLog on a stopped monitor", func(ctx context.Context) error {
		_, err := c.rt.ReopenContainerLog(ctx, req)
		return err
	})
	checkAnswering(t, l, "a monitor")
	resume()
	if _, err := c.rt.ReopenContainerLog(ctxT(t), req); err != nil {
		t.Errorf("ReopenContainerLog once the monitor answers again: %v", err)
	}
}

// monitorStoppedAtExit: the monitor is stopped (SIGSTOP) when its
// container is killed, so nothing reaps the container's init or records
// its exit. StopContainer waits for the exit and answers DeadlineExceeded
// at the caller's deadline while crid serves other calls (the container
// still RUNNING: crid does not take over from a stopped monitor); once the
// monitor runs again the exit is recorded (137, SIGKILL's), the init is
// reaped, and the stop and the container's removal converge.
func monitorStoppedAtExit(t *testing.T, c *harness, l *podLife) {
	initPID := containerFilePID(t, c, l.ctrID, "pid")
	resume := stopProcess(t, containerFilePID(t, c, l.ctrID, "monitor.pid"))
	timesOut(t, "StopContainer with a stopped monitor", func(ctx context.Context) error { return l.step(ctx, "StopContainer") })
	checkLoggedAnswer(t, c, "RuntimeService/StopContainer", "stop container "+l.ctrID)
	checkAnswering(t, l, "a monitor")
	r, err := c.rt.ContainerStatus(ctxT(t), &runtime.ContainerStatusRequest{ContainerId: l.ctrID})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("with its monitor stopped the container is %v, want RUNNING until the monitor records the exit", r.Status.State)
	}
	resume()
	st := c.waitExited(t, l.ctrID, 10*time.Second)
	t.Logf("after the monitor ran again: exit %d, reason %q", st.ExitCode, st.Reason)
	if st.ExitCode != 128+int32(syscall.SIGKILL) {
		t.Errorf("exit code %d after StopContainer's SIGKILL, want %d", st.ExitCode, 128+int(syscall.SIGKILL))
	}
	if !waitFor(10*time.Second, func() bool { return syscall.Kill(initPID, 0) != nil }) {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", initPID))
		t.Errorf("the killed init (pid %d) is still there: %s", initPID, st)
	}
	if err := l.step(ctxT(t), "StopContainer"); err != nil {
		t.Errorf("StopContainer once the exit is recorded: %v", err)
	}
	replaceContainer(t, l, "the stopped monitor's exit")
}

// timesOut runs call (what) under kubelet's deadline and checks that it
// answers DeadlineExceeded at that deadline, not later.
func timesOut(t *testing.T, what string, call func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kubeletDeadline)
	defer cancel()
	start := time.Now()
	err := call(ctx)
	took := time.Since(start)
	t.Logf("%s answered after %v: %v", what, took.Round(time.Millisecond), err)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("%s = %v, want DeadlineExceeded", what, err)
	}
	if took > kubeletDeadline+2*time.Second {
		t.Errorf("%s answered after %v", what, took)
	}
}

// processStopped is whether pid is in the stopped state (T).
func processStopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] == "T"
}
