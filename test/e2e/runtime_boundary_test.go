package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestRuntimeBoundaryFaults faults the OCI runtime where crid runs it
// besides the steps of TestBoundaryFaults, with the same checks (the
// answer, crid serving meanwhile, what hung killed and reaped, kubelet's
// retries converging, nothing leaked):
//
//   - `runc start`: crid releases a created init through the exec FIFO
//     itself, and runs the runtime's start only for a container with
//     poststart hooks (crun runs them there). The container gets one from
//     a CDI device. The runtime hangs or fails before the release: the
//     container must end EXITED with reason StartError, its init killed
//     and reaped, rather than stay half-started. runc itself runs
//     poststart hooks in `runc create`: the hook hangs or fails there
//     (and a poststop hook in `runc delete`, of the exit): the hung hook
//     must be killed with the runtime.
//   - `runc kill --all`: the pause of a pod with a shared PID namespace is
//     killed through the runtime at StopPodSandbox (its containers' kill
//     at StopContainer is TestBoundaryFaults'). A container with a PID
//     namespace of its own is killed through a pidfd: the runtime's kill
//     is never run, so its fault is never met.
//   - a terminal exec whose `runc exec --tty` started the process and then
//     never returns (after the process ended, or while it runs on): the
//     client's going away must end the exec, kill the runtime and the
//     process, and leave no process in the container but its init.
func TestRuntimeBoundaryFaults(t *testing.T) {
	full := os.Getenv("CRID_E2E_FAULTS_FULL") != ""
	wrap := faultWrapBin(t)
	for _, tc := range runtimeBoundaryCases() {
		if !tc.ci && !full {
			continue
		}
		t.Run(tc.name, func(t *testing.T) { runBoundaryCase(t, wrap, tc) })
	}
}

func runtimeBoundaryCases() []boundaryCase {
	dl := codes.DeadlineExceeded
	sleepExec := withExec("sh", "-c", "echo tty-exec-ok; exec sleep 3600")
	// kubelet's retry of the exec is one that ends (the client's own).
	onlyInitThenEcho := func(t *testing.T, b *boundaryRun) {
		checkOnlyInit(t, b)
		b.life.execCmd = nil
	}
	return []boundaryCase{
		// A poststart hook makes crid run `runc start`; the runtime hangs
		// or fails there, before it released the init.
		{name: "hang/StartContainer/runtime-start", ci: true, setup: withHook("poststart", ""), runtime: "start hang 1",
			step: "StartContainer", code: dl, msg: "runtime.command_timeout", hung: "runtime:start", check: checkStartFailed},
		{name: "error/StartContainer/runtime-start", ci: true, setup: withHook("poststart", ""), runtime: "start error 1",
			step: "StartContainer", code: codes.Unknown, msg: "faultwrap: injected failure of start", check: checkStartFailed},
		{name: "hang/StartContainer/runtime-start-kubelet-deadline", setup: withHook("poststart", ""), runtime: "start hang 1",
			step: "StartContainer", deadline: kubeletDeadline, code: dl, msg: "start container", hung: "runtime:start", check: checkStartFailed},
		// runc runs poststart hooks in `runc create` (once the init is
		// made, before its release), not in `runc start`: a hook that
		// hangs or fails holds or fails CreateContainer.
		{name: "hang/CreateContainer/poststart-hook", ci: true, setup: withHook("poststart", "hang"),
			step: "CreateContainer", code: dl, msg: "runtime.command_timeout", hung: "hook"},
		{name: "error/CreateContainer/poststart-hook", setup: withHook("poststart", "error"),
			step: "CreateContainer", code: codes.Unknown, msg: "poststart hook failed on purpose"},
		// runc runs poststop hooks in `runc delete`: a hook that hangs
		// holds the delete of the exit StopContainer waits for, until
		// crid's bound; the forced delete that follows runs it again.
		{name: "hang/StopContainer/poststop-hook", ci: true, setup: withHook("poststop", "hang"),
			step: "StopContainer", code: codes.OK, hung: "hook"},
		// A pod sharing its PID namespace (POD) has a pause, killed with
		// `runc kill --all`, as are its containers.
		{name: "hang/StopPodSandbox/runtime-kill", ci: true, pause: true, runtime: "kill hang 1", step: "StopPodSandbox",
			deadline: kubeletDeadline, code: dl, msg: "stop pod sandbox", hung: "runtime:kill"},
		{name: "hang/StopPodSandbox/runtime-kill-bound", pause: true, runtime: "kill hang 1", step: "StopPodSandbox",
			code: dl, msg: "runtime.command_timeout", hung: "runtime:kill"},
		{name: "error/StopPodSandbox/runtime-kill", pause: true, runtime: "kill error 1", step: "StopPodSandbox",
			code: codes.Unknown, msg: "faultwrap: injected failure of kill"},
		{name: "hang/StopContainer/runtime-kill-bound", pause: true, runtime: "kill hang 1", step: "StopContainer",
			code: dl, msg: "runtime.command_timeout", hung: "runtime:kill"},
		{name: "error/StopContainer/own-pid-namespace", ci: true, setup: ownPIDNamespace, runtime: "kill error",
			step: "StopContainer", code: codes.OK, unmet: true},
		{name: "hang/ExecTTY/runtime-exec-after-start", runtime: "exec hang-after 1", step: "ExecTTY",
			deadline: kubeletDeadline, code: dl, msg: "context canceled", hung: "runtime:exec", check: checkOnlyInit},
		{name: "hang/ExecTTY/runtime-exec-and-process", ci: true, setup: sleepExec, runtime: "exec hang-after 1", step: "ExecTTY",
			deadline: kubeletDeadline, code: dl, msg: "context canceled", hung: "runtime:exec", check: onlyInitThenEcho},
		{name: "hang/ExecTTY/process", setup: sleepExec, step: "ExecTTY",
			deadline: kubeletDeadline, code: dl, msg: "context canceled", check: onlyInitThenEcho},
	}
}

