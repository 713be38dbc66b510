package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestSystemdService runs crid under systemd with the unit operators
// install (contrib/systemd/crid.service; only ExecStart and the log file
// differ) and checks what the unit promises: `systemctl start` returns
// only once crid serves the CRI (Type=notify), reload is a SIGHUP that
// keeps crid, and restart, a crash (Restart=always) and stop leave the
// containers running and logging (KillMode=process), with crid recovering
// them each time.
func TestSystemdService(t *testing.T) {
	needSystemdV2(t)
	c := secondHarness(t, "svc")
	writeSystemdDriverConfig(t, c)
	unit := "crid-e2e-" + randHex(3) + ".service"
	installTestUnit(t, c, unit)

	systemctl(t, "start", unit)
	// No retry: Type=notify means the socket answers once start returns.
	if err := c.connect(0); err != nil {
		t.Fatalf("crid does not answer right after `systemctl start` returned: %v", err)
	}
	pid1 := mainPID(t, unit)
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid1)); filepath.Base(exe) != "crid" {
		t.Fatalf("MainPID %d is %q, not crid", pid1, exe)
	}

	ctx := ctxT(t)
	id, pid, logPath := startLoggingContainer(t, c)
	alive := func(when string) {
		t.Helper()
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("%s: the container's process %d is gone: %v", when, pid, err)
		}
		growing(t, logPath, when)
	}

	// reload: SIGHUP, the same crid, still serving.
	systemctl(t, "reload", unit)
	if got := mainPID(t, unit); got != pid1 {
		t.Errorf("reload replaced crid: MainPID %d, was %d", got, pid1)
	}
	if _, err := c.rt.Version(ctx, &runtime.VersionRequest{}); err != nil {
		t.Errorf("Version after reload: %v", err)
	}
	if !strings.Contains(c.logTail(), "config reloaded") {
		t.Errorf("crid did not log a reload:\n%s", c.logTail())
	}

	// restart: a new crid, the container untouched.
	systemctl(t, "restart", unit)
	if got := mainPID(t, unit); got == pid1 {
		t.Errorf("restart kept MainPID %d", got)
	}
	reconnect(t, c, 0)
	alive("after systemctl restart")
	wantRunning(t, c, id, "after systemctl restart")

	// A crash: systemd starts crid again (Restart=always, RestartSec=5).
	crashed := mainPID(t, unit)
	if err := syscall.Kill(crashed, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitRestarted(t, unit, crashed)
	reconnect(t, c, 30*time.Second)
	alive("after crid was killed and systemd restarted it")
	wantRunning(t, c, id, "after a crash")

	// stop: crid goes, the container stays; start recovers it.
	systemctl(t, "stop", unit)
	if out, _ := exec.Command("systemctl", "is-active", unit).Output(); strings.TrimSpace(string(out)) != "inactive" {
		t.Errorf("after stop the unit is %q", strings.TrimSpace(string(out)))
	}
	alive("while crid is stopped")
	systemctl(t, "start", unit)
	reconnect(t, c, 0)
	wantRunning(t, c, id, "after stop and start")
	alive("after stop and start")
}

