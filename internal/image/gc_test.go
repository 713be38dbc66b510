package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/store"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/moby/sys/mountinfo"
	digest "github.com/opencontainers/go-digest"
)

// Environment of the crash child (TestMain): the store to collect in, the
// image to remove and the point at which the child kills itself.
const (
	envCrashRoot  = "CRID_TEST_GC_CRASH_ROOT"
	envCrashImage = "CRID_TEST_GC_CRASH_IMAGE"
	envCrashPoint = "CRID_TEST_GC_CRASH_POINT"
)

func TestMain(m *testing.M) {
	if root := os.Getenv(envCrashRoot); root != "" {
		crashChild(root, os.Getenv(envCrashImage), os.Getenv(envCrashPoint))
		return
	}
	os.Exit(m.Run())
}

// crashChild opens the store at root, removes image and collects, killing
// itself with SIGKILL at point. It exits 0 only if the point never came.
func crashChild(root, image, point string) {
	die := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(3)
	}
	kill := func() {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
	st, err := store.Open(filepath.Join(root, "meta.db"))
	if err != nil {
		die(err)
	}
	// The start's own collection has nothing to do: the parent left a
	// consistent store. The hook is armed only for the collection below.
	var armed atomic.Bool
	hook := func(p string) {
		if armed.Load() && p == point {
			kill()
		}
	}
	remove := os.RemoveAll
	if point == "half-deleted" {
		// Delete part of the first victim's files, then die.
		remove = func(p string) error {
			if !armed.Load() {
				return os.RemoveAll(p)
			}
			if err := removeSome(p); err != nil {
				die(err)
			}
			kill()
			return nil
		}
	}
	s, err := New(config.Images{MaxConcurrentDownloads: 1}, root, st, withCollectHooks(hook, remove))
	if err != nil {
		die(err)
	}
	armed.Store(true)
	if err := s.Remove(context.Background(), image, nil); err != nil {
		die(err)
	}
	if _, err := s.Collect(context.Background()); err != nil {
		die(err)
	}
	os.Exit(0)
}

// removeSome deletes the regular files in the first half of the tree p,
// leaving it half-deleted; a file alone is truncated instead, so that it is
// still there but no longer whole.
func removeSome(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return os.Truncate(p, fi.Size()/2)
	}
	var files []string
	err = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, q)
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, f := range files[:(len(files)+1)/2] {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	return nil
}

// withCollectHooks makes collections call crashAt at named points and
// delete trash entries with remove (tests only).
func withCollectHooks(crashAt func(point string), remove func(string) error) Option {
	return func(s *Service) {
		s.gc.crashAt = crashAt
		s.gc.remove = remove
	}
}

// storeUsage is the allocated bytes of content and snapshots together, the
// same walk FsInfo does, measured independently of it.
func storeUsage(t *testing.T, s *Service) int64 {
	t.Helper()
	var total int64
	for _, d := range []string{s.contentDir, s.snapshotDir} {
		b, _, err := diskUsage(d)
		if err != nil {
			t.Fatal(err)
		}
		total += int64(b)
	}
	return total
}

// orphans lists what a consistent, idle store has none of: snapshots and
// blobs no record references, and anything in the trash, the ingest dir or
// a .tmp- snapshot.
func orphans(t *testing.T, s *Service) []string {
	t.Helper()
	keep := map[string]bool{}
	for _, img := range s.List() {
		for _, c := range chainIDs(img.DiffIDs) {
			keep[c.Encoded()] = true
		}
		for _, b := range img.Blobs {
			keep[b.Encoded()] = true
		}
	}
	var out []string
	for _, d := range []string{s.snapshotDir, s.blobDir(), s.trashDir(), s.ingestDir()} {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			isStore := d == s.snapshotDir || d == s.blobDir()
			if (isStore && keep[e.Name()]) || (d == s.snapshotDir && e.Name() == filepath.Base(s.emptyDir())) {
				continue
			}
			out = append(out, filepath.Join(d, e.Name()))
		}
	}
	return out
}

