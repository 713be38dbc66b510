package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tarDir archives dir the way `tar -C dir -cf - .` would.
func tarDir(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = "./" + rel
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	return buf.Bytes()
}

func TestImportOCILayout(t *testing.T) {
	full := testImage(t, "", testLayer(t, entry{name: "which", content: "full"}))
	bare := testImage(t, "", testLayer(t, entry{name: "which", content: "bare"}))
	amd := testImage(t, "", testLayer(t, entry{name: "which", content: "amd64"}))
	arm := testImage(t, "", testLayer(t, entry{name: "which", content: "arm64"}))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(full, layout.WithAnnotations(map[string]string{annotationRefName: "registry.k8s.io/app:1"})); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(bare, layout.WithAnnotations(map[string]string{annotationRefName: "2.0"})); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{annotationRefName: "multi:3"})); err != nil {
		t.Fatal(err)
	}

	s, root, _ := newTestService(t, mirrorConfig(newTestRegistry(t)))
	imgs, err := s.Import(context.Background(), bytes.NewReader(tarDir(t, dir)))
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 3 {
		t.Fatalf("imported %d images, want 3", len(imgs))
	}
	for ref, want := range map[string]v1.Image{
		"registry.k8s.io/app:1":                             full,
		importRepository + ":2.0":                           bare,
		"docker.io/library/multi:3":                         amd,
		"registry.k8s.io/app@" + manifestDigest(t, full):    full,
		"docker.io/library/multi@" + manifestDigest(t, idx): amd,
	} {
		img, err := s.Resolve(ref)
		if err != nil {
			t.Errorf("Resolve(%s): %v", ref, err)
			continue
		}
		if img.ID != imageID(t, want) {
			t.Errorf("%s = %s, want %s", ref, img.ID, imageID(t, want))
		}
	}
	img, _ := s.Resolve("docker.io/library/multi:3")
	b, err := os.ReadFile(filepath.Join(root, "snapshots", chainIDs(img.DiffIDs)[0].Encoded(), "fs", "which"))
	if err != nil || string(b) != "amd64" {
		t.Errorf("multi:3 content = %q, %v", b, err)
	}

	// A layout blob that does not match its digest is refused.
	l, _ := full.Layers()
	ld, _ := l[0].Digest()
	blob := filepath.Join(dir, "blobs", "sha256", ld.Hex)
	data, _ := os.ReadFile(blob)
	data[len(data)/2] ^= 0xff
	os.WriteFile(blob, data, 0o644)
	s2, _, _ := newTestService(t, mirrorConfig(newTestRegistry(t)))
	if _, err := s2.Import(context.Background(), bytes.NewReader(tarDir(t, dir))); err == nil {
		t.Error("import of a corrupted layout succeeded")
	}
}

func TestImportDockerSave(t *testing.T) {
	one := testImage(t, "", testLayer(t, entry{name: "n", content: "1"}))
	two := testImage(t, "", testLayer(t, entry{name: "n", content: "2"}))
	tagOne, _ := name.NewTag("busybox:1")
	tagTwo, _ := name.NewTag("registry.k8s.io/two:2")
	var buf bytes.Buffer
	if err := tarball.MultiWrite(map[name.Tag]v1.Image{tagOne: one, tagTwo: two}, &buf); err != nil {
		t.Fatal(err)
	}
	s, _, _ := newTestService(t, mirrorConfig(newTestRegistry(t)))
	imgs, err := s.Import(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 {
		t.Fatalf("imported %d images", len(imgs))
	}
	for ref, want := range map[string]v1.Image{"docker.io/library/busybox:1": one, "registry.k8s.io/two:2": two} {
		img, err := s.Resolve(ref)
		if err != nil || img.ID != imageID(t, want) {
			t.Errorf("Resolve(%s) = %v, %v", ref, img, err)
		}
	}
}

// TestImportDockerSaveLegacy imports the classic `docker save` layout:
// uncompressed <id>/layer.tar files, one of them a symlink to another.
func TestImportDockerSaveLegacy(t *testing.T) {
	layerTar := tarBytes(t, []entry{{name: "etc/", typ: tar.TypeDir}, {name: "etc/hostname", content: "legacy"}})
	sum := sha256.Sum256(layerTar)
	diffID := "sha256:" + hex.EncodeToString(sum[:])
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"User": "nobody"},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	cfgSum := sha256.Sum256(cfg)
	cfgName := hex.EncodeToString(cfgSum[:]) + ".json"
	manifest, _ := json.Marshal([]map[string]any{
		{"Config": cfgName, "RepoTags": []string{"legacy:1"}, "Layers": []string{"aaa/layer.tar"}},
		{"Config": cfgName, "RepoTags": []string{"legacy:alias"}, "Layers": []string{"bbb/layer.tar"}},
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))})
		tw.Write(b)
	}
	add("aaa/layer.tar", layerTar)
	tw.WriteHeader(&tar.Header{Name: "bbb/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../aaa/layer.tar"})
	add(cfgName, cfg)
	add("manifest.json", manifest)
	tw.Close()

	s, root, _ := newTestService(t, mirrorConfig(newTestRegistry(t)))
	imgs, err := s.Import(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 || imgs[0].ID != "sha256:"+hex.EncodeToString(cfgSum[:]) {
		t.Fatalf("imported %+v", imgs)
	}
	img, err := s.Resolve("legacy:1")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(img.RepoTags)
	if !equal(img.RepoTags, []string{"docker.io/library/legacy:1", "docker.io/library/legacy:alias"}) || img.Config.User != "nobody" {
		t.Errorf("record = %+v", img)
	}
	b, err := os.ReadFile(filepath.Join(root, "snapshots", chainIDs(img.DiffIDs)[0].Encoded(), "fs", "etc", "hostname"))
	if err != nil || string(b) != "legacy" {
		t.Errorf("content = %q, %v", b, err)
	}
}

func TestImportRejectsGarbage(t *testing.T) {
	s, _, _ := newTestService(t, mirrorConfig(newTestRegistry(t)))
	if _, err := s.Import(context.Background(), bytes.NewReader([]byte("not a tar at all, just text"))); !errdefs.IsInvalidArgument(err) {
		t.Errorf("import of garbage: %v, want InvalidArgument", err)
	}
	empty := tarBytes(t, []entry{{name: "readme", content: "x"}})
	if _, err := s.Import(context.Background(), bytes.NewReader(empty)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("import of an unrelated tar: %v, want InvalidArgument", err)
	}
}
