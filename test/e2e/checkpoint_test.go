package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/crid-dev/crid/internal/tartest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// counterScript writes a file, deletes one of the image's, and counts in
// /counter ten times a second: what a checkpoint must capture, and a way
// to see that the container goes on running after it.
const counterScript = `echo hello > /written.txt; rm /etc/group; i=0
while true; do i=$((i+1)); echo $i > /counter; sleep 0.1; done`

// hogScript holds 192 MiB and writes /counter once it does.
const hogScript = `dd if=/dev/zero bs=192M count=1 2>/dev/null | sleep 1000000 &
until [ "$(grep VmRSS /proc/$(pidof dd)/status | tr -dc 0-9)" -ge 190000 ] 2>/dev/null; do sleep 0.2; done
echo 1 > /counter; wait`

// criuWorks is whether `criu check` passes on this node (the development
// host's kernel fails it, the VM's passes).
func criuWorks() (bool, string) {
	out, err := exec.Command("criu", "check").CombinedOutput()
	if err != nil {
		return false, strings.TrimSpace(string(out)) + " (" + err.Error() + ")"
	}
	return true, ""
}

func checkpointCode(t *testing.T, ctx context.Context, req *runtime.CheckpointContainerRequest) (codes.Code, string) {
	t.Helper()
	_, err := h.rt.CheckpointContainer(ctx, req)
	return status.Code(err), status.Convert(err).Message()
}

func TestCheckpoint(t *testing.T) {
	pull(t, busybox)
	before := leakBaseline(t, h)
	out := t.TempDir()
	location := filepath.Join(out, "checkpoint.tar")
	pod := leakPodConfig(t)
	podID := runPod(t, pod, "")
	id := createStart(t, podID, pod, containerConfig("counter", "sh", "-c", counterScript))
	waitCounter(t, id, 1)

	t.Run("validation", func(t *testing.T) { checkpointValidation(t, podID, pod, id, location) })
	if ok, why := criuWorks(); !ok {
		t.Run("criu fails here", func(t *testing.T) { checkpointRefused(t, id, location, why) })
	} else {
		t.Run("archive", func(t *testing.T) { checkpointArchive(t, id, location) })
		t.Run("timeout", func(t *testing.T) { checkpointTimeout(t, podID, pod, out) })
	}
	if entries, _ := os.ReadDir(filepath.Join(h.base, "state", "checkpoints")); len(entries) != 0 {
		t.Errorf("checkpoint work dirs left in the state dir: %v", entries)
	}
	if _, err := h.rt.RemovePodSandbox(ctxT(t), &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	assertNoLeaks(t, h, before)
}

func checkpointValidation(t *testing.T, podID string, pod *runtime.PodSandboxConfig, id, location string) {
	ctx := ctxT(t)
	cr, err := h.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: containerConfig("created", "true"), SandboxConfig: pod})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  *runtime.CheckpointContainerRequest
		code codes.Code
		msg  string
	}{
		{"no id", &runtime.CheckpointContainerRequest{Location: location}, codes.InvalidArgument, "id is required"},
		{"no location", &runtime.CheckpointContainerRequest{ContainerId: id}, codes.InvalidArgument, "location is required"},
		{"relative location", &runtime.CheckpointContainerRequest{ContainerId: id, Location: "c.tar"}, codes.InvalidArgument, "absolute"},
		{"location in a missing dir", &runtime.CheckpointContainerRequest{ContainerId: id, Location: filepath.Join(location, "x", "c.tar")}, codes.InvalidArgument, "does not exist"},
		{"negative timeout", &runtime.CheckpointContainerRequest{ContainerId: id, Location: location, Timeout: -1}, codes.InvalidArgument, "negative"},
		{"unknown container", &runtime.CheckpointContainerRequest{ContainerId: "nosuch", Location: location}, codes.NotFound, "nosuch"},
		{"not running", &runtime.CheckpointContainerRequest{ContainerId: cr.ContainerId, Location: location}, codes.FailedPrecondition, "only a running container"},
	} {
		code, msg := checkpointCode(t, ctx, tc.req)
		if code != tc.code || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s: %v %q, want %v containing %q", tc.name, code, msg, tc.code, tc.msg)
		}
	}
	assertNothingAt(t, location)

	// Restore from an archive (CRI-O's and containerd's CreateContainer
	// with the archive as the image) is not done: said so, not NotFound.
	archive := filepath.Join(t.TempDir(), "archive.tar")
	if err := os.WriteFile(archive, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rcfg := containerConfig("restored", "true")
	rcfg.Image.Image = archive
	_, err = h.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: rcfg, SandboxConfig: pod})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "checkpoint archive") {
		t.Errorf("CreateContainer from an archive: %v, want Unimplemented", err)
	}
}

