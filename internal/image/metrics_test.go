package image

import (
	"context"
	"testing"

	"github.com/crid-dev/crid/internal/metrics"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// pullStats is what m holds about pulls.
type pullStats struct {
	pulls, bytes float64
	durations    uint64
	failures     map[string]float64
}

func gatherPulls(t *testing.T, m *metrics.Metrics) pullStats {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	st := pullStats{failures: map[string]float64{}}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			switch mf.GetName() {
			case "crid_image_pulls_total":
				st.pulls = s.GetCounter().GetValue()
			case "crid_image_pull_bytes_total":
				st.bytes = s.GetCounter().GetValue()
			case "crid_image_pull_duration_seconds":
				st.durations = s.GetHistogram().GetSampleCount()
			case "crid_image_pull_failures_total":
				st.failures[s.GetLabel()[0].GetValue()] = s.GetCounter().GetValue()
			}
		}
	}
	return st
}

// compressedLayerBytes is what downloading img's layers transfers.
func compressedLayerBytes(t *testing.T, img v1.Image) float64 {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, l := range m.Layers {
		n += l.Size
	}
	return float64(n)
}

// Pulls are counted whatever their outcome, timed when they succeed, and
// failures counted by reason; the bytes are the layers downloaded, once.
func TestPullMetrics(t *testing.T) {
	reg := newTestRegistry(t)
	img := testImage(t, "0", baseLayer(t), testLayer(t, entry{name: "etc/motd", content: "hello"}))
	reg.push(t, "registry.k8s.io/e2e-test-images/busybox:1.29-2", img)
	s, _, _ := newTestService(t, mirrorConfig(reg))
	m := metrics.New("test")
	s.SetMetrics(m)
	ctx := context.Background()

	if _, err := s.Pull(ctx, "registry.k8s.io/e2e-test-images/busybox:1.29-2", nil); err != nil {
		t.Fatal(err)
	}
	st := gatherPulls(t, m)
	want := compressedLayerBytes(t, img)
	if st.pulls != 1 || st.durations != 1 || st.bytes != want {
		t.Fatalf("after one pull: %+v; want 1 pull, 1 duration, %v bytes", st, want)
	}
	// Pulled again: the layers are present, nothing is downloaded.
	if _, err := s.Pull(ctx, "registry.k8s.io/e2e-test-images/busybox:1.29-2", nil); err != nil {
		t.Fatal(err)
	}
	if st = gatherPulls(t, m); st.pulls != 2 || st.durations != 2 || st.bytes != want {
		t.Fatalf("after a second pull: %+v; want 2 pulls, bytes still %v", st, want)
	}
	if _, err := s.Pull(ctx, "registry.k8s.io/e2e-test-images/no-such-image:1", nil); err == nil {
		t.Fatal("pull of a missing image succeeded")
	}
	if _, err := s.Pull(ctx, "Not A Reference", nil); err == nil {
		t.Fatal("pull of a bad reference succeeded")
	}
	st = gatherPulls(t, m)
	if st.pulls != 4 || st.durations != 2 {
		t.Errorf("after two failed pulls: %+v; want 4 pulls, 2 durations", st)
	}
	if st.failures[metrics.ReasonNotFound] != 1 || st.failures[metrics.ReasonInvalid] != 1 || st.failures[metrics.ReasonOther] != 0 {
		t.Errorf("failures = %v; want one not_found, one invalid", st.failures)
	}
}
