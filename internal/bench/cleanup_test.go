package bench

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestTrackerBookkeeping(t *testing.T) {
	tr := NewTracker("abc")
	if got := tr.Name("pod", 3); got != "cb-abc-pod-3" {
		t.Fatalf("Name = %q", got)
	}
	if l := tr.Labels(); l[LabelRun] != "abc" || l[LabelTool] != "crid-bench" {
		t.Fatalf("Labels = %v", l)
	}
	tr.AddPod("p2")
	tr.AddPod("p1")
	tr.AddContainer("c1")
	tr.AddImage("img")
	tr.PodRemoved("p2")
	tr.PodRemoved("never-added") // harmless
	pods, ctrs, imgs := tr.Pending()
	if len(pods) != 1 || pods[0] != "p1" || len(ctrs) != 1 || ctrs[0] != "c1" || len(imgs) != 1 {
		t.Fatalf("Pending = %v %v %v", pods, ctrs, imgs)
	}
	tr.ContainerRemoved("c1")
	tr.ImageRemoved("img")
	tr.PodRemoved("p1")
	pods, ctrs, imgs = tr.Pending()
	if len(pods)+len(ctrs)+len(imgs) != 0 {
		t.Fatalf("Pending after removals = %v %v %v", pods, ctrs, imgs)
	}
}

func newTestBench(t *testing.T, f *fakeCRI, o Options) (*Bench, *Tracker) {
	t.Helper()
	rt, is := serveFake(t, f)
	tr := NewTracker(NewRunID())
	dir := t.TempDir()
	o.WorkDir = dir + "/work"
	b, err := New(rt, is, tr, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b, tr
}

// An interrupt that lands while the runtime is creating an object (it exists
// on the runtime but the client never got its ID) must still leave nothing
// behind after Cleanup.
func TestInterruptedRunLeavesNothing(t *testing.T) {
	tests := []struct {
		name     string
		scenario string
		method   string
		at       int
	}{
		{"pod-lifecycle during RunPodSandbox", "pod-lifecycle", "RunPodSandbox", 6},
		{"pod-lifecycle during StartContainer", "pod-lifecycle", "StartContainer", 4},
		{"list during CreateContainer", "list", "CreateContainer", 25},
		{"exec-sync during StartContainer", "exec-sync", "StartContainer", 1},
		{"memory during RunPodSandbox", "memory", "RunPodSandbox", 3},
		{"density during the burst", "density", "StartContainer", 12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeCRI()
			f.images["keep-me"] = true // present before: must survive
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f.onCall = func(method string, n int) bool {
				if method == tc.method && n == tc.at {
					cancel() // the "Ctrl-C"
					return true
				}
				return false
			}
			b, tr := newTestBench(t, f, Options{N: 10, Concurrency: 3, Sizes: []int{10, 30}, PerPod: 5, MemoryPods: 5, DaemonPID: os.Getpid(),
				DensityPods: 4, DensityIdle: Duration{time.Millisecond}, DensityBurst: 5, DensityChurn: 2})
			err := b.Run(ctx, []string{tc.scenario})
			if err == nil {
				t.Fatal("interrupted run returned no error")
			}
			if p, c, _ := f.counts(); p == 0 && c == 0 {
				t.Fatal("test did not interrupt with objects alive; it proves nothing")
			}
			// Fresh context, as the CLI does after SIGINT.
			cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer ccancel()
			if err := b.Cleanup(cctx, 10*time.Millisecond); err != nil {
				t.Fatalf("Cleanup: %v", err)
			}
			p, c, _ := f.counts()
			if p != 0 || c != 0 {
				t.Fatalf("after cleanup: %d pods, %d containers left", p, c)
			}
			if !f.images["keep-me"] {
				t.Fatal("cleanup removed an image that existed before the run")
			}
			if f.images[DefaultImage] {
				t.Fatal("cleanup left the image the run pulled")
			}
			pods, ctrs, imgs := tr.Pending()
			if len(pods)+len(ctrs)+len(imgs) != 0 {
				t.Fatalf("tracker still pending: %v %v %v", pods, ctrs, imgs)
			}
			if _, err := os.Stat(b.Options().WorkDir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("work dir left behind: %v", err)
			}
		})
	}
}

func TestCompletedRunLeavesNothingAndMeasures(t *testing.T) {
	f := newFakeCRI()
	b, _ := newTestBench(t, f, Options{N: 5, Concurrency: 2, Warmup: 1, Sizes: []int{5, 12}, PerPod: 5, ListN: 3})
	if err := b.Run(context.Background(), []string{"pod-lifecycle", "exec-sync", "list"}); err != nil {
		t.Fatal(err)
	}
	// Every scenario tears down its own objects before cleanup.
	if p, c, _ := f.counts(); p != 0 || c != 0 {
		t.Fatalf("after run: %d pods, %d containers", p, c)
	}
	want := map[string]bool{
		"pod-lifecycle|sequential|startup(runp+create+start) p50": false,
		"pod-lifecycle|concurrency=2|throughput":                  false,
		"exec-sync|sequential|execsync p99":                       false,
		"list|containers=5|ListContainers p50":                    false,
		"list|containers=12|ListContainerStats p99":               false,
	}
	for _, m := range b.Metrics() {
		if _, ok := want[m.Key()]; ok {
			want[m.Key()] = true
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("metric %s missing", k)
		}
	}
	if f.calls["RunPodSandbox"] != 1+5+5+1+3 { // warm-up, seq, concurrent, exec pod, list pods (5,5,2 -> 3 pods)
		t.Errorf("RunPodSandbox calls = %d", f.calls["RunPodSandbox"])
	}
	if err := b.Cleanup(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if _, _, imgs := f.counts(); imgs != 0 {
		t.Fatalf("pulled image left: %d", imgs)
	}
}

func TestSweepOnlyTouchesSelected(t *testing.T) {
	f := newFakeCRI()
	rt, _ := serveFake(t, f)
	ctx := context.Background()
	mk := func(labels map[string]string) {
		p, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{Labels: labels}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.GetPodSandboxId(), Config: &runtimeapi.ContainerConfig{Labels: labels}}); err != nil {
			t.Fatal(err)
		}
	}
	mk(map[string]string{LabelTool: "crid-bench", LabelRun: "r1"})
	mk(map[string]string{LabelTool: "crid-bench", LabelRun: "r2"})
	mk(map[string]string{"app": "someone-else"})
	if err := Sweep(ctx, rt, map[string]string{LabelRun: "r1"}, 2); err != nil {
		t.Fatal(err)
	}
	if p, c, _ := f.counts(); p != 2 || c != 2 {
		t.Fatalf("after run sweep: %d pods %d containers, want 2 and 2", p, c)
	}
	if err := Sweep(ctx, rt, map[string]string{LabelTool: "crid-bench"}, 2); err != nil {
		t.Fatal(err)
	}
	if p, c, _ := f.counts(); p != 1 || c != 1 {
		t.Fatalf("after tool sweep: %d pods %d containers, want the foreign 1 and 1", p, c)
	}
}