// checkpointRefused: where criu does not work, the answer says so.
func checkpointRefused(t *testing.T, id, location, why string) {
	t.Logf("criu check fails here: %s", why)
	code, msg := checkpointCode(t, ctxT(t), &runtime.CheckpointContainerRequest{ContainerId: id, Location: location})
	if code != codes.FailedPrecondition || !strings.Contains(msg, "criu") || !strings.Contains(msg, "checkpointing needs criu") {
		t.Errorf("checkpoint where criu fails: %v %q, want FailedPrecondition saying checkpointing needs criu", code, msg)
	}
	t.Logf("answer: %v %s", code, msg)
	assertNothingAt(t, location)
	if st := containerStatus(t, id); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container is %v after a refused checkpoint", st.State)
	}
}

func checkpointArchive(t *testing.T, id, location string) {
	ctx := ctxT(t)
	start := time.Now()
	if _, err := h.rt.CheckpointContainer(ctx, &runtime.CheckpointContainerRequest{ContainerId: id, Location: location}); err != nil {
		t.Fatalf("CheckpointContainer: %v\ncrid log:\n%s", err, h.logTail())
	}
	t.Logf("checkpoint took %v", time.Since(start))
	// Forensic: the container goes on, and so does its counter.
	if st := containerStatus(t, id); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container is %v after the checkpoint", st.State)
	}
	n := readCounter(t, id)
	waitCounter(t, id, n+3)

	fi, err := os.Stat(location)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("archive mode %v, want 0600", fi.Mode().Perm())
	}
	files := readArchive(t, location)
	t.Logf("archive: %d bytes, %v", fi.Size(), keys(files))
	checkArchive(t, id, files)

	// A second checkpoint to the same location replaces the archive.
	if _, err := h.rt.CheckpointContainer(ctx, &runtime.CheckpointContainerRequest{ContainerId: id, Location: location}); err != nil {
		t.Fatalf("second CheckpointContainer: %v", err)
	}
	fi2, err := os.Stat(location)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(fi, fi2) {
		t.Error("the second checkpoint did not replace the archive")
	}
	checkArchive(t, id, readArchive(t, location))
	if names := dirEntries(t, filepath.Dir(location)); !slices.Equal(names, []string{filepath.Base(location)}) {
		t.Errorf("beside the archive: %v, want only it", names)
	}
}

