package e2e

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// exitCode is what the container of the exit-record cases exits with on
// its own, a second after its start.
const exitCode = 3

// TestStoreStalls stalls the store (docs/faults.md, "A stalled store") at
// writes that no RPC of kubelet's waits for (a container's exit, recorded
// when its monitor reports it) or that one waits for outside the pod's
// life (PullImage's image record): for 2 s (CI), and for ever
// (CRID_E2E_FAULTS_FULL=1). Meanwhile crid answers Version, the lists and
// the statuses; a call that needs the held write answers DeadlineExceeded
// at the caller's deadline, or its result on retry; a crid wedged for ever
// stops on SIGTERM within its shutdown bound; after a restart the exit is
// the container's own (not lost), kubelet's retries converge and the leak
// checker finds nothing. The first record of a pod wedged so is a case of
// TestBoundaryFaults.
func TestStoreStalls(t *testing.T) {
	full := os.Getenv("CRID_E2E_FAULTS_FULL") != ""
	for _, tc := range []struct {
		name, env string
		wedged    bool
	}{
		// A container's puts: its create's two records, its start's, then
		// its exit's (the 4th).
		{"slow/ContainerExit/store-put", "Store/put-containers=sleep:2s@4", false},
		{"slow/PullImage/store-put", "Store/put-images=sleep:2s", false},
		{"hang/ContainerExit/store-put", "Store/put-containers=hang@4", true},
		{"hang/PullImage/store-put", "Store/put-images=hang", true},
	} {
		if tc.wedged && !full {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			c := faultCrid(t)
			c.env = []string{"CRID_FAULTS=" + tc.env}
			if strings.Contains(tc.name, "PullImage") {
				stalledPull(t, c, tc.env, tc.wedged)
			} else {
				stalledExit(t, c, tc.env, tc.wedged)
			}
		})
	}
}

// stalledExit: the container exits on its own and the write of its exit
// record stalls.
func stalledExit(t *testing.T, c *harness, env string, wedged bool) {
	l, before := startFaultLife(t, c)
	if err := l.step(ctxT(t), "RunPodSandbox"); err != nil {
		t.Fatal(err)
	}
	cfg := containerConfig("main", "sh", "-c", "sleep 1; exit 3")
	r, err := c.rt.CreateContainer(ctxT(t), &runtime.CreateContainerRequest{PodSandboxId: l.podID, Config: cfg, SandboxConfig: l.pod})
	if err != nil {
		t.Fatal(err)
	}
	l.ctrID = r.ContainerId
	if err := l.step(ctxT(t), "StartContainer"); err != nil {
		t.Fatal(err)
	}
	checkLogged(t, c, `msg="fault injected" point=Store/put-containers`, "action=")
	// Reported exited from memory while its record waits.
	st := c.waitExited(t, l.ctrID, 5*time.Second)
	if st.ExitCode != exitCode {
		t.Errorf("exit code %d while the exit's record is held, want %d", st.ExitCode, exitCode)
	}
	checkAnswering(t, l, "the exit's record")
	if wedged {
		// kubelet removes the exited container: the removal waits for the
		// exit to be recorded, up to its caller's deadline.
		timesOut(t, "RemoveContainer while the exit's record hangs", func(ctx context.Context) error { return l.step(ctx, "RemoveContainer") })
		checkLoggedAnswer(t, c, "RuntimeService/RemoveContainer", "its exit is still being recorded")
		restartWedged(t, c, env)
	} else {
		// Once the write ends, the exit is recorded: a restart reads it.
		checkLogged(t, c, `msg="container exited"`, "container="+l.ctrID)
		c.stop(syscall.SIGTERM)
		c.env = nil
		if err := c.start(); err != nil {
			t.Fatal(err)
		}
	}
	// After a restart: the container's own exit, from its record or from
	// the monitor's exit file, not one made up.
	st = c.waitExited(t, l.ctrID, 10*time.Second)
	t.Logf("after the restart: exit %d, reason %q", st.ExitCode, st.Reason)
	if st.ExitCode != exitCode || st.Reason != "Error" {
		t.Errorf("after the restart the exit is %d (%q), want the container's own %d (Error)", st.ExitCode, st.Reason, exitCode)
	}
	for _, s := range []string{"RemoveContainer", "StopPodSandbox", "RemovePodSandbox"} {
		if err := l.step(ctxT(t), s); err != nil {
			t.Fatalf("%s: %v\n%s", s, err, c.logTail())
		}
	}
	checkNothingLeft(t, c, before)
}

// stalledPull: the write of a pulled image's record stalls.
func stalledPull(t *testing.T, c *harness, env string, wedged bool) {
	before := startBaseline(t, c)
	req := &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), kubeletDeadline)
		defer cancel()
		_, err := c.img.PullImage(ctx, req)
		done <- err
	}()
	checkLogged(t, c, `msg="fault injected" point=Store/put-images`, "action=")
	// The images are read from memory: not held by the write.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	if _, err := c.rt.Version(ctx, &runtime.VersionRequest{}); err != nil {
		t.Errorf("Version while the image's record is held: %v", err)
	}
	if _, err := c.img.ListImages(ctx, &runtime.ListImagesRequest{}); err != nil {
		t.Errorf("ListImages while the image's record is held: %v", err)
	}
	if _, err := c.img.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: req.Image}); err != nil {
		t.Errorf("ImageStatus while the image's record is held: %v", err)
	}
	if _, err := c.img.ImageFsInfo(ctx, &runtime.ImageFsInfoRequest{}); err != nil {
		t.Errorf("ImageFsInfo while the image's record is held: %v", err)
	}
	cancel()
	err := <-done
	t.Logf("PullImage answered: %v", err)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("PullImage with its record held = %v, want DeadlineExceeded", err)
	}
	if wedged {
		restartWedged(t, c, env)
	}
	resp, err := c.img.PullImage(ctxT(t), req)
	if err != nil {
		t.Fatalf("repeated pull: %v\n%s", err, c.logTail())
	}
	st, err := c.img.ImageStatus(ctxT(t), &runtime.ImageStatusRequest{Image: req.Image})
	if err != nil || st.Image == nil || st.Image.Id != resp.ImageRef {
		t.Fatalf("after the repeated pull ImageStatus = %v, %v, want %s", st, err, resp.ImageRef)
	}
	if _, err := c.img.RemoveImage(ctxT(t), &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: resp.ImageRef}}); err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, c, before)
}
