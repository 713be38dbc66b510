package core

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/metrics"
	"github.com/crid-dev/crid/internal/runc"
	dto "github.com/prometheus/client_model/go"
)

// metricValue is the value of the counter, gauge or histogram sample count
// of family name with exactly labels; -1 if there is no such series.
func metricValue(t *testing.T, m *metrics.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, s := range mf.GetMetric() {
			if len(s.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range s.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return s.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return s.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

// The runtime observer times every invocation, counts real failures only
// (a kill of a container that is already gone is what Kill calls success),
// and still hands every invocation, with its real error, to the observer
// that was there before it (tracing).
func TestRuntimeObserver(t *testing.T) {
	m := metrics.New("test")
	type seen struct {
		op  string
		err error
	}
	var traced []seen
	next := func(ctx context.Context, op string, args []string) (context.Context, func(error)) {
		return ctx, func(err error) { traced = append(traced, seen{op, err}) }
	}
	obs := runtimeObserver(m, "runc", next)
	call := func(op string, err error) {
		_, done := obs(context.Background(), op, []string{"id"})
		done(err)
	}
	gone := &runc.Error{Args: []string{"runc", "kill"}, Message: "container does not exist"}
	notRunning := &runc.Error{Args: []string{"runc", "kill"}, Message: "container not running"}
	broken := &runc.Error{Args: []string{"runc", "start"}, Message: "exec format error"}
	call("kill", gone)
	call("kill", notRunning)
	call("delete", gone)
	call("start", broken)
	call("start", nil)
	call("kill", errors.New("permission denied"))

	for _, c := range []struct {
		op              string
		calls, failures float64
	}{{"kill", 3, 1}, {"delete", 1, 0}, {"start", 2, 1}} {
		l := map[string]string{"handler": "runc", "operation": c.op}
		if got := metricValue(t, m, "crid_runtime_operation_duration_seconds", l); got != c.calls {
			t.Errorf("%s timed %v times, want %v", c.op, got, c.calls)
		}
		got := metricValue(t, m, "crid_runtime_operation_failures_total", l)
		if got < 0 {
			got = 0
		}
		if got != c.failures {
			t.Errorf("%s failures = %v, want %v", c.op, got, c.failures)
		}
	}
	if len(traced) != 6 || traced[0].err != gone || traced[3].err != broken {
		t.Errorf("the next observer saw %v; want all 6 calls with their errors", traced)
	}
}

// A trash with metrics reports the disk space each deletion freed:
// allocated blocks, a hard-linked file once.
func TestTrashReportsFreed(t *testing.T) {
	root := t.TempDir()
	tr := newTrash(slog.New(slog.NewTextHandler(io.Discard, nil)), root)
	var freed []int64
	tr.freed = func(n int64) { freed = append(freed, n) }
	dir := filepath.Join(root, "containers", "c1", "rw", "upper")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(big, filepath.Join(dir, "big-link")); err != nil {
		t.Fatal(err)
	}
	want := diskUsage(filepath.Join(root, "containers", "c1"))
	if want < 1<<20 || want > 1<<20+64<<10 {
		t.Fatalf("disk usage of a 1 MiB file and a hard link to it = %d, want ~1 MiB", want)
	}
	if err := tr.discard(filepath.Join(root, "containers", "c1")); err != nil {
		t.Fatal(err)
	}
	tr.wg.Wait()
	if len(freed) != 1 || freed[0] != want {
		t.Fatalf("freed = %v, want [%d]", freed, want)
	}
	// A deletion that fails reports only what it removed (here: nothing).
	tr.remove = func(string) error { return errors.New("busy") }
	left := filepath.Join(root, "containers", "c2")
	if err := os.MkdirAll(left, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(left, "f"), make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tr.discard(left); err != nil {
		t.Fatal(err)
	}
	tr.wg.Wait()
	if len(freed) != 2 || freed[1] != 0 {
		t.Fatalf("freed after a failed deletion = %v, want 0 added", freed)
	}
}

// MetricsState counts what the core holds, by the state the CRI reports,
// and only the monitors that are really alive.
func TestMetricsState(t *testing.T) {
	state := t.TempDir()
	s := &Service{
		cfg:        &config.Config{State: state},
		sandboxes:  map[string]*sandbox{},
		containers: map[string]*container{},
	}
	addPod := func(id, st string, pauseDied bool) {
		sb := newSandbox(sandboxRecord{ID: id, State: st}, nil)
		if pauseDied {
			close(sb.exited)
		}
		s.sandboxes[id] = sb
	}
	addPod("p1", sandboxReady, false)
	addPod("p2", sandboxReady, true) // the pause died: PodSandboxStatus says NOTREADY
	addPod("p3", sandboxNotReady, false)
	addPod("p4", sandboxInit, false)
	addCtr := func(id, st string) {
		s.containers[id] = &container{rec: containerRecord{ID: id, State: st}, exited: make(chan struct{})}
		if err := os.MkdirAll(s.containerBundle(id), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	addCtr("c1", containerRunning)
	addCtr("c2", containerRunning)
	addCtr("c3", containerCreated)
	addCtr("c4", containerExited)
	addCtr("c5", containerInit)

	// c1's monitor is alive: a process whose command line names its state
	// dir, as crid-monitor's does. c2's pid file names a process that is
	// not its monitor (a reused pid); c3 has no pid file.
	mon := exec.Command("/bin/sh", "-c", "sleep 60", "-state-dir", s.containerBundle("c1"))
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mon.Process.Kill(); _ = mon.Wait() })
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	for id, pid := range map[string]int{"c1": mon.Process.Pid, "c2": other.Process.Pid} {
		if err := os.WriteFile(filepath.Join(s.containerBundle(id), "monitor.pid"), []byte(strconv.Itoa(pid)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// /proc shows the new command line once the child has exec'd.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(mon.Process.Pid) + "/cmdline")
		if strings.HasPrefix(string(b), "/bin/sh\x00") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stand-in monitor did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}

	st := s.MetricsState()
	wantPods := map[string]int{"ready": 1, "notready": 2, "creating": 1}
	wantCtrs := map[string]int{"running": 2, "created": 1, "exited": 1, "creating": 1}
	for k, v := range wantPods {
		if st.Pods[k] != v {
			t.Errorf("pods %s = %d, want %d (all: %v)", k, st.Pods[k], v, st.Pods)
		}
	}
	for k, v := range wantCtrs {
		if st.Containers[k] != v {
			t.Errorf("containers %s = %d, want %d (all: %v)", k, st.Containers[k], v, st.Containers)
		}
	}
	if st.Monitors != 1 {
		t.Errorf("monitors = %d, want 1 (only c1's is alive and is a monitor)", st.Monitors)
	}
}
