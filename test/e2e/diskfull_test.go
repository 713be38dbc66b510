package e2e

// Disk full (issue 16): a crid whose root and state are small tmpfs. A pull of an
// image bigger than the disk fails with ResourceExhausted naming the
// filesystem, is never listed and leaves the disk as it found it, so that
// an image that fits still does; a running container keeps running; with
// the disk filled by someone else, pulls (and creations, if they need
// room) fail cleanly and work again once the space is freed, as does a
// creation whose spec cannot be written to a full state; and nothing
// is left when everything is removed.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crid-dev/crid/test/e2e/leakcheck"
	"github.com/crid-dev/crid/test/images"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// diskFullSize is the root filesystem of the test's crid: room for the
// pause and busybox images and a few tens of MiB more.
const diskFullSize = 64 << 20

// diskFullStateSize is the state filesystem of the test's crid (bundles,
// specs, pins), as /run would be.
const diskFullStateSize = 16 << 20

// startSmallRootCrid starts a private crid whose root and state are
// tmpfs of rootSize and stateSize bytes. Layers are downloaded one at a
// time, so that a pull too big for the disk has completed some of them
// when it runs out of room.
func startSmallRootCrid(t *testing.T, rootSize, stateSize int) *harness {
	t.Helper()
	c := secondHarness(t, "nospc")
	root := filepath.Join(c.base, "root")
	for dir, size := range map[string]int{root: rootSize, filepath.Join(c.base, "state"): stateSize} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		// Unmounted by the harness' cleanup (unmountUnder), after its pods.
		if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
			t.Fatalf("mount tmpfs on %s: %v", dir, err)
		}
	}
	var regs strings.Builder
	for _, host := range []string{"registry.k8s.io", "k8s.gcr.io", "gcr.io", "docker.io"} {
		fmt.Fprintf(&regs, "[[images.registries]]\nhost = %q\nmirrors = [\"http://%s/%s\"]\nfallback = false\n", host, h.registry, host)
	}
	cfg := fmt.Sprintf(`root = %q
state = %q
socket = %q
log_level = "debug"
[images]
sandbox_image = "registry.k8s.io/pause:3.10"
max_concurrent_downloads = 1
%s
[runtime.handlers.runc]
path = "/usr/local/sbin/runc"
[network]
conf_dir = %q
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin", %q]
`, root, filepath.Join(c.base, "state"), c.socket, regs.String(), filepath.Join(h.base, "cni"), filepath.Join(h.base, "cnibin"))
	if err := os.WriteFile(c.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	return c
}

// fsUsed and fsFree are the bytes used and available on dir's filesystem.
func fsUsed(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

func fsFree(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// pushFiller pushes busybox plus n layers of size random bytes as ref.
func pushFiller(t *testing.T, ref string, seed uint64, n int, size int64) {
	t.Helper()
	cat, err := images.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	img, err := images.WithFiller(cat[busybox], seed, n, size)
	if err != nil {
		t.Fatal(err)
	}
	if err := images.Push(ctxT(t), h.registry, map[string]v1.Image{ref: img}); err != nil {
		t.Fatal(err)
	}
}

// listed reports whether c lists an image tagged ref.
func listed(t *testing.T, c *harness, ref string) bool {
	t.Helper()
	list, err := c.img.ListImages(ctxT(t), &runtime.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(list.Images, func(img *runtime.Image) bool { return slices.Contains(img.RepoTags, ref) })
}

// wantFullPull pulls ref on c and fails t unless it is refused with
// ResourceExhausted naming root's filesystem and ref is not listed.
func wantFullPull(t *testing.T, c *harness, ref, root string) {
	t.Helper()
	_, err := c.img.PullImage(ctxT(t), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("pull of %s on a full disk: %v, want ResourceExhausted\ncrid log:\n%s", ref, err, c.logTail())
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "no space on tmpfs "+root) {
		t.Errorf("the error does not name the filesystem (tmpfs %s): %s", root, msg)
	}
	if listed(t, c, ref) {
		t.Errorf("%s is listed after its pull failed", ref)
	}
}

// fill writes a file into dir until its filesystem is full and returns
// its path (someone else taking the disk).
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "ballast")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			return p
		}
	}
}