// checkArchive reads the archive as checkpointctl does.
func checkArchive(t *testing.T, id string, files map[string][]byte) {
	t.Helper()
	for _, want := range []string{metadata.ConfigDumpFile, metadata.SpecDumpFile, metadata.StatusDumpFile,
		metadata.RootFsDiffTar, metadata.DeletedFilesFile, metadata.DumpLogFile, "checkpoint/inventory.img"} {
		if _, ok := files[want]; !ok {
			t.Errorf("archive lacks %s", want)
		}
	}
	pages := 0
	for name := range files {
		if strings.HasPrefix(name, metadata.CheckpointDirectory+"/"+metadata.PagesPrefix) {
			pages++
		}
	}
	if pages == 0 {
		t.Errorf("archive has no criu memory pages (checkpoint/pages-*.img): %v", keys(files))
	}
	dir := t.TempDir()
	for _, name := range []string{metadata.ConfigDumpFile, metadata.SpecDumpFile, metadata.DeletedFilesFile} {
		if err := os.WriteFile(filepath.Join(dir, name), files[name], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, _, err := metadata.ReadContainerCheckpointConfigDump(dir)
	if err != nil || cfg.ID != id || cfg.RootfsImageName != busybox || cfg.CheckpointedAt.IsZero() {
		t.Errorf("config.dump = %+v, %v", cfg, err)
	}
	spec, _, err := metadata.ReadContainerCheckpointSpecDump(dir)
	if err != nil || spec.Process == nil || spec.Annotations["io.kubernetes.cri.container-name"] != "counter" {
		t.Errorf("spec.dump does not parse as the container's spec: %v", err)
	}
	deleted, _, err := metadata.ReadContainerCheckpointDeletedFiles(dir)
	if err != nil || !slices.Contains(deleted, "/etc/group") {
		t.Errorf("deleted.files = %v, %v; want /etc/group", deleted, err)
	}
	_, diff := tartest.Read(t, bytes.NewReader(files[metadata.RootFsDiffTar]))
	if string(diff["written.txt"]) != "hello\n" {
		t.Errorf("rootfs-diff.tar written.txt = %q, entries %v", diff["written.txt"], keys(diff))
	}
	if _, err := strconv.Atoi(strings.TrimSpace(string(diff["counter"]))); err != nil {
		t.Errorf("rootfs-diff.tar counter = %q", diff["counter"])
	}
	if _, ok := diff["etc/hosts"]; ok {
		t.Error("rootfs-diff.tar has the /etc/hosts mount point")
	}
}

// checkpointTimeout: a checkpoint that cannot finish in its timeout
// fails DeadlineExceeded and leaves nothing, the container running.
func checkpointTimeout(t *testing.T, podID string, pod *runtime.PodSandboxConfig, out string) {
	// 192 MiB of memory to dump (dd's buffer, filled from /dev/zero, held
	// while dd blocks writing to a pipe nobody reads): more than a
	// second's work for criu. Under the VM's emulation even the counter
	// takes 3 s.
	hog := createStart(t, podID, pod, containerConfig("hog", "sh", "-c", hogScript))
	waitCounter(t, hog, 1)
	location := filepath.Join(out, "hog.tar")
	start := time.Now()
	code, msg := checkpointCode(t, ctxT(t), &runtime.CheckpointContainerRequest{ContainerId: hog, Location: location, Timeout: 1})
	t.Logf("checkpoint with timeout 1s: %v %q after %v", code, msg, time.Since(start))
	if code != codes.DeadlineExceeded {
		t.Errorf("checkpoint with a 1s timeout: %v %q, want DeadlineExceeded", code, msg)
	}
	assertNothingAt(t, location)
	if st := containerStatus(t, hog); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container is %v after a timed out checkpoint", st.State)
	}
	// Not left frozen: it still runs commands.
	if r := execSync(t, hog, 30, "cat", "/counter"); strings.TrimSpace(string(r.Stdout)) != "1" {
		t.Errorf("exec after a timed out checkpoint: %q %q", r.Stdout, r.Stderr)
	}
	// A client that gives up earlier: crid stops and cleans up too.
	ctx, cancel := context.WithTimeout(ctxT(t), 100*time.Millisecond)
	defer cancel()
	if code, msg := checkpointCode(t, ctx, &runtime.CheckpointContainerRequest{ContainerId: hog, Location: location}); code != codes.DeadlineExceeded {
		t.Errorf("checkpoint with a 100ms deadline: %v %q", code, msg)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, _ := os.ReadDir(filepath.Join(h.base, "state", "checkpoints"))
		if len(entries) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a cancelled checkpoint left %v", entries)
		}
		time.Sleep(100 * time.Millisecond)
	}
	assertNothingAt(t, location)
}

func assertNothingAt(t *testing.T, location string) {
	t.Helper()
	if _, err := os.Lstat(location); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists after a failed checkpoint (%v)", location, err)
	}
	for _, n := range dirEntries(t, filepath.Dir(location)) {
		if strings.Contains(n, ".tmp-") {
			t.Errorf("temporary file %s left beside the location", n)
		}
	}
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func readCounter(t *testing.T, id string) int {
	t.Helper()
	r := execSync(t, id, 30, "cat", "/counter")
	n, err := strconv.Atoi(strings.TrimSpace(string(r.Stdout)))
	if err != nil {
		return 0 // being rewritten
	}
	return n
}

// waitCounter waits until the container's counter reaches n.
func waitCounter(t *testing.T, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for readCounter(t, id) < n {
		if time.Now().After(deadline) {
			t.Fatalf("counter of %s never reached %d", id, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readArchive(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, files := tartest.Read(t, f)
	return files
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
