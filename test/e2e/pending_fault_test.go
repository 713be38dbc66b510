package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// pendingBound is the bound of a create that outlived its caller in the
// fault crids of these tests (CRID_FAULTS_PENDING_TIMEOUT; 4 minutes
// otherwise, core/pending.go).
const pendingBound = 3 * time.Second

// TestPendingBound: a create hung at an internal step outlives its
// caller (core/pending.go) until its bound, here shortened to 3 s. When
// the bound passes, the create is rolled back (the log says so and names
// the pod or container), nothing of it is listed, and kubelet's retry
// makes the pod or container anew; the life finishes and nothing leaks.
func TestPendingBound(t *testing.T) {
	c := faultCrid(t)
	c.env = []string{"CRID_FAULTS=RunPodSandbox/network=hang:1;CreateContainer/rootfs=hang:1",
		"CRID_FAULTS_PENDING_TIMEOUT=" + pendingBound.String()}
	l, before := startFaultLife(t, c)
	for _, s := range lifeSteps {
		if s == "RunPodSandbox" || s == "CreateContainer" {
			outliveBound(t, l, s)
			continue
		}
		if err := l.step(ctxT(t), s); err != nil {
			t.Fatalf("%s: %v\n%s", s, err, c.logTail())
		}
	}
	checkNothingLeft(t, c, before)
}

// outliveBound runs op (a create hung at its fault) under kubelet's
// deadline, waits for the create's bound and checks the rollback and
// kubelet's retry.
func outliveBound(t *testing.T, l *podLife, op string) {
	t.Helper()
	start := time.Now()
	timesOut(t, op+" hung past its caller's deadline", func(ctx context.Context) error { return l.step(ctx, op) })
	checkAnswering(t, l, op)
	// The log names the create: the pod's name, or the container's pod
	// and name.
	what := "pod " + l.pod.Metadata.Name + "_"
	if op == "CreateContainer" {
		what = "container " + l.podID + "/main/"
	}
	checkLogged(t, l.c, `msg="create passed its bound and was rolled back; a retry creates anew"`, `create="`+what)
	took := time.Since(start)
	t.Logf("%s rolled back %v after it began (bound %v)", op, took.Round(time.Millisecond), pendingBound)
	if took < pendingBound {
		t.Errorf("%s rolled back after %v, before its bound of %v", op, took, pendingBound)
	}
	if n := l.listed(t, op); n != 0 {
		t.Errorf("%d %s object(s) listed after the rollback at the bound", n, op)
	}
	if err := l.step(ctxT(t), op); err != nil {
		t.Fatalf("kubelet's retry of %s after the bound: %v\n%s", op, err, l.c.logTail())
	}
}

// listed counts what op makes that l's crid lists: pods for
// RunPodSandbox, the pod's containers for CreateContainer.
func (l *podLife) listed(t *testing.T, op string) int {
	t.Helper()
	if op == "RunPodSandbox" {
		r, err := l.c.rt.ListPodSandbox(ctxT(t), &runtime.ListPodSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return len(r.Items)
	}
	r, err := l.c.rt.ListContainers(ctxT(t), &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: l.podID}})
	if err != nil {
		t.Fatal(err)
	}
	return len(r.Containers)
}

// TestStopPodWithPendingCreate: kubelet stops and removes a pod while a
// create in it still runs, having outlived its caller (hung at a fault
// point). The stop cancels the create and waits for its rollback: a
// kubelet repeat waiting for the create gets FailedPrecondition saying the
// pod was stopped, the stop and the removal succeed, nothing of the pod or
// the container is left (no container runs in a removed pod), and the
// leak checker finds nothing. The same for the pod's own RunPodSandbox
// removed by its id while it is made (not listed yet: by an operator).
func TestStopPodWithPendingCreate(t *testing.T) {
	for _, tc := range []struct {
		name, point string
		stop        bool // StopPodSandbox before RemovePodSandbox
	}{
		{"CreateContainer/rootfs/stop-remove", "CreateContainer/rootfs=hang:1", true},
		{"CreateContainer/runtime-created/remove", "CreateContainer/runtime-created=hang:1", false},
		{"CreateContainer/spec-slow/stop-remove", "CreateContainer/spec=sleep:30s", true},
		{"RunPodSandbox/network/remove", "RunPodSandbox/network=hang:1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := faultCrid(t)
			c.env = []string{"CRID_FAULTS=" + tc.point}
			l, before := startFaultLife(t, c)
			op := strings.SplitN(tc.point, "/", 2)[0]
			if op == "CreateContainer" {
				if err := l.step(ctxT(t), "RunPodSandbox"); err != nil {
					t.Fatal(err)
				}
			}
			timesOut(t, op+" hung past its caller's deadline", func(ctx context.Context) error { return l.step(ctx, op) })
			// kubelet's repeat joins the create still running.
			repeat := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				repeat <- l.step(ctx, op)
			}()
			if op == "RunPodSandbox" {
				l.podID = pendingPodID(t, l)
			}
			checkAnswering(t, l, op)
			start := time.Now()
			steps := []string{"RemovePodSandbox"}
			if tc.stop {
				steps = []string{"StopPodSandbox", "RemovePodSandbox"}
			}
			for _, s := range steps {
				if err := l.step(ctxT(t), s); err != nil {
					t.Fatalf("%s with %s pending: %v\n%s", s, op, err, c.logTail())
				}
			}
			t.Logf("%v took %v with %s pending", steps, time.Since(start).Round(time.Millisecond), op)
			select {
			case err := <-repeat:
				t.Logf("the repeated %s: %v", op, err)
				if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "was stopped while this was being created") {
					t.Errorf("the repeated %s = %v, want FailedPrecondition saying the pod was stopped", op, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("the repeated %s still waits 10s after the pod's removal", op)
			}
			if n := l.listed(t, "RunPodSandbox"); n != 0 {
				t.Errorf("%d pod(s) listed after the removal", n)
			}
			if n := l.listed(t, "CreateContainer"); n != 0 {
				t.Errorf("%d container(s) of the removed pod listed", n)
			}
			if op == "CreateContainer" {
				// A create after the pod's removal finds no pod.
				if err := l.step(ctxT(t), op); status.Code(err) != codes.NotFound {
					t.Errorf("CreateContainer in the removed pod = %v, want NotFound", err)
				}
			} else {
				// kubelet makes the pod anew and lives its life.
				for _, s := range lifeSteps {
					if err := l.step(ctxT(t), s); err != nil {
						t.Fatalf("%s after the removal: %v\n%s", s, err, c.logTail())
					}
				}
			}
			checkNothingLeft(t, c, before)
		})
	}
}

// pendingPodID is the id of l's pod while its RunPodSandbox is still
// being made. ListPodSandbox does not show a pod before its first
// answer, so kubelet cannot reach it; an operator can, by the id in
// crid's dirs (or log): the test takes it from the state dir.
func pendingPodID(t *testing.T, l *podLife) string {
	t.Helper()
	dir := filepath.Join(l.c.base, "state", "sandboxes")
	var ids []string
	waitFor(5*time.Second, func() bool {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		ids = ids[:0]
		for _, e := range ents {
			ids = append(ids, e.Name())
		}
		return len(ids) > 0
	})
	if len(ids) != 1 {
		t.Fatalf("pods being made in %s: %v, want one", dir, ids)
	}
	if n := l.listed(t, "RunPodSandbox"); n != 0 {
		t.Errorf("%d pod(s) listed while the only one is being made, want none", n)
	}
	return ids[0]
}
