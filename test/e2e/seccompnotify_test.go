package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// notifierContainer runs script under RuntimeDefault seccomp with the
// io.crid.seccomp-notifier action on the container.
func notifierContainer(name, action, script string) *runtime.ContainerConfig {
	c := containerConfig(name, "sh", "-c", script)
	c.Linux = &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
		Seccomp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault},
	}}
	c.Annotations = map[string]string{"io.crid.seccomp-notifier": action}
	return c
}

// monitorLog is the container's monitor's own log.
func monitorLog(t *testing.T, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.base, "state", "containers", id, "monitor.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// eperm reports whether a busybox error message says EPERM.
func eperm(s string) bool {
	return strings.Contains(s, "ermission denied") || strings.Contains(s, "not permitted")
}

// TestSeccompNotifier: with "log", a syscall RuntimeDefault blocks (mount,
// unshare: CAP_SYS_ADMIN only) fails in the container as without the
// notifier (EPERM), in the init and in an exec, the monitor logs it with
// the container's id, and the container keeps running. With "stop" the
// container is stopped a moment later, its status naming the syscall.
func TestSeccompNotifier(t *testing.T) {
	pull(t, busybox)
	pod := podConfig(t)
	podID := runPod(t, pod, annotHandler)

	logCtr := createStart(t, podID, pod, notifierContainer("log", "log",
		"mount -t tmpfs t /mnt; echo mount=$?; sleep 1000"))
	var spec specs.Spec
	b, err := os.ReadFile(filepath.Join(h.base, "state", "containers", logCtr, "config.json"))
	if err == nil {
		err = json.Unmarshal(b, &spec)
	}
	if err != nil {
		t.Fatal(err)
	}
	sc := spec.Linux.Seccomp
	if sc == nil || sc.DefaultAction != specs.ActErrno || !strings.HasSuffix(sc.ListenerPath, "seccomp.sock") ||
		sc.Syscalls[len(sc.Syscalls)-1].Action != specs.ActNotify {
		t.Fatalf("spec's seccomp profile was not rewritten for the notifier: %+v", sc)
	}
	logPath := filepath.Join(pod.LogDirectory, "log.log")
	if !waitFor(10*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "mount=")
	}) {
		t.Fatalf("container never reported its mount; monitor log:\n%s", monitorLog(t, logCtr))
	}
	if b, _ := os.ReadFile(logPath); strings.Contains(string(b), "mount=0") || !eperm(string(b)) {
		t.Errorf("mount in the container did not fail with EPERM as without the notifier: %s", b)
	}
	// An exec goes through runc exec, which hands its own notify fd over.
	if code, out, errOut := run(t, logCtr, "unshare -m true"); code == 0 || !eperm(errOut) {
		t.Errorf("unshare in an exec: exit %d, %q %q; want EPERM", code, out, errOut)
	}
	ml := monitorLog(t, logCtr)
	for _, want := range []string{
		`msg="seccomp notifier: blocked syscall" id=` + logCtr + ` syscall=mount`,
		`syscall=unshare`, `errno=1 count=1 action=log`,
	} {
		if !strings.Contains(ml, want) {
			t.Errorf("monitor log lacks %q:\n%s", want, ml)
		}
	}
	if st := containerStatus(t, logCtr); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("log action: container %v, want running", st.State)
	}

	// The monitor holds the notify fds: a crid restart changes nothing.
	h.stop(syscall.SIGKILL)
	if err := h.start(); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, logCtr, "unshare -m true"); code == 0 || !eperm(errOut) {
		t.Errorf("unshare in an exec after a crid restart: exit %d, %q; want EPERM", code, errOut)
	}
	ml = monitorLog(t, logCtr)
	if !strings.Contains(ml, "syscall=unshare") || !strings.Contains(ml, "count=2 action=log") {
		t.Errorf("monitor log lacks the second unshare, after the crid restart:\n%s", ml)
	}
	// runc's own tries of the new mount API after the filter is loaded
	// are not the workload's.
	if strings.Contains(ml, "syscall=open_tree") || strings.Contains(ml, "syscall=fsopen") {
		t.Errorf("runc exec's own syscalls were notified:\n%s", ml)
	}
	for _, l := range strings.Split(ml, "\n") {
		if strings.Contains(l, "seccomp notifier") {
			t.Log(l)
		}
	}

	// With no_new_privs runc loads the filter just before the execve,
	// and hands the fd over from there.
	nnp := notifierContainer("nnp", "log", "sleep 1000")
	nnp.Linux.SecurityContext.NoNewPrivs = true
	nc := createStart(t, podID, pod, nnp)
	if code, _, errOut := run(t, nc, "mount -t tmpfs t /mnt"); code == 0 || !eperm(errOut) {
		t.Errorf("mount with no_new_privs: exit %d, %q; want EPERM", code, errOut)
	}
	if ml := monitorLog(t, nc); !strings.Contains(ml, "syscall=mount") {
		t.Errorf("no_new_privs: monitor log lacks the mount:\n%s", ml)
	}

	// Unconfined: nothing is blocked, the annotation is ignored.
	unconfined := notifierContainer("unconfined", "stop", "sleep 1000")
	unconfined.Linux.SecurityContext.Seccomp.ProfileType = runtime.SecurityProfile_Unconfined
	uc := createStart(t, podID, pod, unconfined)
	fails(t, uc, "mount -t tmpfs t /mnt") // no CAP_SYS_ADMIN
	if _, err := os.Stat(filepath.Join(h.base, "state", "containers", uc, "seccomp.sock")); err == nil {
		t.Error("unconfined container has a notifier socket")
	}
	if st := containerStatus(t, uc); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("unconfined container with a stop notifier: %v, want running", st.State)
	}

	// With "stop", execs (runc exec) do not stop the container; its
	// blocked syscall, once the test lets it make it, does.
	stopCtr := createStart(t, podID, pod, notifierContainer("stop", "stop",
		"while [ ! -e /tmp/go ]; do sleep 0.1; done; mount -t tmpfs t /mnt; sleep 1000"))
	must(t, stopCtr, "true")
	time.Sleep(1500 * time.Millisecond) // longer than the monitor's grace before a stop
	if st := containerStatus(t, stopCtr); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("stop action: container %v after an exec, want running; monitor log:\n%s", st.State, monitorLog(t, stopCtr))
	}
	stopped := time.Now()
	must(t, stopCtr, "touch /tmp/go")
	st := waitExited(t, stopCtr, 30*time.Second)
	t.Logf("stop action: exited %v after the go: %s: %s", time.Since(stopped).Round(10*time.Millisecond), st.Reason, st.Message)
	if st.Reason != "seccomp killed" || !strings.Contains(st.Message, "mount (") || st.ExitCode != 137 {
		t.Errorf("stop action: status reason %q, message %q, exit %d; want seccomp killed naming mount, 137",
			st.Reason, st.Message, st.ExitCode)
	}
	if ml := monitorLog(t, stopCtr); !strings.Contains(ml, "seccomp notifier: stopping the container") {
		t.Errorf("monitor log lacks the stop:\n%s", ml)
	}
}