// runtimeHook is an OCI hook of a container's, from a CDI device of its
// own: a shell that records its pid and does what it is armed to do once.
type runtimeHook struct {
	dir    string // its pid list and arm file
	action string // at the faulted step: "" succeed, "hang" or "error"
}

// withHook gives the case's containers a hook run at stage (poststart,
// poststop) that hangs or fails (action) at the faulted step and succeeds
// otherwise.
func withHook(stage, action string) func(*testing.T, *boundaryRun) {
	return func(t *testing.T, b *boundaryRun) {
		t.Helper()
		p := &runtimeHook{dir: t.TempDir(), action: action}
		kind := "e2e.crid.dev/" + stage + randHex(3)
		script := fmt.Sprintf(`echo $$ >> %[1]s/pids; a=$(cat %[1]s/arm 2>/dev/null); rm -f %[1]s/arm
case "$a" in hang) exec sleep 3600;; error) echo %[2]s hook failed on purpose >&2; exit 3;; esac`, p.dir, stage)
		spec := fmt.Sprintf(`{"cdiVersion": "0.6.0", "kind": %q, "devices": [{"name": "hook",
  "containerEdits": {"hooks": [{"hookName": %q, "path": "/bin/sh", "args": ["sh", "-c", %q]}]}}]}`, kind, stage, script)
		dir := filepath.Join(filepath.Dir(b.rt.link), "cdi") // the case crid's cdi_spec_dirs
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, stage+".json"), []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
		b.hook = p
		b.life.container = func(cfg *runtime.ContainerConfig) {
			cfg.CDIDevices = []*runtime.CDIDevice{{Name: kind + "=hook"}}
		}
	}
}

// arm makes the hook's next run do its action.
func (p *runtimeHook) arm(t *testing.T) {
	t.Helper()
	if p.action == "" {
		return
	}
	if err := os.WriteFile(filepath.Join(p.dir, "arm"), []byte(p.action+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runs are the pids of the hook's runs so far.
func (p *runtimeHook) runs(t *testing.T) []string {
	t.Helper()
	return readLines(t, filepath.Join(p.dir, "pids"))
}

// lastPID is the pid of the hook's last run (its sleep, if it hangs).
func (p *runtimeHook) lastPID(t *testing.T) int {
	t.Helper()
	runs := p.runs(t)
	if len(runs) == 0 {
		return 0
	}
	pid, _ := strconv.Atoi(runs[len(runs)-1])
	return pid
}

// checkStartFailed checks what a failed StartContainer leaves: the
// container EXITED with reason StartError and the failure in its message
// (not running half-started, nor vanished), its init killed and reaped.
func checkStartFailed(t *testing.T, b *boundaryRun) {
	t.Helper()
	id := b.life.ctrID
	initPID := containerFilePID(t, b.c, id, "pid")
	st := b.c.waitExited(t, id, boundTimeout+5*time.Second)
	t.Logf("after the failed start: exit %d, reason %q, message %q", st.ExitCode, st.Reason, st.Message)
	if st.Reason != "StartError" || !strings.Contains(st.Message, b.tc.msg) {
		t.Errorf("after the failed start: reason %q, message %q, want StartError saying %q", st.Reason, st.Message, b.tc.msg)
	}
	if !waitFor(5*time.Second, func() bool { return syscall.Kill(initPID, 0) != nil }) {
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", initPID))
		t.Errorf("the init (pid %d) of the container whose start failed is still there: %s", initPID, stat)
	}
}

// ownPIDNamespace gives the case's pod and container a PID namespace of
// the container's own (mode CONTAINER): no pause, and crid signals the
// init through a pidfd.
func ownPIDNamespace(t *testing.T, b *boundaryRun) {
	ns := &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}
	b.life.pod.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{NamespaceOptions: ns}
	b.life.container = func(cfg *runtime.ContainerConfig) {
		cfg.Linux = &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{NamespaceOptions: ns}}
	}
}

// withExec makes the case's terminal exec run cmd.
func withExec(cmd ...string) func(*testing.T, *boundaryRun) {
	return func(t *testing.T, b *boundaryRun) { b.life.execCmd = cmd }
}

// checkOnlyInit checks that the container's cgroup holds its init and
// nothing else (an exec'd process that outlived its exec would be there).
func checkOnlyInit(t *testing.T, b *boundaryRun) {
	t.Helper()
	initPID := containerFilePID(t, b.c, b.life.ctrID, "pid")
	procs := cgroupProcsFile(t, initPID)
	var got []string
	only := waitFor(boundTimeout+5*time.Second, func() bool {
		got = readLines(t, procs)
		return slices.Equal(got, []string{strconv.Itoa(initPID)})
	})
	if !only {
		t.Errorf("after the exec the container's processes (%s) are %v, want only its init %d", procs, got, initPID)
	}
}

// cgroupProcsFile is the cgroup.procs of pid's cgroup: in the unified
// hierarchy (cgroup v2), else in v1's pids controller.
func cgroupProcsFile(t *testing.T, pid int) string {
	t.Helper()
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	_, v2 := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	for _, line := range strings.Split(strings.TrimSpace(string(cg)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		switch {
		case v2 == nil && f[0] == "0" && f[1] == "":
			return filepath.Join("/sys/fs/cgroup", f[2], "cgroup.procs")
		case v2 != nil && f[1] == "pids":
			return filepath.Join("/sys/fs/cgroup/pids", f[2], "cgroup.procs")
		}
	}
	t.Fatalf("no cgroup of pid %d to list its processes in: %q", pid, cg)
	return ""
}
