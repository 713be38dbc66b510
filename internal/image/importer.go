package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	digest "github.com/opencontainers/go-digest"
)

const (
	annotationRefName        = "org.opencontainers.image.ref.name"
	annotationContainerdName = "io.containerd.image.name"
	// importRepository names images of an OCI layout tagged only with a bare
	// tag ("1.0"): they become localhost/import:<tag>.
	importRepository = "localhost/import"
	// maxMetadataSize bounds manifests, indexes and configs read into memory.
	maxMetadataSize = 8 << 20
)

// Import loads an OCI image layout archive or a `docker save` tarball.
func (s *Service) Import(ctx context.Context, r io.Reader) ([]*Image, error) {
	f, err := os.CreateTemp(s.ingestDir(), "import-")
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := io.Copy(f, ctxReader{ctx, r}); err != nil {
		return nil, fmt.Errorf("import: read archive: %w", err)
	}
	ti, err := indexTar(f)
	if err != nil {
		return nil, fmt.Errorf("import: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	var srcs []*imageSource
	switch {
	case ti.has("index.json"):
		srcs, err = ti.ociSources()
	case ti.has("manifest.json"):
		srcs, err = ti.dockerSources()
	default:
		return nil, fmt.Errorf("import: archive has neither index.json (OCI layout) nor manifest.json (docker save): %w", errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("import: archive holds no image: %w", errdefs.ErrInvalidArgument)
	}
	var out []*Image
	for _, src := range srcs {
		img, err := s.storeImage(ctx, nil, src)
		if err != nil {
			return out, s.noSpace(fmt.Errorf("import %s: %w", src.name, err))
		}
		s.log.Info("image imported", "id", img.ID, "tags", img.RepoTags)
		out = append(out, img)
	}
	return out, nil
}

// tarIndex gives random access to the entries of a tar file.
type tarIndex struct {
	f       *os.File
	entries map[string]tarEntry
}

type tarEntry struct {
	offset, size int64
	link         string // target of a symlink (relative to the entry's dir) or hard link (archive path)
	hard         bool
}

func indexTar(f *os.File) (*tarIndex, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	ti := &tarIndex{f: f, entries: map[string]tarEntry{}}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not a tar archive: %w", err)
		}
		name := cleanTarPath(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeReg:
			// archive/tar reads no further than the header, so the file
			// position is where this entry's data starts.
			off, err := f.Seek(0, io.SeekCurrent)
			if err != nil {
				return nil, err
			}
			ti.entries[name] = tarEntry{offset: off, size: hdr.Size}
		case tar.TypeSymlink:
			ti.entries[name] = tarEntry{link: hdr.Linkname}
		case tar.TypeLink:
			ti.entries[name] = tarEntry{link: cleanTarPath(hdr.Linkname), hard: true}
		}
	}
	if len(ti.entries) == 0 {
		return nil, errors.New("empty archive")
	}
	return ti, nil
}

func cleanTarPath(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

func (t *tarIndex) has(name string) bool { _, err := t.lookup(name); return err == nil }

// lookup resolves links inside the archive (never on the host).
func (t *tarIndex) lookup(name string) (tarEntry, error) {
	name = cleanTarPath(name)
	for range 16 {
		e, ok := t.entries[name]
		if !ok {
			return tarEntry{}, fmt.Errorf("archive has no %s: %w", name, errdefs.ErrInvalidArgument)
		}
		switch {
		case e.link == "":
			return e, nil
		case e.hard:
			name = e.link
		default:
			name = cleanTarPath(path.Join(path.Dir(name), e.link))
		}
	}
	return tarEntry{}, fmt.Errorf("archive entry %s: too many links: %w", name, errdefs.ErrInvalidArgument)
}

func (t *tarIndex) open(name string) (io.ReadCloser, error) {
	e, err := t.lookup(name)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(io.NewSectionReader(t.f, e.offset, e.size)), nil
}

func (t *tarIndex) read(name string) ([]byte, error) {
	e, err := t.lookup(name)
	if err != nil {
		return nil, err
	}
	if e.size > maxMetadataSize {
		return nil, fmt.Errorf("archive entry %s is too large (%d bytes): %w", name, e.size, errdefs.ErrInvalidArgument)
	}
	b := make([]byte, e.size)
	if _, err := t.f.ReadAt(b, e.offset); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}

func blobName(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// readBlob reads and verifies a metadata blob of an OCI layout.
func (t *tarIndex) readBlob(h v1.Hash) ([]byte, error) {
	b, err := t.read(blobName(h))
	if err != nil {
		return nil, err
	}
	if h.Algorithm != "sha256" || digest.FromBytes(b).Encoded() != h.Hex {
		return nil, fmt.Errorf("blob %s: content does not match digest: %w", h, errdefs.ErrDataLoss)
	}
	return b, nil
}

// ociSources lists the images of an OCI image layout, resolving indexes to
// linux/amd64.
func (t *tarIndex) ociSources() ([]*imageSource, error) {
	raw, err := t.read("index.json")
	if err != nil {
		return nil, err
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("index.json: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	byDigest := map[digest.Digest]*imageSource{}
	var order []digest.Digest
	for _, desc := range idx.Manifests {
		top := digest.Digest(desc.Digest.String())
		src, ok := byDigest[top]
		if !ok {
			blobs := map[digest.Digest][]byte{}
			m, err := t.resolveManifest(desc, blobs, 0)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", desc.Digest, err)
			}
			if m == nil {
				continue // nothing for our platform
			}
			src, err = t.ociSource(m, blobs)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", desc.Digest, err)
			}
			src.name = top.String()
			byDigest[top] = src
			order = append(order, top)
		}
		for _, tag := range layoutTags(desc.Annotations) {
			src.tags = union(src.tags, []string{tag.String()})
			src.repoDigests = union(src.repoDigests, []string{tag.Repository() + "@" + top.String()})
			src.name = tag.String()
		}
	}
	out := make([]*imageSource, 0, len(order))
	for _, d := range order {
		out = append(out, byDigest[d])
	}
	return out, nil
}

// resolveManifest returns the image manifest desc leads to (through
// indexes), collecting the manifests read in blobs; nil when an index has
// no linux/amd64 image.
func (t *tarIndex) resolveManifest(desc v1.Descriptor, blobs map[digest.Digest][]byte, depth int) (*v1.Manifest, error) {
	if depth > 4 {
		return nil, fmt.Errorf("indexes nested too deep: %w", errdefs.ErrInvalidArgument)
	}
	raw, err := t.readBlob(desc.Digest)
	if err != nil {
		return nil, err
	}
	blobs[digest.Digest(desc.Digest.String())] = raw
	if desc.MediaType.IsImage() {
		m, err := v1.ParseManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("manifest: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		return m, nil
	}
	if !desc.MediaType.IsIndex() {
		return nil, fmt.Errorf("unsupported media type %q: %w", desc.MediaType, errdefs.ErrNotImplemented)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("index: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	for _, child := range idx.Manifests {
		if child.Platform == nil && len(idx.Manifests) > 1 {
			continue
		}
		if child.Platform != nil && !child.Platform.Satisfies(pullPlatform) {
			continue
		}
		return t.resolveManifest(child, blobs, depth+1)
	}
	return nil, nil
}

func (t *tarIndex) ociSource(m *v1.Manifest, blobs map[digest.Digest][]byte) (*imageSource, error) {
	cfg, err := t.readBlob(m.Config.Digest)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	src := &imageSource{
		config:       cfg,
		configDigest: digest.Digest(m.Config.Digest.String()),
		blobs:        blobs,
		size:         uint64(len(cfg)),
		annotations:  m.Annotations,
	}
	for _, b := range blobs {
		src.size += uint64(len(b))
	}
	for _, l := range m.Layers {
		src.size += uint64(l.Size)
		name := blobName(l.Digest)
		if !t.has(name) {
			return nil, fmt.Errorf("layer %s is not in the archive: %w", l.Digest, errdefs.ErrInvalidArgument)
		}
		src.layers = append(src.layers, layerSource{
			digest: digest.Digest(l.Digest.String()),
			open:   func() (io.ReadCloser, error) { return t.open(name) },
		})
	}
	return src, nil
}

// layoutTags reads the references an index.json entry is tagged with:
// containerd's full name, and the OCI ref name, which is a full reference
// or a bare tag.
func layoutTags(ann map[string]string) []reference {
	var out []reference
	if n := ann[annotationContainerdName]; n != "" {
		if r, err := parseReference(n); err == nil && r.Tag != "" {
			out = append(out, r)
		}
	}
	if n := ann[annotationRefName]; n != "" {
		if !strings.ContainsAny(n, "/:@") {
			if len(out) > 0 {
				// containerd and docker write the bare tag next to the
				// full name; the full name already says it.
				return out
			}
			n = importRepository + ":" + n
		}
		if r, err := parseReference(n); err == nil && r.Tag != "" {
			out = append(out, r)
		}
	}
	return out
}

// dockerSources lists the images of a `docker save` tarball.
func (t *tarIndex) dockerSources() ([]*imageSource, error) {
	raw, err := t.read("manifest.json")
	if err != nil {
		return nil, err
	}
	var m tarball.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("manifest.json: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	var out []*imageSource
	for _, d := range m {
		cfg, err := t.read(d.Config)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		src := &imageSource{
			name:         d.Config,
			config:       cfg,
			configDigest: digest.FromBytes(cfg),
			size:         uint64(len(cfg)),
		}
		for _, tag := range d.RepoTags {
			r, err := parseReference(tag)
			if err != nil {
				return nil, fmt.Errorf("manifest.json: %w", err)
			}
			if r.Tag != "" {
				src.tags = append(src.tags, r.String())
				src.name = r.String()
			}
		}
		for _, l := range d.Layers {
			// A layer the archive lacks would go unnoticed while its
			// snapshot exists (another entry of the archive, or an image
			// already here, unpacked it), and the image's size would
			// leave it out.
			e, err := t.lookup(l)
			if err != nil {
				return nil, fmt.Errorf("manifest.json: layer of %s: %w", src.name, err)
			}
			src.size += uint64(e.size)
			src.layers = append(src.layers, layerSource{
				open: func() (io.ReadCloser, error) { return t.open(l) },
			})
		}
		out = append(out, src)
	}
	return out, nil
}
