package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crid-dev/crid/internal/config"
	"github.com/crid-dev/crid/internal/store"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The import fuzzers run the real Service.Import on a fresh service per
// input. The service's root is <base>/root, so whatever an input manages
// to create outside the root shows up as an extra entry of base.

func fuzzService(t *testing.T) (*Service, string) {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	st, err := store.Open(filepath.Join(root, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := New(config.Images{
		MaxConcurrentDownloads: 2,
		PullProgressTimeout:    config.Duration{Duration: 20 * time.Second},
	}, root, st)
	if err != nil {
		t.Fatal(err)
	}
	return s, base
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// fill replaces placeholders in a fuzzed document with values only the
// harness can compute (digests, sizes), so mutations of the rest of the
// document get past digest verification into the parsers behind it.
func fill(b []byte, kv ...string) []byte {
	return []byte(strings.NewReplacer(kv...).Replace(string(b)))
}

// tarOf archives files (name -> content) in the given order, plus symlinks
// (name -> target) after them.
func tarOf(t testing.TB, files [][2]string, symlinks ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f[1]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f[1])); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range symlinks {
		if err := tw.WriteHeader(&tar.Header{Name: l[0], Typeflag: tar.TypeSymlink, Linkname: l[1]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// importBounded imports archive, failing t when the import does not end
// within 20s of its context being cancelled at 20s (a stack dump then
// shows where it is stuck).
func importBounded(t *testing.T, s *Service, archive []byte) ([]*Image, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stuck := time.AfterFunc(40*time.Second, func() {
		buf := make([]byte, 1<<20)
		panic("import still running 20s after its context ended:\n" + string(buf[:goruntime.Stack(buf, true)]))
	})
	defer stuck.Stop()
	imgs, err := s.Import(ctx, bytes.NewReader(archive))
	if ctx.Err() != nil {
		t.Errorf("import took more than 20s (%v)", err)
	}
	return imgs, err
}

// checkAftermath fails t when an import left anything behind that it must
// not: an entry of base other than root and allowed, a temp file in the
// ingest dir, a half-made snapshot, or a hard link shared with a file
// outside base (a layer linking a host file into a snapshot).
func checkAftermath(t *testing.T, s *Service, base string, allowed ...string) {
	t.Helper()
	entries, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "root" && !contains(allowed, e.Name()) {
			t.Errorf("import created %s outside the service root", filepath.Join(base, e.Name()))
		}
	}
	if left, err := os.ReadDir(s.ingestDir()); err != nil || len(left) > 0 {
		t.Errorf("ingest dir after import: %v, %v", names(left), err)
	}
	snaps, err := os.ReadDir(s.snapshotDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range snaps {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			t.Errorf("half-made snapshot %s left behind", e.Name())
		}
	}
	checkLinksInside(t, base)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func names(es []os.DirEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// checkLinksInside fails t when a file under base has more hard links than
// base holds: its other names are outside base.
func checkLinksInside(t *testing.T, base string) {
	t.Helper()
	type inode struct{ dev, ino uint64 }
	seen := map[inode]int{}
	want := map[inode]uint64{}
	where := map[inode]string{}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || st.Nlink < 2 {
			return nil
		}
		k := inode{st.Dev, st.Ino}
		seen[k]++
		want[k], where[k] = st.Nlink, p
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, n := range want {
		if uint64(seen[k]) < n {
			t.Errorf("%s has %d links, only %d of them under %s: a host file was linked in", where[k], n, seen[k], base)
		}
	}
}

// checkImported checks the records of a successful import against the
// archive: the ID is the config's digest, every tag resolves to the image,
// every layer has its snapshot, and the size is what the image's blobs
// really take (wantSize, when known).
func checkImported(t *testing.T, s *Service, imgs []*Image, config []byte, wantSize int64) {
	t.Helper()
	for _, img := range imgs {
		if config != nil && img.ID != "sha256:"+sha256Hex(config) {
			t.Errorf("image ID %s, config digest is sha256:%s", img.ID, sha256Hex(config))
		}
		if wantSize >= 0 && img.Size != uint64(wantSize) {
			t.Errorf("image %s has size %d, its blobs take %d bytes", img.ID, img.Size, wantSize)
		}
		for _, tag := range img.RepoTags {
			r, err := s.Resolve(tag)
			if err != nil {
				t.Errorf("tag %q of image %s does not resolve: %v", tag, img.ID, err)
			} else if r.ID != img.ID && !stillTagged(s, tag, r.ID) {
				t.Errorf("tag %q resolves to %s, not %s", tag, r.ID, img.ID)
			}
		}
		if _, err := s.layerLowers(img); err != nil {
			t.Errorf("image %s: %v", img.ID, err)
		}
	}
}

// stillTagged reports whether the image id now holds tag: a later image of
// the same archive may take a tag over.
func stillTagged(s *Service, tag, id string) bool {
	img, err := s.Resolve(id)
	return err == nil && contains(img.RepoTags, tag)
}

// FuzzImportArchive feeds whole archives to Import: the tar index, link
// resolution inside the archive, index.json / manifest.json and what
// they lead to. Besides not crashing, an import must leave nothing
// outside its root and no temp files or half-made snapshots.
func FuzzImportArchive(f *testing.F) {
	for _, a := range seedArchives(f) {
		f.Add(a)
	}
	f.Add([]byte("not a tar at all"))
	f.Fuzz(func(t *testing.T, archive []byte) {
		s, base := fuzzService(t)
		imgs, err := importBounded(t, s, archive)
		t.Logf("import: %d images, %v", len(imgs), err)
		if err == nil {
			checkImported(t, s, imgs, nil, -1)
		}
		checkAftermath(t, s, base)
	})
}

// seedArchives are real archives: OCI layouts written by ggcr (an image and
// a multi-platform index, with ref-name annotations), a `docker save`
// tarball, and a classic one with a symlinked layer.
func seedArchives(f *testing.F) [][]byte {
	img := seedImage(f, "etc/hostname", "seed")
	arm := seedImage(f, "which", "arm64")
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	dir := f.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		f.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{annotationRefName: "registry.k8s.io/app:1"})); err != nil {
		f.Fatal(err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{annotationRefName: "2.0", annotationContainerdName: "docker.io/library/multi:2.0"})); err != nil {
		f.Fatal(err)
	}
	oci := dirTar(f, dir)

	var docker bytes.Buffer
	tag, _ := name.NewTag("busybox:1")
	if err := tarball.MultiWrite(map[name.Tag]v1.Image{tag: img}, &docker); err != nil {
		f.Fatal(err)
	}

	layer := tarOf(f, [][2]string{{"etc/hostname", "legacy"}})
	cfg := seedConfig(sha256Hex(layer))
	cfgName := sha256Hex(cfg) + ".json"
	manifest, _ := json.Marshal([]map[string]any{
		{"Config": cfgName, "RepoTags": []string{"legacy:1"}, "Layers": []string{"aaa/layer.tar"}},
		{"Config": cfgName, "RepoTags": []string{"legacy:alias"}, "Layers": []string{"bbb/layer.tar"}},
	})
	legacy := tarOf(f, [][2]string{{"aaa/layer.tar", string(layer)}, {cfgName, string(cfg)}, {"manifest.json", string(manifest)}},
		[2]string{"bbb/layer.tar", "../aaa/layer.tar"})
	return [][]byte{oci, docker.Bytes(), legacy}
}

// seedImage is a linux/amd64 image of one layer holding file.
func seedImage(f *testing.F, file, content string) v1.Image {
	b := tarOf(f, [][2]string{{file, content}})
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		f.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		f.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		f.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.User, cf.Config.Cmd = "1000", []string{"/bin/sh"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		f.Fatal(err)
	}
	return img
}

// dirTar archives the regular files under dir with paths relative to it.
func dirTar(f *testing.F, dir string) []byte {
	var files [][2]string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		files = append(files, [2]string{rel, string(b)})
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
	return tarOf(f, files)
}

// seedConfig is an image config with one layer of the given diffID (hex or
// a placeholder).
func seedConfig(diffID string) []byte {
	return []byte(`{"architecture":"amd64","os":"linux","config":{"User":"1000:1000","Env":["PATH=/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:` + diffID + `"]}}`)
}

// ociLayout archives an OCI image layout: index.json and the blobs.
func ociLayout(t testing.TB, index []byte, blobs ...[]byte) []byte {
	files := [][2]string{{"oci-layout", `{"imageLayoutVersion":"1.0.0"}`}, {"index.json", string(index)}}
	for _, b := range blobs {
		files = append(files, [2]string{"blobs/sha256/" + sha256Hex(b), string(b)})
	}
	return tarOf(t, files)
}

// FuzzImportOCILayout fuzzes the documents of an OCI layout — index.json,
// the image manifest, the config — and the layer, with the digests and
// sizes that tie them together filled in by the harness (@LAYER@,
// @LAYERSIZE@, @DIFFID@, @CONFIG@, @CONFIGSIZE@, @MANIFEST@,
// @MANIFESTSIZE@, and @NESTED@, @NESTEDSIZE@ for an index of the manifest
// for arm64 and amd64) so the fuzzer gets past digest checks. A successful
// import must record the config's digest as ID, tags that resolve, and the
// size the image's blobs really take.
func FuzzImportOCILayout(f *testing.F) {
	layer := tarOf(f, [][2]string{{"etc/hostname", "oci"}, {"bin/sh", "#!"}}, [2]string{"bin/ash", "sh"})
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"@CONFIG@","size":@CONFIGSIZE@},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"@LAYER@","size":@LAYERSIZE@}],` +
		`"annotations":{"org.opencontainers.image.created":"2024-01-01T00:00:00Z"}}`
	twoLayers := strings.Replace(manifest, `"layers":[`, `"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"@LAYER@","size":@LAYERSIZE@},`, 1)
	entry := `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@MANIFEST@","size":@MANIFESTSIZE@,` +
		`"annotations":{"org.opencontainers.image.ref.name":"registry.k8s.io/app:1"}}`
	for _, s := range []struct{ index, manifest, config string }{
		{`{"schemaVersion":2,"manifests":[` + entry + `]}`, manifest, string(seedConfig("@DIFFID@"))},
		{`{"schemaVersion":2,"manifests":[` + strings.Replace(entry, "registry.k8s.io/app:1", "1.0", 1) + `,` +
			strings.Replace(entry, `"org.opencontainers.image.ref.name":"registry.k8s.io/app:1"`, `"io.containerd.image.name":"docker.io/library/x:2","org.opencontainers.image.ref.name":"2"`, 1) + `]}`,
			manifest, string(seedConfig("@DIFFID@"))},
		{`{"schemaVersion":2,"manifests":[` + entry + `]}`, twoLayers,
			strings.Replace(string(seedConfig("@DIFFID@")), `"sha256:@DIFFID@"`, `"sha256:@DIFFID@","sha256:@DIFFID@"`, 1)},
		// An index whose entry is itself an index is resolved through.
		{`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"@NESTED@","size":@NESTEDSIZE@,"annotations":{"org.opencontainers.image.ref.name":"nested:1"}}]}`,
			manifest, string(seedConfig("@DIFFID@"))},
	} {
		f.Add([]byte(s.index), []byte(s.manifest), []byte(s.config), layer)
	}
	f.Fuzz(func(t *testing.T, index, manifest, config, layer []byte) {
		diffID := sha256Hex(layer)
		config = fill(config, "@DIFFID@", diffID)
		manifest = fill(manifest, "@CONFIG@", "sha256:"+sha256Hex(config), "@CONFIGSIZE@", strconv.Itoa(len(config)),
			"@LAYER@", "sha256:"+diffID, "@LAYERSIZE@", strconv.Itoa(len(layer)))
		manifestRefs := []string{"@MANIFEST@", "sha256:" + sha256Hex(manifest), "@MANIFESTSIZE@", strconv.Itoa(len(manifest))}
		nested := fill([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`+
			`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@MANIFEST@","size":@MANIFESTSIZE@,"platform":{"os":"linux","architecture":"arm64"}},`+
			`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@MANIFEST@","size":@MANIFESTSIZE@,"platform":{"os":"linux","architecture":"amd64"}}]}`), manifestRefs...)
		index = fill(index, append(manifestRefs, "@NESTED@", "sha256:"+sha256Hex(nested), "@NESTEDSIZE@", strconv.Itoa(len(nested)))...)
		s, base := fuzzService(t)
		imgs, err := importBounded(t, s, ociLayout(t, index, manifest, config, layer, nested))
		t.Logf("import: %d images, %v", len(imgs), err)
		if err == nil {
			for _, img := range imgs {
				want := int64(len(config) + len(manifest) + len(layer)*len(img.DiffIDs))
				if len(img.Blobs) == 3 {
					want += int64(len(nested))
				}
				checkImported(t, s, []*Image{img}, nil, want)
			}
		}
		checkAftermath(t, s, base)
	})
}

// FuzzImportDockerSave fuzzes a `docker save` tarball's manifest.json,
// config and layer, with the config's file name (@CONFIG@), the layer's
// (@LAYER@) and its diffID (@DIFFID@) filled in by the harness.
func FuzzImportDockerSave(f *testing.F) {
	layer := tarOf(f, [][2]string{{"etc/hostname", "docker"}})
	for _, m := range []string{
		`[{"Config":"@CONFIG@","RepoTags":["busybox:1"],"Layers":["@LAYER@"]}]`,
		`[{"Config":"@CONFIG@","RepoTags":["registry.k8s.io/a:1","b:2"],"Layers":["@LAYER@"]},{"Config":"@CONFIG@","RepoTags":null,"Layers":["./@LAYER@"]}]`,
		`[{"Config":"@CONFIG@","RepoTags":["x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"],"Layers":["@LAYER@"]}]`,
	} {
		f.Add([]byte(m), seedConfig("@DIFFID@"), layer)
	}
	f.Fuzz(func(t *testing.T, manifest, config, layer []byte) {
		config = fill(config, "@DIFFID@", sha256Hex(layer))
		cfgName, layerName := sha256Hex(config)+".json", sha256Hex(layer)+"/layer.tar"
		manifest = fill(manifest, "@CONFIG@", cfgName, "@LAYER@", layerName)
		archive := tarOf(t, [][2]string{{layerName, string(layer)}, {cfgName, string(config)}, {"manifest.json", string(manifest)}})
		s, base := fuzzService(t)
		imgs, err := importBounded(t, s, archive)
		t.Logf("import: %d images, %v", len(imgs), err)
		if err == nil {
			for _, img := range imgs {
				checkImported(t, s, []*Image{img}, config, int64(len(config)+len(layer)*len(img.DiffIDs)))
			}
		}
		checkAftermath(t, s, base)
	})
}

// outToken in a fuzzed layer's entry names and link targets stands for a
// directory outside the service root that the layer must never reach.
const outToken = "@OUT@"

// FuzzUnpackLayers unpacks two fuzzed layers (the second on top of the
// first, so whiteouts, opaque dirs and implicit parents see a real lower
// layer) through a `docker save` import. Nothing may be created outside
// the snapshot: not in the decoy dir @OUT@ stands for, not in base, and
// not at any host path an entry name or link target points at.
func FuzzUnpackLayers(f *testing.F) {
	seeds := [][2][]entry{
		{{{name: "etc/", typ: tar.TypeDir}, {name: "etc/passwd", content: "root:x:0:0::/root:/bin/sh\n"}, {name: "bin/", typ: tar.TypeDir}, {name: "bin/sh", content: "#!", mode: 0o755}, {name: "bin/ash", typ: tar.TypeLink, link: "bin/sh"}},
			{{name: "etc/.wh.passwd"}, {name: "bin/.wh..wh..opq"}, {name: "bin/new", content: "x"}}},
		{{{name: "a/", typ: tar.TypeDir}},
			{{name: "a/escape", typ: tar.TypeSymlink, link: outToken}, {name: "a/escape/file", content: "pwned"}}},
		{{{name: "link", typ: tar.TypeSymlink, link: "../../../../../../../../../../" + outToken}},
			{{name: "link/file", content: "pwned"}, {name: "link", typ: tar.TypeDir}, {name: "link/again", content: "x"}}},
		{{{name: "../../../../" + outToken + "/dotdot", content: "pwned"}, {name: "/" + outToken + "/abs", content: "pwned"}},
			{{name: "hard", typ: tar.TypeLink, link: outToken + "/victim"}, {name: "hard2", typ: tar.TypeLink, link: "../../../../../../../../../../" + outToken + "/victim"}}},
		{{{name: "d", typ: tar.TypeSymlink, link: "/"}},
			{{name: "d/" + outToken + "/through-root-link", content: "pwned"}, {name: "d/.wh.x"}}},
		{{{name: "dev/", typ: tar.TypeDir}, {name: "dev/null", typ: tar.TypeChar}, {name: "fifo", typ: tar.TypeFifo}},
			{{name: ".wh.dev"}, {name: "fifo/x", content: "x"}}},
	}
	for _, s := range seeds {
		f.Add(tarBytes(f, s[0]), tarBytes(f, s[1]))
	}
	f.Fuzz(func(t *testing.T, lower, upper []byte) {
		s, base := fuzzService(t)
		out := filepath.Join(base, "out")
		if err := os.Mkdir(out, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, "victim"), []byte("host file"), 0o644); err != nil {
			t.Fatal(err)
		}
		var candidates []string
		var layers [][]byte
		for _, l := range [][]byte{lower, upper} {
			b, c := rewriteLayer(l, out, base)
			layers = append(layers, b)
			candidates = append(candidates, c...)
		}
		existed := map[string]bool{}
		for _, c := range candidates {
			if _, err := os.Lstat(c); err == nil {
				existed[c] = true
			}
		}
		archive := dockerArchive(t, layers)
		imgs, err := importBounded(t, s, archive)
		t.Logf("import: %d images, %v", len(imgs), err)
		checkAftermath(t, s, base, "out")
		left, err := os.ReadDir(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 1 || left[0].Name() != "victim" {
			t.Errorf("the layers wrote into the decoy dir outside the root: %v", names(left))
		}
		if b, err := os.ReadFile(filepath.Join(out, "victim")); err != nil || string(b) != "host file" {
			t.Errorf("decoy file outside the root changed: %q, %v", b, err)
		}
		for _, c := range candidates {
			if _, err := os.Lstat(c); err == nil && !existed[c] {
				t.Errorf("the layers created %s outside the root", c)
			}
		}
	})
}

// dockerArchive wraps layers (uncompressed tars) in a `docker save` tarball
// with the config that names their diffIDs.
func dockerArchive(t *testing.T, layers [][]byte) []byte {
	t.Helper()
	var diffIDs, layerNames []string
	var files [][2]string
	for i, l := range layers {
		diffIDs = append(diffIDs, "sha256:"+sha256Hex(l))
		n := strconv.Itoa(i) + "/layer.tar"
		layerNames = append(layerNames, n)
		files = append(files, [2]string{n, string(l)})
	}
	cfg, err := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{"fuzz:1"}, "Layers": layerNames}})
	if err != nil {
		t.Fatal(err)
	}
	return tarOf(t, append(files, [2]string{"config.json", string(cfg)}, [2]string{"manifest.json", string(manifest)}))
}