// checkConsistent fails t unless every image resolves with all its blobs
// and snapshots present and nothing else is in the store.
func checkConsistent(t *testing.T, s *Service) {
	t.Helper()
	for _, img := range s.List() {
		if _, err := s.Resolve(img.ID); err != nil {
			t.Errorf("listed image %s does not resolve: %v", img.ID, err)
		}
		for _, c := range chainIDs(img.DiffIDs) {
			if _, err := os.Stat(s.snapshotFs(c)); err != nil {
				t.Errorf("image %s lost snapshot %s: %v", img.ID, c, err)
			}
		}
		for _, b := range img.Blobs {
			if _, err := os.Stat(s.blobPath(b)); err != nil {
				t.Errorf("image %s lost blob %s: %v", img.ID, b, err)
			}
		}
	}
	if o := orphans(t, s); len(o) > 0 {
		t.Errorf("orphans in the store: %v", o)
	}
}

// filler is n bytes of content that differs per seed.
func filler(seed uint64, n int) string {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(r.IntN(26))
	}
	return string(b)
}

// sharedPair pushes two images on one base layer: a (two layers of its
// own) and b (one), of sizes that make the accounting visible.
func sharedPair(t *testing.T, reg *testRegistry) (a, b v1.Image) {
	t.Helper()
	base := testLayer(t,
		entry{name: "bin/", typ: tar.TypeDir},
		entry{name: "bin/sh", content: "#!shell", mode: 0o755},
		entry{name: "etc/", typ: tar.TypeDir},
		entry{name: "etc/base", content: filler(1, 300<<10)},
	)
	a = testImage(t, "", base,
		testLayer(t, entry{name: "a1", content: filler(2, 200<<10)}),
		testLayer(t, entry{name: "a2", content: filler(3, 100<<10)}, entry{name: "etc/motd", content: "a"}))
	b = testImage(t, "", base, testLayer(t, entry{name: "b1", content: filler(4, 150<<10)}, entry{name: "etc/motd", content: "b"}))
	reg.push(t, "registry.k8s.io/a:1", a)
	reg.push(t, "registry.k8s.io/b:1", b)
	return a, b
}

// ownBytes is what only img holds in the store (not shared with other):
// its own snapshots and blobs.
func ownBytes(t *testing.T, s *Service, img, other *Image) int64 {
	t.Helper()
	shared := map[digest.Digest]bool{}
	for _, c := range chainIDs(other.DiffIDs) {
		shared[c] = true
	}
	var total int64
	add := func(p string) {
		n, _, err := diskUsage(p)
		if err != nil {
			t.Fatal(err)
		}
		total += int64(n)
	}
	for _, c := range chainIDs(img.DiffIDs) {
		if !shared[c] {
			add(filepath.Join(s.snapshotDir, c.Encoded()))
		}
	}
	for _, b := range img.Blobs {
		if !slices.Contains(other.Blobs, b) {
			add(s.blobPath(b))
		}
	}
	return total
}

// checkRuns mounts img as a container rootfs and checks a file of each
// layer: the base's and the image's own motd.
func checkRuns(t *testing.T, s *Service, img *Image, motd string) {
	t.Helper()
	ctx := context.Background()
	rw, target := filepath.Join(t.TempDir(), "rw"), filepath.Join(t.TempDir(), "rootfs")
	if err := s.PrepareRootfs(ctx, img, rw, target); err != nil {
		t.Fatalf("rootfs of %s: %v", img.ID, err)
	}
	defer func() {
		if err := s.ReleaseRootfs(ctx, rw, target); err != nil {
			t.Error(err)
		}
	}()
	if b, err := os.ReadFile(filepath.Join(target, "etc", "motd")); err != nil || string(b) != motd {
		t.Errorf("rootfs etc/motd = %q, %v; want %q", b, err, motd)
	}
	if b, err := os.ReadFile(filepath.Join(target, "etc", "base")); err != nil || string(b) != filler(1, 300<<10) {
		t.Errorf("rootfs etc/base: %d bytes, %v", len(b), err)
	}
}

