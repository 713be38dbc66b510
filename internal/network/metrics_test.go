package network

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/crid-dev/crid/internal/metrics"
)

// cniStats is the sample count and failures of CNI operation op in m.
func cniStats(t *testing.T, m *metrics.Metrics, op string) (calls uint64, failures float64) {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			if len(s.GetLabel()) != 1 || s.GetLabel()[0].GetValue() != op {
				continue
			}
			switch mf.GetName() {
			case "crid_cni_operation_duration_seconds":
				calls = s.GetHistogram().GetSampleCount()
			case "crid_cni_operation_failures_total":
				failures = s.GetCounter().GetValue()
			}
		}
	}
	return calls, failures
}

// Every CNI ADD and every DEL attempt is timed, failures counted: a
// failed ADD, the DEL rolling it back, and a teardown's retries.
func TestCNIMetrics(t *testing.T) {
	requireRoot(t)
	confDir := t.TempDir()
	mgr := newTestManager(t, confDir, "")
	m := metrics.New("test")
	WithMetrics(m)(mgr)

	// No network config, no cached attachment: DEL has nothing to do and
	// succeeds.
	if err := mgr.Teardown(context.Background(), Pod{ID: "p0"}); err != nil {
		t.Fatal(err)
	}
	if calls, failures := cniStats(t, m, metrics.CNIDel); calls != 1 || failures != 0 {
		t.Fatalf("after a teardown with nothing to do: del calls=%d failures=%v, want 1, 0", calls, failures)
	}

	// A network whose plugin does not exist: ADD fails, its rollback DEL
	// fails, and a teardown fails on every attempt.
	conf := `{"cniVersion":"1.0.0","name":"missing","plugins":[{"type":"crid-no-such-plugin"}]}`
	if err := os.WriteFile(filepath.Join(confDir, "10-missing.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ns, err := mgr.CreateNetNS("metrics-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mgr.RemoveNetNS(ns) })
	pod := Pod{ID: "p1", Name: "p1", Namespace: "ns", UID: "u1", NetNSPath: ns}
	if _, err := mgr.Setup(context.Background(), pod); err == nil {
		t.Fatal("Setup with a missing plugin succeeded")
	}
	if calls, failures := cniStats(t, m, metrics.CNIAdd); calls != 1 || failures != 1 {
		t.Errorf("add calls=%d failures=%v, want 1, 1", calls, failures)
	}
	if calls, failures := cniStats(t, m, metrics.CNIDel); calls != 2 || failures != 1 {
		t.Errorf("del after the rollback: calls=%d failures=%v, want 2, 1", calls, failures)
	}
	if err := mgr.Teardown(context.Background(), pod); err == nil {
		t.Fatal("Teardown with a missing plugin succeeded")
	}
	if calls, failures := cniStats(t, m, metrics.CNIDel); calls != 2+teardownAttempts || failures != 1+teardownAttempts {
		t.Errorf("del after a failing teardown: calls=%d failures=%v, want %d each plus the earlier 2/1", calls, failures, teardownAttempts)
	}
}