// createStartOn creates and starts a container of image running sleep on c.
// A command may follow the image.
func createStartOn(t *testing.T, c *harness, podID string, pod *runtime.PodSandboxConfig, name, image string, cmd ...string) (string, error) {
	t.Helper()
	if len(cmd) == 0 {
		cmd = []string{"sleep", "1000"}
	}
	cfg := containerConfig(name, cmd...)
	cfg.Image = &runtime.ImageSpec{Image: image}
	cr, err := c.rt.CreateContainer(ctxT(t), &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
	if err != nil {
		return "", err
	}
	if _, err := c.rt.StartContainer(ctxT(t), &runtime.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatalf("StartContainer %s: %v", name, err)
	}
	return cr.ContainerId, nil
}

// wantNothingNew fails t if c holds anything (objects, mounts, runtime
// state, processes...) it did not at before, or lists a container that
// is not running.
func wantNothingNew(t *testing.T, c *harness, before leakcheck.Snapshot, after string) {
	t.Helper()
	leaks, err := leakcheck.Check(ctxT(t), c.leakTarget(), before, leakcheck.DefaultSlack, leakWait)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leaks {
		t.Errorf("left by %s: %s", after, l)
	}
	list, err := c.rt.ListContainers(ctxT(t), &runtime.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ctr := range list.Containers {
		if ctr.State != runtime.ContainerState_CONTAINER_RUNNING {
			t.Errorf("listed after %s: %s (%v)", after, ctr.Metadata.Name, ctr.State)
		}
	}
}

// wantLogGrows fails t unless the CRI log at path grows within 10s.
func wantLogGrows(t *testing.T, path string) {
	t.Helper()
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	start := size()
	deadline := time.Now().Add(10 * time.Second)
	for size() == start {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not grow once its filesystem had room again", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wantRunning fails t unless container id of c runs and execs.
func wantRunning(t *testing.T, c *harness, id, when string) {
	t.Helper()
	st, err := c.rt.ContainerStatus(ctxT(t), &runtime.ContainerStatusRequest{ContainerId: id})
	if err != nil || st.Status.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("%s: container %s: %v, %v", when, id, st, err)
	}
	r, err := c.rt.ExecSync(ctxT(t), &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"echo", "alive"}, Timeout: 10})
	if err != nil || strings.TrimSpace(string(r.Stdout)) != "alive" {
		t.Errorf("%s: exec in %s: %v, %v", when, id, r, err)
	}
}

func TestDiskFullPull(t *testing.T) {
	c := startSmallRootCrid(t, diskFullSize, diskFullStateSize)
	root, state := filepath.Join(c.base, "root"), filepath.Join(c.base, "state")
	ctx := ctxT(t)
	for _, ref := range []string{images.Pause310, busybox} {
		if _, err := c.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}}); err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
	}
	before, err := leakcheck.Take(ctx, c.leakTarget())
	if err != nil {
		t.Fatal(err)
	}
	pod := podConfig(t)
	pod.Linux.CgroupParent = leakCgroupParent
	// Container logs on a small filesystem of their own, to fill.
	pod.LogDirectory = filepath.Join(c.base, "logs")
	if err := os.MkdirAll(pod.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", pod.LogDirectory, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", pod.LogDirectory, err)
	}
	rp, err := c.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\ncrid log:\n%s", err, c.logTail())
	}
	podID := rp.PodSandboxId
	running, err := createStartOn(t, c, podID, pod, "running", busybox)
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	talker, err := createStartOn(t, c, podID, pod, "talker", busybox, "sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.05; done")
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}

	// big does not fit: two layers of 3/4 of the free space each, so
	// its first layer is complete when the second runs out of room.
	// medium (one layer, its blob and its snapshot together 3/4 of the
	// free space) fits only if nothing of big is left.
	free := fsFree(t, root)
	big, medium := "docker.io/library/nospc-big:1", "docker.io/library/nospc-medium:1"
	pushFiller(t, big, 1, 2, free*3/4)
	pushFiller(t, medium, 2, 1, free*3/8)
	used, store := fsUsed(t, root), du(t, filepath.Join(root, "content"))+du(t, filepath.Join(root, "snapshots"))
	wantFullPull(t, c, big, root)
	usedAfter, storeAfter := fsUsed(t, root), du(t, filepath.Join(root, "content"))+du(t, filepath.Join(root, "snapshots"))
	t.Logf("root (tmpfs of %d MiB, %.1f MiB free): used %d bytes before the failed pull of %.1f MiB, %d after; image store %d, %d",
		diskFullSize>>20, float64(free)/(1<<20), used, float64(2*free*3/4)/(1<<20), usedAfter, store, storeAfter)
	if usedAfter != used || storeAfter != store {
		t.Errorf("the failed pull left %d bytes on the root (%d in the image store)", usedAfter-used, storeAfter-store)
	}
	if _, err := c.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: medium}}); err != nil {
		t.Fatalf("pull of an image that fits, after the failed one: %v\ncrid log:\n%s", err, c.logTail())
	}
	wantRunning(t, c, running, "after the failed pull")

	// Someone else fills the disk: a pull fails cleanly, and so does a
	// creation if it needs room; everything works once the room is back.
	small := "docker.io/library/nospc-small:1"
	pushFiller(t, small, 3, 1, 2<<20)
	ballast := fill(t, root)
	wantFullPull(t, c, small, root)
	objects, err := leakcheck.Take(ctx, c.leakTarget())
	if err != nil {
		t.Fatal(err)
	}
	if id, err := createStartOn(t, c, podID, pod, "on-full-disk", busybox); err != nil {
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("CreateContainer on a full disk: %v, want ResourceExhausted", err)
		}
		t.Logf("CreateContainer on a full disk: %v", err)
		wantNothingNew(t, c, objects, "the failed CreateContainer")
	} else {
		// The record fit in pages meta.db had free: removed, so that the
		// next step compares against objects.
		t.Logf("CreateContainer on a full disk succeeded (%s): it needed no room", id)
		if _, err := c.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("RemoveContainer %s: %v", id, err)
		}
	}
	if rp, err := c.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: leakPodConfig(t)}); err != nil {
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("RunPodSandbox on a full disk: %v, want ResourceExhausted", err)
		}
		t.Logf("RunPodSandbox on a full disk: %v", err)
		wantNothingNew(t, c, objects, "the failed RunPodSandbox")
	} else {
		t.Logf("RunPodSandbox on a full disk succeeded (%s): it needed no room", rp.PodSandboxId)
		if _, err := c.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: rp.PodSandboxId}); err != nil {
			t.Fatalf("RemovePodSandbox %s: %v", rp.PodSandboxId, err)
		}
	}
	wantRunning(t, c, running, "with the disk full")
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}

	// The logs' filesystem full: the talker's output is dropped, it keeps
	// running, and its log goes on once there is room again.
	logBallast := fill(t, pod.LogDirectory)
	time.Sleep(time.Second)
	wantRunning(t, c, talker, "with its log's filesystem full")
	if err := os.Remove(logBallast); err != nil {
		t.Fatal(err)
	}
	wantLogGrows(t, filepath.Join(pod.LogDirectory, "talker.log"))

	// The state filesystem full: the bundle's spec cannot be written.
	stateBallast := fill(t, state)
	_, err = createStartOn(t, c, podID, pod, "on-full-state", busybox)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "no space on tmpfs "+state) {
		t.Errorf("CreateContainer with the state full: %v, want ResourceExhausted naming tmpfs %s", err, state)
	}
	t.Logf("CreateContainer with the state full: %v", err)
	wantNothingNew(t, c, objects, "the CreateContainer on a full state")
	wantRunning(t, c, running, "with the state full")
	if err := os.Remove(stateBallast); err != nil {
		t.Fatal(err)
	}

	if _, err := c.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: small}}); err != nil {
		t.Fatalf("pull once the disk has room again: %v\ncrid log:\n%s", err, c.logTail())
	}
	id, err := createStartOn(t, c, podID, pod, "after", small)
	if err != nil {
		t.Fatalf("CreateContainer once the disk has room again: %v\ncrid log:\n%s", err, c.logTail())
	}
	wantRunning(t, c, id, "created once the disk had room again")

	if _, err := c.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	leaks, err := leakcheck.Check(ctx, c.leakTarget(), before, leakcheck.DefaultSlack, leakWait)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leaks {
		t.Errorf("left behind: %s", l)
	}
}
