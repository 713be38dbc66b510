package image

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/crid-dev/crid/internal/config"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

func baseLayer(t *testing.T) v1.Layer {
	return testLayer(t,
		entry{name: "bin/", typ: tar.TypeDir},
		entry{name: "bin/sh", content: "#!shell", mode: 0o755},
		entry{name: "etc/", typ: tar.TypeDir},
		entry{name: "etc/passwd", content: "root:x:0:0::/root:/bin/sh\n"},
		entry{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
	)
}

func TestPullByTagAndDigest(t *testing.T) {
	reg := newTestRegistry(t)
	img := testImage(t, "1000", baseLayer(t), testLayer(t, entry{name: "etc/motd", content: "hello"}))
	reg.push(t, "registry.k8s.io/e2e-test-images/busybox:1.29-2", img)
	s, root, dials := newTestService(t, mirrorConfig(reg))
	ctx := context.Background()

	got, err := s.Pull(ctx, "registry.k8s.io/e2e-test-images/busybox:1.29-2", nil)
	if err != nil {
		t.Fatal(err)
	}
	id, md := imageID(t, img), manifestDigest(t, img)
	if got.ID != id {
		t.Errorf("ID = %s, want %s", got.ID, id)
	}
	if want := []string{"registry.k8s.io/e2e-test-images/busybox:1.29-2"}; !equal(got.RepoTags, want) {
		t.Errorf("RepoTags = %v, want %v", got.RepoTags, want)
	}
	if want := []string{"registry.k8s.io/e2e-test-images/busybox@" + md}; !equal(got.RepoDigests, want) {
		t.Errorf("RepoDigests = %v, want %v", got.RepoDigests, want)
	}
	if got.Config.User != "1000" || len(got.DiffIDs) != 2 || got.Size == 0 {
		t.Errorf("record = %+v", got)
	}
	// Fetched from the mirror under the prefixed repository, upstream never dialled.
	if n := reg.getCount("/v2/registry.k8s.io/e2e-test-images/busybox/manifests/1.29-2"); n != 1 {
		t.Errorf("manifest GETs on mirror = %d, want 1", n)
	}
	for _, a := range dials.dialed() {
		if a != reg.host {
			t.Errorf("dialled %s, only the mirror %s was allowed", a, reg.host)
		}
	}
	// Layers unpacked into snapshots keyed by chain ID; manifest and config kept.
	chains := chainIDs(got.DiffIDs)
	if b, err := os.ReadFile(filepath.Join(root, "snapshots", chains[1].Encoded(), "fs", "etc", "motd")); err != nil || string(b) != "hello" {
		t.Errorf("layer 2 snapshot: %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(root, "snapshots", chains[0].Encoded(), "fs", "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 {
		t.Errorf("tmp in base snapshot: %v, %v", fi, err)
	}
	for _, d := range []string{id, md} {
		if _, err := os.Stat(filepath.Join(root, "content", "blobs", "sha256", digest.Digest(d).Encoded())); err != nil {
			t.Errorf("blob %s not kept: %v", d, err)
		}
	}

	// Resolve by every kind of reference.
	for _, ref := range []string{
		"registry.k8s.io/e2e-test-images/busybox:1.29-2",
		"registry.k8s.io/e2e-test-images/busybox@" + md,
		"registry.k8s.io/e2e-test-images/busybox:1.29-2@" + md,
		id,
		strings.TrimPrefix(id, "sha256:"),
		id[:19],
		strings.TrimPrefix(id, "sha256:")[:12],
	} {
		r, err := s.Resolve(ref)
		if err != nil || r.ID != id {
			t.Errorf("Resolve(%q) = %v, %v", ref, r, err)
		}
	}
	// A short bare hex string is a repository name, not an ID prefix.
	if _, err := s.Resolve(strings.TrimPrefix(id, "sha256:")[:6]); !errdefs.IsNotFound(err) {
		t.Errorf("Resolve of a 6-char bare prefix: %v, want NotFound", err)
	}
	if _, err := s.Resolve("registry.k8s.io/e2e-test-images/busybox:other"); !errdefs.IsNotFound(err) {
		t.Errorf("Resolve of unknown tag: %v, want NotFound", err)
	}

	// Pull by digest.
	s2, _, _ := newTestService(t, mirrorConfig(reg))
	got2, err := s2.Pull(ctx, "registry.k8s.io/e2e-test-images/busybox@"+md, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got2.ID != id || len(got2.RepoTags) != 0 || !equal(got2.RepoDigests, []string{"registry.k8s.io/e2e-test-images/busybox@" + md}) {
		t.Errorf("pull by digest = %+v", got2)
	}

	// The index is rebuilt from the store on New.
	s3, err := New(mirrorConfig(reg), root, s.st)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := s3.Resolve("registry.k8s.io/e2e-test-images/busybox:1.29-2"); err != nil || r.ID != id {
		t.Errorf("after reopen: %v, %v", r, err)
	}
	if n := len(s3.List()); n != 1 {
		t.Errorf("List after reopen = %d images", n)
	}

	// FsInfo sees the snapshots.
	u, err := s.FsInfo(ctx)
	if err != nil || u.UsedBytes == 0 || u.InodesUsed < 5 || u.Mountpoint != filepath.Join(root, "snapshots") {
		t.Errorf("FsInfo = %+v, %v", u, err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPullIndexResolvesLinuxAmd64(t *testing.T) {
	reg := newTestRegistry(t)
	amd := testImage(t, "", testLayer(t, entry{name: "arch", content: "amd64"}))
	arm := testImage(t, "", testLayer(t, entry{name: "arch", content: "arm64"}))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	reg.pushIndex(t, "registry.k8s.io/multi:1", idx)
	s, root, _ := newTestService(t, mirrorConfig(reg))

	got, err := s.Pull(context.Background(), "registry.k8s.io/multi:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != imageID(t, amd) {
		t.Errorf("ID = %s, want the amd64 image %s", got.ID, imageID(t, amd))
	}
	// The repo digest is the index's, which is what the tag points to.
	if want := "registry.k8s.io/multi@" + manifestDigest(t, idx); !equal(got.RepoDigests, []string{want}) {
		t.Errorf("RepoDigests = %v, want %s", got.RepoDigests, want)
	}
	b, err := os.ReadFile(filepath.Join(root, "snapshots", chainIDs(got.DiffIDs)[0].Encoded(), "fs", "arch"))
	if err != nil || string(b) != "amd64" {
		t.Errorf("unpacked arch = %q, %v", b, err)
	}
	if n := reg.getCount("/blobs/" + manifestDigest(t, arm)); n != 0 {
		t.Errorf("arm64 image fetched %d times", n)
	}
	if _, err := s.Resolve("registry.k8s.io/multi@" + manifestDigest(t, idx)); err != nil {
		t.Errorf("resolve by index digest: %v", err)
	}
}

func TestWhiteoutsConverted(t *testing.T) {
	reg := newTestRegistry(t)
	lower := testLayer(t,
		entry{name: "a/", typ: tar.TypeDir},
		entry{name: "a/gone", content: "1"},
		entry{name: "a/kept", content: "2"},
		entry{name: "d/", typ: tar.TypeDir},
		entry{name: "d/old", content: "3"},
	)
	upper := testLayer(t,
		entry{name: "a/", typ: tar.TypeDir},
		entry{name: "a/.wh.gone", content: ""},
		entry{name: "d/", typ: tar.TypeDir},
		entry{name: "d/.wh..wh..opq", content: ""},
		entry{name: "d/new", content: "4"},
	)
	reg.push(t, "registry.k8s.io/wh:1", testImage(t, "", lower, upper))
	s, root, _ := newTestService(t, mirrorConfig(reg))
	img, err := s.Pull(context.Background(), "registry.k8s.io/wh:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	fs := filepath.Join(root, "snapshots", chainIDs(img.DiffIDs)[1].Encoded(), "fs")
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(fs, "a", "gone"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("a/gone: mode %o rdev %d, want a 0:0 char device", st.Mode, st.Rdev)
	}
	if _, err := os.Lstat(filepath.Join(fs, "a", ".wh.gone")); !os.IsNotExist(err) {
		t.Errorf(".wh.gone left on disk: %v", err)
	}
	buf := make([]byte, 8)
	n, err := unix.Getxattr(filepath.Join(fs, "d"), "trusted.overlay.opaque", buf)
	if err != nil || string(buf[:n]) != "y" {
		t.Errorf("d opaque xattr = %q, %v", buf[:n], err)
	}
	if _, err := os.Lstat(filepath.Join(fs, "d", ".wh..wh..opq")); !os.IsNotExist(err) {
		t.Errorf("opaque marker left on disk: %v", err)
	}

	// Mounted, the whiteouts hide the lower layer's files.
	rw, target := filepath.Join(t.TempDir(), "rw"), filepath.Join(t.TempDir(), "rootfs")
	if err := s.PrepareRootfs(context.Background(), img, rw, target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.ReleaseRootfs(context.Background(), rw, target) })
	for p, want := range map[string]bool{"a/gone": false, "a/kept": true, "d/old": false, "d/new": true} {
		_, err := os.Lstat(filepath.Join(target, p))
		if (err == nil) != want {
			t.Errorf("%s in merged rootfs: exists=%v, want %v", p, err == nil, want)
		}
	}
	if err := s.ReleaseRootfs(context.Background(), rw, target); err != nil {
		t.Fatal(err)
	}
}

func TestSharedLayerAndConcurrentPulls(t *testing.T) {
	reg := newTestRegistry(t)
	base := baseLayer(t)
	imgA := testImage(t, "", base, testLayer(t, entry{name: "a", content: "a"}))
	imgB := testImage(t, "", base, testLayer(t, entry{name: "b", content: "b"}))
	reg.push(t, "registry.k8s.io/a:1", imgA)
	reg.push(t, "registry.k8s.io/b:1", imgB)
	// Slow blobs make the concurrent pulls overlap.
	reg.delay = 200 * time.Millisecond
	s, root, _ := newTestService(t, mirrorConfig(reg))

	var wg sync.WaitGroup
	refs := []string{"registry.k8s.io/a:1", "registry.k8s.io/a:1", "registry.k8s.io/a:1", "registry.k8s.io/b:1", "registry.k8s.io/b:1"}
	ids := make([]string, len(refs))
	errs := make([]error, len(refs))
	for i, ref := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			img, err := s.Pull(context.Background(), ref, nil)
			errs[i] = err
			if err == nil {
				ids[i] = img.ID
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pull %s: %v", refs[i], err)
		}
	}
	if ids[0] != imageID(t, imgA) || ids[1] != ids[0] || ids[3] != imageID(t, imgB) {
		t.Errorf("ids = %v", ids)
	}
	baseDigest, _ := base.Digest()
	if n := reg.getCount("/blobs/" + baseDigest.String()); n != 1 {
		t.Errorf("shared base layer downloaded %d times, want 1", n)
	}
	if n := reg.getCount("/v2/registry.k8s.io/a/manifests/1"); n != 1 {
		t.Errorf("a:1 manifest fetched %d times by concurrent pulls, want 1", n)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "snapshots"))
	var snaps int
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			snaps++
		}
	}
	if snaps != 3 {
		t.Errorf("%d snapshots, want 3 (shared base + one each)", snaps)
	}
	// Compressed layers are not kept after unpacking.
	if _, err := os.Stat(filepath.Join(root, "content", "blobs", "sha256", baseDigest.Hex)); !os.IsNotExist(err) {
		t.Errorf("compressed base layer kept: %v", err)
	}

	// A second pull of a stored image fetches no layer again.
	if _, err := s.Pull(context.Background(), "registry.k8s.io/b:1", nil); err != nil {
		t.Fatal(err)
	}
	if n := reg.getCount("/blobs/" + baseDigest.String()); n != 1 {
		t.Errorf("re-pull downloaded the base layer again (%d)", n)
	}
}

func TestCorruptBlobRejected(t *testing.T) {
	reg := newTestRegistry(t)
	layer := testLayer(t, entry{name: "f", content: strings.Repeat("x", 4096)})
	img := testImage(t, "", layer)
	reg.push(t, "registry.k8s.io/bad:1", img)
	d, _ := layer.Digest()
	reg.corrupt[d.String()] = true
	s, root, _ := newTestService(t, mirrorConfig(reg))

	_, err := s.Pull(context.Background(), "registry.k8s.io/bad:1", nil)
	if err == nil {
		t.Fatal("pull of a corrupted layer succeeded")
	}
	if !errdefs.IsDataLoss(err) || !strings.Contains(err.Error(), "http://"+reg.host+"/registry.k8s.io") {
		t.Errorf("error %q should name the digest mismatch and the endpoint", err)
	}
	if _, err := s.Resolve("registry.k8s.io/bad:1"); !errdefs.IsNotFound(err) {
		t.Errorf("corrupted image recorded: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "snapshots"))
	for _, e := range entries {
		if e.Name() != ".empty" {
			t.Errorf("snapshot dir %s left behind", e.Name())
		}
	}
}

func TestDiffIDMismatchRejected(t *testing.T) {
	reg := newTestRegistry(t)
	img := testImage(t, "", testLayer(t, entry{name: "f", content: "real"}))
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: hexA}
	bad, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	reg.push(t, "registry.k8s.io/diffid:1", bad)
	s, _, _ := newTestService(t, mirrorConfig(reg))
	_, err = s.Pull(context.Background(), "registry.k8s.io/diffid:1", nil)
	if err == nil || !strings.Contains(err.Error(), "uncompressed content") {
		t.Fatalf("pull with a wrong diffID: %v", err)
	}
}

func TestNoFallbackNeverContactsUpstream(t *testing.T) {
	reg := newTestRegistry(t)
	no, yes := false, true
	cfg := mirrorConfig(reg)
	cfg.Registries = []config.Registry{{Host: "upstream.invalid", Mirrors: []string{"http://" + reg.host + "/upstream.invalid"}, Fallback: &no}}
	s, _, dials := newTestService(t, cfg)

	_, err := s.Pull(context.Background(), "upstream.invalid/app:1", nil)
	if !errdefs.IsNotFound(err) {
		t.Fatalf("pull of a missing image: %v, want NotFound", err)
	}
	if !strings.Contains(err.Error(), "http://"+reg.host+"/upstream.invalid") {
		t.Errorf("error %q does not name the mirror", err)
	}
	for _, a := range dials.dialed() {
		if strings.Contains(a, "upstream.invalid") {
			t.Errorf("dialled upstream %s with fallback=false", a)
		}
	}

	// With fallback the upstream is tried after the mirror, and both are named.
	cfg.Registries[0].Fallback = &yes
	s2, _, dials2 := newTestService(t, cfg)
	_, err = s2.Pull(context.Background(), "upstream.invalid/app:1", nil)
	if err == nil {
		t.Fatal("pull succeeded")
	}
	if !strings.Contains(err.Error(), "http://"+reg.host+"/upstream.invalid") || !strings.Contains(err.Error(), "https://upstream.invalid") {
		t.Errorf("error %q does not name both endpoints", err)
	}
	var upstream bool
	for _, a := range dials2.dialed() {
		upstream = upstream || a == "upstream.invalid:443"
	}
	if !upstream {
		t.Errorf("fallback did not try upstream; dialled %v", dials2.dialed())
	}
}

func TestPullAuth(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "registry.k8s.io/private:1", testImage(t, "", baseLayer(t)))
	reg.password = "s3cret"
	s, _, _ := newTestService(t, mirrorConfig(reg))
	_, err := s.Pull(context.Background(), "registry.k8s.io/private:1", nil)
	if !errdefs.IsUnauthorized(err) {
		t.Fatalf("anonymous pull: %v, want Unauthenticated", err)
	}
	if _, err := s.Pull(context.Background(), "registry.k8s.io/private:1", &Auth{Username: "u", Password: "s3cret"}); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
}

func TestPullInvalidReference(t *testing.T) {
	s, _, _ := newTestService(t, config.Images{MaxConcurrentDownloads: 1})
	for _, ref := range []string{"", "UPPER/case", "a:b:c"} {
		if _, err := s.Pull(context.Background(), ref, nil); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Pull(%q) = %v, want InvalidArgument", ref, err)
		}
	}
}

func TestPullProgressTimeout(t *testing.T) {
	reg := newTestRegistry(t)
	layer := testLayer(t, entry{name: "f", content: strings.Repeat("y", 1<<16)})
	reg.push(t, "registry.k8s.io/slow:1", testImage(t, "", layer))
	d, _ := layer.Digest()
	reg.stall[d.String()] = true
	cfg := mirrorConfig(reg)
	cfg.PullProgressTimeout = config.Duration{Duration: 700 * time.Millisecond}
	s, _, _ := newTestService(t, cfg)
	start := time.Now()
	_, err := s.Pull(context.Background(), "registry.k8s.io/slow:1", nil)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no progress") {
		t.Fatalf("stalled pull: %v", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("stalled pull took %s to give up", el)
	}
}

func TestRetagAndRemove(t *testing.T) {
	reg := newTestRegistry(t)
	base := baseLayer(t)
	old := testImage(t, "", base, testLayer(t, entry{name: "v", content: "1"}))
	reg.push(t, "registry.k8s.io/app:latest", old)
	reg.push(t, "registry.k8s.io/app:v1", old)
	other := testImage(t, "", base)
	reg.push(t, "registry.k8s.io/other:1", other)
	s, root, _ := newTestService(t, mirrorConfig(reg))
	ctx := context.Background()
	for _, ref := range []string{"registry.k8s.io/app:latest", "registry.k8s.io/app:v1", "registry.k8s.io/other:1"} {
		if _, err := s.Pull(ctx, ref, nil); err != nil {
			t.Fatal(err)
		}
	}
	oldImg, _ := s.Resolve(imageID(t, old))
	if len(oldImg.RepoTags) != 2 {
		t.Fatalf("tags = %v", oldImg.RepoTags)
	}

	// Moving :latest to a new image takes it from the old one.
	newer := testImage(t, "", base, testLayer(t, entry{name: "v", content: "2"}))
	reg.push(t, "registry.k8s.io/app:latest", newer)
	if _, err := s.Pull(ctx, "registry.k8s.io/app:latest", nil); err != nil {
		t.Fatal(err)
	}
	oldImg, _ = s.Resolve(imageID(t, old))
	if !equal(oldImg.RepoTags, []string{"registry.k8s.io/app:v1"}) {
		t.Errorf("old image tags after retag = %v", oldImg.RepoTags)
	}
	if r, _ := s.Resolve("registry.k8s.io/app:latest"); r == nil || r.ID != imageID(t, newer) {
		t.Errorf("app:latest resolves to %v", r)
	}

	// In use: refused.
	inUse := func(id string) bool { return id == imageID(t, old) }
	err := s.Remove(ctx, "registry.k8s.io/app:v1", inUse)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "in use by container(s)") {
		t.Fatalf("remove in-use image: %v", err)
	}
	notUsed := func(string) bool { return false }
	oldTop := chainIDs(oldImg.DiffIDs)[1]
	baseChain := chainIDs(oldImg.DiffIDs)[0]
	if err := s.Remove(ctx, "registry.k8s.io/app:v1", notUsed); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve(imageID(t, old)); !errdefs.IsNotFound(err) {
		t.Errorf("removed image still resolves: %v", err)
	}
	// Remove drops the record; the collector frees its files.
	if _, err := s.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	// Its own layer is gone; the base shared with other images stays.
	if _, err := os.Stat(filepath.Join(root, "snapshots", oldTop.Encoded())); !os.IsNotExist(err) {
		t.Errorf("unreferenced snapshot kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "snapshots", baseChain.Encoded(), "fs")); err != nil {
		t.Errorf("shared base snapshot removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "content", "blobs", "sha256", digest.Digest(imageID(t, old)).Encoded())); !os.IsNotExist(err) {
		t.Errorf("config blob of removed image kept: %v", err)
	}
	// Idempotent.
	if err := s.Remove(ctx, "registry.k8s.io/app:v1", notUsed); err != nil {
		t.Errorf("second remove: %v", err)
	}
	if err := s.Remove(ctx, imageID(t, old), notUsed); err != nil {
		t.Errorf("remove by missing ID: %v", err)
	}
	// Removing the last users frees the base too.
	for _, ref := range []string{"registry.k8s.io/app:latest", "registry.k8s.io/other:1"} {
		if err := s.Remove(ctx, ref, notUsed); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "snapshots", baseChain.Encoded())); !os.IsNotExist(err) {
		t.Errorf("base snapshot kept after all images removed: %v", err)
	}
	if n := len(s.List()); n != 0 {
		t.Errorf("%d images left", n)
	}
}

func TestPinned(t *testing.T) {
	cfg := config.Images{SandboxImage: "registry.k8s.io/pause:3.10", PinnedImages: []string{"busybox"}, MaxConcurrentDownloads: 1}
	s, _, _ := newTestService(t, cfg)
	for _, tc := range []struct {
		tags []string
		want bool
	}{
		{[]string{"registry.k8s.io/pause:3.10"}, true},
		{[]string{"docker.io/library/busybox:latest"}, true},
		{[]string{"docker.io/library/busybox:1"}, false},
		{nil, false},
	} {
		if got := s.Pinned(&Image{ID: "sha256:" + hexA, RepoTags: tc.tags}); got != tc.want {
			t.Errorf("Pinned(%v) = %v, want %v", tc.tags, got, tc.want)
		}
	}
}

func TestTLSMirror(t *testing.T) {
	reg := newTLSTestRegistry(t)
	img := testImage(t, "", baseLayer(t))
	reg.push(t, "registry.k8s.io/tls:1", img)
	no := false
	cfg := mirrorConfig(reg)
	for _, tc := range []struct {
		name       string
		mirror     string
		skipVerify bool
		ok         bool
	}{
		{"https with skip verify", "https://" + reg.host + "/registry.k8s.io", true, true},
		{"https verifies the certificate", "https://" + reg.host + "/registry.k8s.io", false, false},
		{"http mirror never upgrades to TLS", "http://" + reg.host + "/registry.k8s.io", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg.Registries = []config.Registry{{Host: "registry.k8s.io", Mirrors: []string{tc.mirror}, Fallback: &no, InsecureSkipVerify: tc.skipVerify}}
			s, _, _ := newTestService(t, cfg)
			got, err := s.Pull(context.Background(), "registry.k8s.io/tls:1", nil)
			if tc.ok {
				if err != nil || got.ID != imageID(t, img) {
					t.Fatalf("pull = %v, %v", got, err)
				}
				return
			}
			if err == nil {
				t.Fatal("pull succeeded")
			}
			if !strings.Contains(err.Error(), tc.mirror) {
				t.Errorf("error %q does not name %s", err, tc.mirror)
			}
		})
	}
}

// A pull leaves no connection to the registry open: its transport is its
// own, and idle keep-alive connections would hold an fd and two
// goroutines each until the idle timeout (90s).
func TestPullClosesItsConnections(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "registry.k8s.io/conns:1", testImage(t, "", baseLayer(t)))
	s, _, _ := newTestService(t, mirrorConfig(reg))
	pushed := reg.conns.Load() // the push's own, kept by the test's client
	if _, err := s.Pull(context.Background(), "registry.k8s.io/conns:1", nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for reg.conns.Load() != pushed {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections to the registry still open after the pull", reg.conns.Load()-pushed)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