type freedRecorder struct {
	mu    sync.Mutex
	calls []string
	bytes int64
}

func (f *freedRecorder) onFreed(kind string, n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, kind)
	f.bytes += n
}

func (f *freedRecorder) total() (int64, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bytes, slices.Clone(f.calls)
}

// openService opens a service on root with its own store handle.
func openService(t *testing.T, cfg config.Images, root string, opts ...Option) *Service {
	t.Helper()
	st, err := store.Open(filepath.Join(root, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := New(cfg, root, st, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Two images share a base layer; removing one frees exactly what the
// other does not use, FsInfo reports the disk as it is after, and the
// other image still makes a container rootfs.
func TestCollectFreesExactlyUnsharedBytes(t *testing.T) {
	reg := newTestRegistry(t)
	sharedPair(t, reg)
	var freed freedRecorder
	s := openService(t, mirrorConfig(reg), t.TempDir(), WithOnFreed(freed.onFreed))
	ctx := context.Background()
	a, err := s.Pull(ctx, "registry.k8s.io/a:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Pull(ctx, "registry.k8s.io/b:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, s)
	before := storeUsage(t, s)
	want := ownBytes(t, s, a, b)
	if want < 300<<10 {
		t.Fatalf("a's own layers take %d bytes, want at least its 300 KiB of files", want)
	}
	if err := s.Remove(ctx, "registry.k8s.io/a:1", func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	// The record is gone at once, the files only when the collector runs.
	if got := storeUsage(t, s); got != before {
		t.Errorf("Remove freed %d bytes itself; the collector frees them", before-got)
	}
	c, err := s.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after := storeUsage(t, s)
	t.Logf("store %d -> %d bytes; a's own %d; collection %+v", before, after, want, c)
	if before-after != want || c.Bytes != want {
		t.Errorf("freed %d bytes on disk, collection says %d; want exactly a's own %d", before-after, c.Bytes, want)
	}
	if c.Snapshots != 2 || c.Blobs != 2 {
		t.Errorf("collected %d snapshots and %d blobs, want a's 2 layers and its config and manifest", c.Snapshots, c.Blobs)
	}
	if n, kinds := freed.total(); n != want || !slices.Equal(kinds, []string{"images"}) {
		t.Errorf("OnFreed got %d bytes in calls %v, want %d in one images call", n, kinds, want)
	}
	u, err := s.FsInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if int64(u.UsedBytes) != after {
		t.Errorf("FsInfo says %d bytes used, the disk %d", u.UsedBytes, after)
	}
	checkConsistent(t, s)
	checkRuns(t, s, b, "b")
	// Nothing more to free.
	if c, err := s.Collect(ctx); err != nil || c.Bytes != 0 || c.Snapshots+c.Blobs != 0 {
		t.Errorf("second collection: %+v, %v", c, err)
	}
}

// The background collector frees a removed image's files right after
// RemoveImage, without waiting for its interval.
func TestRunCollectorAfterRemove(t *testing.T) {
	reg := newTestRegistry(t)
	sharedPair(t, reg)
	cfg := mirrorConfig(reg)
	cfg.GCInterval = config.Duration{Duration: time.Hour}
	var freed freedRecorder
	s := openService(t, cfg, t.TempDir(), WithOnFreed(freed.onFreed))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.RunCollector(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for _, ref := range []string{"registry.k8s.io/a:1", "registry.k8s.io/b:1"} {
		if _, err := s.Pull(ctx, ref, nil); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := s.Resolve("registry.k8s.io/a:1")
	b, _ := s.Resolve("registry.k8s.io/b:1")
	want := ownBytes(t, s, a, b)
	if err := s.Remove(ctx, a.ID, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the collector to free a's layers", func() bool { n, _ := freed.total(); return n == want })
	checkConsistent(t, s)
	checkRuns(t, s, b, "b")
}

// Leftovers nothing asks the collector about are freed on its interval.
func TestRunCollectorPeriodic(t *testing.T) {
	reg := newTestRegistry(t)
	sharedPair(t, reg)
	cfg := mirrorConfig(reg)
	cfg.GCInterval = config.Duration{Duration: 200 * time.Millisecond}
	s := openService(t, cfg, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.RunCollector(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	b, err := s.Pull(ctx, "registry.k8s.io/b:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	// A snapshot and a blob no record names (as an older crid could leave).
	junk := filepath.Join(s.snapshotDir, strings.Repeat("ab", 32))
	if err := os.MkdirAll(filepath.Join(junk, "fs"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(junk, "fs", "f"), []byte(filler(5, 64<<10)), 0o600); err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(s.blobDir(), strings.Repeat("cd", 32))
	if err := os.WriteFile(blob, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the periodic collection", func() bool { return len(orphans(t, s)) == 0 })
	checkConsistent(t, s)
	checkRuns(t, s, b, "b")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A pull racing a collection that frees an image sharing its base layer
// never loses a layer: the pull either sees the layer freed and fetches it
// again, or the collection sees the pull's mark and keeps it.
func TestPullConcurrentWithCollect(t *testing.T) {
	reg := newTestRegistry(t)
	sharedPair(t, reg)
	s := openService(t, mirrorConfig(reg), t.TempDir())
	ctx := context.Background()
	iterations := 40
	if testing.Short() {
		iterations = 10
	}
	for i := range iterations {
		if _, err := s.Pull(ctx, "registry.k8s.io/b:1", nil); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var pullErr, gcErr error
		var a *Image
		wg.Add(2)
		go func() {
			defer wg.Done()
			a, pullErr = s.Pull(ctx, "registry.k8s.io/a:1", nil)
		}()
		go func() {
			defer wg.Done()
			// Vary where the collection lands within the pull.
			time.Sleep(time.Duration(i%8) * time.Millisecond)
			if err := s.Remove(ctx, "registry.k8s.io/b:1", nil); err != nil {
				gcErr = err
				return
			}
			for range 3 {
				if _, err := s.Collect(ctx); err != nil {
					gcErr = err
					return
				}
			}
		}()
		wg.Wait()
		if pullErr != nil || gcErr != nil {
			t.Fatalf("iteration %d: pull: %v; remove and collect: %v", i, pullErr, gcErr)
		}
		if _, err := s.Collect(ctx); err != nil {
			t.Fatal(err)
		}
		checkConsistent(t, s)
		checkRuns(t, s, a, "a")
		if t.Failed() {
			t.Fatalf("iteration %d", i)
		}
		if err := s.Remove(ctx, a.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// RemoveImage racing a container creation that already resolved the image:
// either the removal sees the container and refuses, or the rootfs
// preparation sees the image gone and fails; never a rootfs mounted from
// layers the collector then deletes. The creation registers its container
// (what core's ImageInUse sees) right after the removal's in-use check ran,
// the worst moment.
func TestRemoveRacingRootfs(t *testing.T) {
	reg := newTestRegistry(t)
	sharedPair(t, reg)
	s := openService(t, mirrorConfig(reg), t.TempDir())
	ctx := context.Background()
	a, err := s.Pull(ctx, "registry.k8s.io/a:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	var registered atomic.Bool
	checked := make(chan struct{})
	prepared := make(chan error, 1)
	rw, target := filepath.Join(t.TempDir(), "rw"), filepath.Join(t.TempDir(), "rootfs")
	go func() {
		<-checked
		registered.Store(true)
		prepared <- s.PrepareRootfs(ctx, a, rw, target)
	}()
	var once sync.Once
	inUse := func(id string) bool {
		used := id == a.ID && registered.Load()
		once.Do(func() {
			close(checked)
			// Give the creation every chance to mount before the record goes.
			select {
			case err := <-prepared:
				prepared <- err
			case <-time.After(500 * time.Millisecond):
			}
		})
		return used
	}
	removeErr := s.Remove(ctx, a.ID, inUse)
	prepErr := <-prepared
	defer s.ReleaseRootfs(ctx, rw, target)
	if _, err := s.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("remove: %v; rootfs: %v", removeErr, prepErr)
	switch {
	case removeErr == nil && prepErr == nil:
		t.Fatal("the image was removed and a rootfs was mounted from it")
	case prepErr == nil:
		if !errdefs.IsFailedPrecondition(removeErr) {
			t.Errorf("remove of an image in use: %v", removeErr)
		}
		if b, err := os.ReadFile(filepath.Join(target, "etc", "motd")); err != nil || string(b) != "a" {
			t.Errorf("rootfs after collection: etc/motd = %q, %v", b, err)
		}
	default:
		if !errdefs.IsNotFound(prepErr) || removeErr != nil {
			t.Errorf("rootfs of a removed image: %v (remove: %v), want NotFound", prepErr, removeErr)
		}
		if m, _ := mountinfo.Mounted(target); m {
			t.Error("a failed rootfs preparation left a mount")
		}
	}
	checkConsistent(t, s)
}

// A failed pull's downloads (its config, manifest, a layer blob and the
// snapshot of the layer that did unpack) are freed before Pull returns,
// not left until the next collection or start.
func TestFailedPullIsFreed(t *testing.T) {
	reg := newTestRegistry(t)
	_, b := sharedPair(t, reg)
	// c: b's layers plus one whose config diffID is wrong, so its layers
	// are all downloaded and all but the last unpacked before it fails.
	c := appendLayer(t, b, testLayer(t, entry{name: "c", content: filler(6, 100<<10)}))
	cf, err := c.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[2] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	bad, err := mutate.ConfigFile(c, cf)
	if err != nil {
		t.Fatal(err)
	}
	reg.push(t, "registry.k8s.io/c:1", bad)
	cfg := mirrorConfig(reg)
	cfg.GCInterval = config.Duration{} // no background collection at all
	var freed freedRecorder
	s := openService(t, cfg, t.TempDir(), WithOnFreed(freed.onFreed))
	ctx := context.Background()
	if _, err := s.Pull(ctx, "registry.k8s.io/a:1", nil); err != nil {
		t.Fatal(err)
	}
	baseline := storeUsage(t, s)
	if _, err := s.Pull(ctx, "registry.k8s.io/c:1", nil); err == nil || !strings.Contains(err.Error(), "uncompressed content") {
		t.Fatalf("pull with a wrong diffID: %v", err)
	}
	if o := orphans(t, s); len(o) > 0 {
		t.Errorf("left by the failed pull when it returned: %v", o)
	}
	n, _ := freed.total()
	t.Logf("freed %d bytes of a failed pull", n)
	if n < 150<<10 {
		t.Errorf("freed %d bytes; the failed pull unpacked b's 150 KiB layer", n)
	}
	if got := storeUsage(t, s); got != baseline {
		t.Errorf("store takes %d bytes after the failed pull, %d before", got, baseline)
	}
	checkConsistent(t, s)
}

// A snapshot a mounted overlay uses is kept even if no record names it
// (defence in depth; a consistent store never has one), and freed once
// unmounted. Image volumes (lower-only overlays) count too.
func TestCollectKeepsMountedSnapshots(t *testing.T) {
	reg := newTestRegistry(t)
	sharedPair(t, reg)
	s := openService(t, mirrorConfig(reg), t.TempDir())
	ctx := context.Background()
	a, err := s.Pull(ctx, "registry.k8s.io/a:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	rw, target := filepath.Join(t.TempDir(), "rw"), filepath.Join(t.TempDir(), "rootfs")
	if err := s.PrepareRootfs(ctx, a, rw, target); err != nil {
		t.Fatal(err)
	}
	defer s.ReleaseRootfs(ctx, rw, target)
	vol := filepath.Join(t.TempDir(), "vol")
	if err := s.MountImageVolume(ctx, a, vol); err != nil {
		t.Fatal(err)
	}
	defer s.UnmountImageVolume(ctx, vol)
	mounted, err := s.mountedSnapshots()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chainIDs(a.DiffIDs) {
		if !mounted[c.Encoded()] {
			t.Errorf("mounted snapshot %s not found in the mount table", c)
		}
	}
	// No inUse: the record goes although a rootfs uses it.
	if err := s.Remove(ctx, a.ID, nil); err != nil {
		t.Fatal(err)
	}
	c, err := s.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Snapshots != 0 {
		t.Errorf("collected %d mounted snapshots", c.Snapshots)
	}
	if b, err := os.ReadFile(filepath.Join(target, "a1")); err != nil || len(b) != 200<<10 {
		t.Errorf("rootfs a1 after collection: %d bytes, %v", len(b), err)
	}
	if err := s.ReleaseRootfs(ctx, rw, target); err != nil {
		t.Fatal(err)
	}
	if err := s.UnmountImageVolume(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if c, err := s.Collect(ctx); err != nil || c.Snapshots != 3 {
		t.Errorf("collection after unmount: %+v, %v; want a's 3 snapshots", c, err)
	}
	checkConsistent(t, s)
}

// A collection killed (SIGKILL) at any point loses nothing an image
// references, and the next start finishes it: every listed image resolves
// and mounts, no file is left that nothing references, and the store takes
// exactly what the remaining image needs.
func TestCollectCrash(t *testing.T) {
	reg := newTestRegistry(t)
	sharedPair(t, reg)
	for _, point := range []string{"decided", "moved-one", "moved", "deleted-one", "half-deleted"} {
		t.Run(point, func(t *testing.T) {
			root := t.TempDir()
			st, err := store.Open(filepath.Join(root, "meta.db"))
			if err != nil {
				t.Fatal(err)
			}
			s, err := New(mirrorConfig(reg), root, st)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			a, err := s.Pull(ctx, "registry.k8s.io/a:1", nil)
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.Pull(ctx, "registry.k8s.io/b:1", nil)
			if err != nil {
				t.Fatal(err)
			}
			want := storeUsage(t, s) - ownBytes(t, s, a, b)
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), envCrashRoot+"="+root, envCrashImage+"="+a.ID, envCrashPoint+"="+point)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child was not killed at %s: %v\n%s", point, err, out)
			}
			trash, err := os.ReadDir(filepath.Join(root, "content", "trash"))
			if err != nil {
				t.Fatal(err)
			}
			if point != "decided" && len(trash) == 0 {
				t.Errorf("killed at %s with an empty trash: the point is not where the test means", point)
			}

			var freed freedRecorder
			s = openService(t, mirrorConfig(reg), root, WithOnFreed(freed.onFreed))
			if n, _ := freed.total(); n <= 0 {
				t.Errorf("the start freed %d bytes; it finishes the collection", n)
			}
			if _, err := s.Resolve(a.ID); !errdefs.IsNotFound(err) {
				t.Errorf("removed image after the crash: %v", err)
			}
			if imgs := s.List(); len(imgs) != 1 || imgs[0].ID != b.ID {
				t.Errorf("images after the crash: %v", imgs)
			}
			checkConsistent(t, s)
			checkRuns(t, s, b, "b")
			if got := storeUsage(t, s); got != want {
				t.Errorf("store takes %d bytes after recovery, want %d (b's alone)", got, want)
			}
		})
	}
}