// rewriteLayer replaces outToken in the entry names and link targets of
// layer with out (re-encoding the tar; a layer that does not parse is
// used as is) and lists the host paths outside base its entries could
// reach: names and link targets followed lexically and through the
// layer's own symlinks.
func rewriteLayer(layer []byte, out, base string) ([]byte, []string) {
	var hdrs []*tar.Header
	var bodies [][]byte
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return layer, nil
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return layer, nil
		}
		h.Name = strings.ReplaceAll(h.Name, outToken, out)
		h.Linkname = strings.ReplaceAll(h.Linkname, outToken, out)
		hdrs, bodies = append(hdrs, h), append(bodies, b)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, h := range hdrs {
		if tw.WriteHeader(h) != nil {
			return layer, nil
		}
		if _, err := tw.Write(bodies[i]); err != nil {
			return layer, nil
		}
	}
	if tw.Close() != nil {
		return layer, nil
	}
	// Where entries would land if nothing stopped them: the snapshot dir
	// sits at <base>/root/snapshots/<tmp>/fs.
	fsDir := filepath.Join(base, "root", "snapshots", "tmp", "fs")
	links := map[string]string{}
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeSymlink {
			links[filepath.Clean("/"+h.Name)] = h.Linkname
		}
	}
	var out2 []string
	add := func(p string) {
		if p = filepath.Clean(p); !strings.HasPrefix(p, base+"/") && p != base {
			out2 = append(out2, p)
		}
	}
	for _, h := range hdrs {
		add(filepath.Join(fsDir, h.Name))
		add(resolveThrough(links, h.Name, fsDir))
		switch {
		case h.Typeflag == tar.TypeLink:
			add(filepath.Join(fsDir, h.Linkname))
		case h.Typeflag != tar.TypeSymlink:
		case filepath.IsAbs(h.Linkname):
			add(h.Linkname)
		default:
			add(filepath.Join(fsDir, filepath.Dir(h.Name), h.Linkname))
		}
	}
	return buf.Bytes(), out2
}

// resolveThrough follows name through the layer's symlinks the way a
// careless extractor would (absolute targets taken as host paths).
func resolveThrough(links map[string]string, name, fsDir string) string {
	parts := strings.Split(filepath.Clean("/"+name), "/")[1:]
	cur := "/"
	for i := 0; i < len(parts) && i < 64; i++ {
		next := filepath.Join(cur, parts[i])
		if target, ok := links[next]; ok && i < len(parts)-1 {
			if filepath.IsAbs(target) {
				return filepath.Join(append([]string{target}, parts[i+1:]...)...)
			}
			next = filepath.Join(cur, target)
		}
		cur = next
	}
	return filepath.Join(fsDir, cur)
}
