package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crid-dev/crid/test/e2e/leakcheck"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// leakCgroupParent is the cgroup parent of the pods of tests that check
// for leaks: this run's own, so that the cgroups and processes of other
// runs sharing the host (which use /crid-e2e) are not counted.
var leakCgroupParent = "/crid-e2e-" + runTag

// leakPodConfig is podConfig with this run's own cgroup parent, for tests
// that check for leaks.
func leakPodConfig(t *testing.T) *runtime.PodSandboxConfig {
	pod := podConfig(t)
	pod.Linux.CgroupParent = leakCgroupParent
	return pod
}

// leakTarget is what hh's crid owns on the host, for leakcheck.
func (hh *harness) leakTarget() leakcheck.Target {
	state := filepath.Join(hh.base, "state")
	return leakcheck.Target{
		Root: filepath.Join(hh.base, "root"), State: state, PID: hh.crid.Process.Pid,
		Network: networkName, Bridge: bridgeName, CgroupParents: []string{leakCgroupParent},
		AdminSocket: filepath.Join(state, "admin.sock"),
		Extra: map[string]func(context.Context) ([]string, error){
			"record":       hh.records,
			"image-orphan": hh.imageOrphans,
		},
	}
}

// records are the pods and containers hh's crid lists.
func (hh *harness) records(ctx context.Context) ([]string, error) {
	pods, err := hh.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	ctrs, err := hh.rt.ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var out []string
	for _, p := range pods.Items {
		out = append(out, "pod "+p.Id+" "+p.Metadata.GetName())
	}
	for _, c := range ctrs.Containers {
		out = append(out, "container "+c.Id+" "+c.Metadata.GetName())
	}
	return out, nil
}

// imageOrphans are the blobs and layer snapshots in hh's image store that
// no listed image uses (what a failed pull or a removed image leaves until
// it is collected).
func (hh *harness) imageOrphans(ctx context.Context) ([]string, error) {
	list, err := hh.img.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	keep := map[string]bool{}
	for _, img := range list.Images {
		st, err := hh.img.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: img.Id}, Verbose: true})
		if err != nil {
			return nil, fmt.Errorf("image status %s: %w", img.Id, err)
		}
		var info storedImage
		if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil {
			return nil, fmt.Errorf("image status %s: %w", img.Id, err)
		}
		for _, c := range chains(info.DiffIDs) {
			keep[c.Encoded()] = true
		}
		for _, b := range info.Blobs {
			keep[b.Encoded()] = true
		}
	}
	root := filepath.Join(hh.base, "root")
	var out []string
	for _, dir := range []string{filepath.Join(root, "snapshots"), filepath.Join(root, "content", "blobs", "sha256")} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			// Committed entries only: 64 hex characters (.tmp- and
			// .empty are the image-tmp kind's or the store's own).
			if len(e.Name()) == 64 && !strings.HasPrefix(e.Name(), ".") && !keep[e.Name()] {
				out = append(out, filepath.Join(dir, e.Name()))
			}
		}
	}
	return out, nil
}

// leakBaseline snapshots hh's crid before a test creates anything.
func leakBaseline(t *testing.T, hh *harness) leakcheck.Snapshot {
	t.Helper()
	s, err := leakcheck.Take(ctxT(t), hh.leakTarget())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// leakWait is how long a leak check lets background deletions (removed
// containers' layers, image garbage) and exiting goroutines finish.
const leakWait = 20 * time.Second

// strayReapWait is how long crid may take to reap an orphan it adopted
// as subreaper and that nobody waits for: two sweeps of reapStrays, 30s
// apart (core/pause.go). A CNI ADD cancelled half-way (the pause failed
// to start) leaves its IPAM plugin such an orphan.
const strayReapWait = 65 * time.Second

// assertNoLeaks fails t if hh's crid left anything since before, once
// background work has had leakWait to finish.
func assertNoLeaks(t *testing.T, hh *harness, before leakcheck.Snapshot) {
	t.Helper()
	assertNoLeaksWithin(t, hh, before, leakWait)
}

// assertNoLeaksWithin is assertNoLeaks with its own wait.
func assertNoLeaksWithin(t *testing.T, hh *harness, before leakcheck.Snapshot, within time.Duration) {
	t.Helper()
	leaks, err := leakcheck.Check(ctxT(t), hh.leakTarget(), before, leakcheck.DefaultSlack, within)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leaks {
		t.Errorf("left behind: %s", l)
	}
}

// removeLeakCgroupParent removes this run's cgroup parent from every
// hierarchy at teardown (empty by then; a leftover child keeps it, and
// the leak check has said so).
func removeLeakCgroupParent() {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + leakCgroupParent)
	dirs = append(dirs, "/sys/fs/cgroup"+leakCgroupParent)
	for _, d := range dirs {
		_ = os.Remove(d)
	}
}

// TestLeakCheckSeesAPod: the checker is only worth its silence if it
// sees a running pod and container as what they leave when not removed.
func TestLeakCheckSeesAPod(t *testing.T) {
	pull(t, busybox)
	pod := podConfig(t)
	pod.Linux.CgroupParent = leakCgroupParent
	before := leakBaseline(t, h)
	podID := runPod(t, pod, "")
	createStart(t, podID, pod, containerConfig("leaky", "sleep", "1000"))
	time.Sleep(leakcheck.MinProcessAge) // younger processes are not counted
	after, err := leakcheck.Take(ctxT(t), h.leakTarget())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, l := range leakcheck.Diff(before, after, leakcheck.DefaultSlack) {
		seen[strings.SplitN(l, ":", 2)[0]] = true
	}
	for _, kind := range []string{"mount", "ns-pin", "ip", "veth", "iptables", "runtime", "cgroup", "process", "child", "object", "record"} {
		if !seen[kind] {
			t.Errorf("a running pod left no %q in the diff; diff kinds: %v", kind, seen)
		}
	}
	if after.Goroutines < 0 || after.FDs == 0 {
		t.Errorf("crid's goroutines (%d) or fds (%d) not measured", after.Goroutines, after.FDs)
	}
	t.Logf("crid with a pod: %d fds (%d before), %d goroutines (%d before)", after.FDs, before.FDs, after.Goroutines, before.Goroutines)
}