// installTestUnit writes the shipped unit, pointed at the test's crid and
// config and logging to c's log file, as a runtime unit (/run/systemd,
// gone at reboot) and removes it when the test ends, after c's pods.
func installTestUnit(t *testing.T, c *harness, unit string) {
	t.Helper()
	b, err := os.ReadFile("../../contrib/systemd/crid.service")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	const execLine = "ExecStart=/usr/local/bin/crid\n"
	if !strings.Contains(text, execLine) || !strings.Contains(text, "[Service]\n") {
		t.Fatalf("contrib/systemd/crid.service has no %q line in a [Service] section", strings.TrimSpace(execLine))
	}
	text = strings.Replace(text, execLine, fmt.Sprintf("ExecStart=%s --config %s\n", filepath.Join(c.binDir, "crid"), c.cfgPath), 1)
	text = strings.Replace(text, "[Service]\n", fmt.Sprintf("[Service]\nStandardOutput=append:%s\nStandardError=append:%s\n", c.logPath, c.logPath), 1)
	path := filepath.Join("/run/systemd/system", unit)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	systemctl(t, "daemon-reload")
	t.Cleanup(func() {
		// Pods first, while crid runs (secondHarness's cleanup runs after
		// this one and finds none), then the unit.
		c.removeAllPods(t)
		if out, err := exec.Command("systemctl", "stop", unit).CombinedOutput(); err != nil {
			t.Errorf("systemctl stop %s: %v: %s", unit, err, out)
		}
		c.stop(syscall.SIGTERM) // forgets the connection to the stopped unit
		if err := os.Remove(path); err != nil {
			t.Error(err)
		}
		_ = exec.Command("systemctl", "daemon-reload").Run()
		_ = exec.Command("systemctl", "reset-failed", unit).Run()
	})
}

func systemctl(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "systemctl", args...).CombinedOutput(); err != nil {
		t.Fatalf("systemctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func mainPID(t *testing.T, unit string) int {
	t.Helper()
	out, err := exec.Command("systemctl", "show", "-p", "MainPID", "--value", unit).Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid == 0 {
		t.Fatalf("MainPID of %s: %q (%v)", unit, out, err)
	}
	return pid
}

// waitRestarted waits for systemd to have started crid again after the
// crid at old died: a new MainPID, the unit active (so READY was sent).
func waitRestarted(t *testing.T, unit string, old int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := exec.Command("systemctl", "show", "-p", "ActiveState,SubState,MainPID,NRestarts", unit).Output()
		props := string(out)
		if strings.Contains(props, "ActiveState=active\n") && strings.Contains(props, "SubState=running\n") &&
			!strings.Contains(props, fmt.Sprintf("MainPID=%d\n", old)) && !strings.Contains(props, "MainPID=0\n") {
			if !strings.Contains(props, "NRestarts=1\n") {
				t.Errorf("systemd restarted crid but counts %s", props)
			}
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("systemd did not restart crid within 60s (Restart=always, RestartSec=5)")
}

func reconnect(t *testing.T, c *harness, wait time.Duration) {
	t.Helper()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
	if err := c.connect(wait); err != nil {
		t.Fatal(err)
	}
}

// startLoggingContainer starts a pod whose container writes a line every
// 100 ms; it returns the container's id, its process and its log file.
func startLoggingContainer(t *testing.T, c *harness) (id string, pid int, logPath string) {
	t.Helper()
	ctx := ctxT(t)
	pod := podConfig(t)
	pod.Linux.CgroupParent = "kubepods-besteffort-pod" + pod.Metadata.Uid + ".slice"
	pr, err := c.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\ncrid log:\n%s", err, c.logTail())
	}
	if _, err := c.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}); err != nil {
		t.Fatal(err)
	}
	cc := containerConfig("logger", "sh", "-c", "i=0; while :; do echo line $i; i=$((i+1)); sleep 0.1; done")
	cc.LogPath = "logger.log"
	cr, err := c.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pr.PodSandboxId, Config: cc, SandboxConfig: pod})
	if err != nil {
		t.Fatalf("CreateContainer: %v\ncrid log:\n%s", err, c.logTail())
	}
	if _, err := c.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v\ncrid log:\n%s", err, c.logTail())
	}
	st, err := c.rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: cr.ContainerId, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.PID == 0 {
		t.Fatalf("verbose info has no pid (%v): %s", err, st.Info["info"])
	}
	logPath = filepath.Join(pod.LogDirectory, cc.LogPath)
	growing(t, logPath, "after start")
	return cr.ContainerId, info.PID, logPath
}

// growing checks that the container's log file gains lines.
func growing(t *testing.T, path, when string) {
	t.Helper()
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	before := size()
	deadline := time.Now().Add(10 * time.Second)
	for size() <= before {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the container's log %s stopped growing at %d bytes", when, path, before)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
