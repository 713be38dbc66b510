package images

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is the modification time of every file and the creation time of
// every image: fixed so that building twice yields identical digests, and the
// registry and the offline archive agree on image IDs.
var epoch = time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC)

type entryKind int

const (
	kindDir entryKind = iota
	kindFile
	kindSymlink
	kindHardlink
)

// entry is one file system object of a layer.
type entry struct {
	kind     entryKind
	mode     int64
	uid, gid int
	data     []byte // kindFile content
	link     string // symlink target or hard link target (absolute image path)
}

// tree is a file tree that becomes one layer. Paths are absolute image
// paths ("/bin/sh"); missing parent directories are added as 0755 root dirs.
type tree struct {
	entries map[string]*entry
}

func newTree() *tree { return &tree{entries: map[string]*entry{}} }

func clean(p string) string { return path.Clean("/" + p) }

func (t *tree) add(p string, e *entry) {
	p = clean(p)
	for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
		if _, ok := t.entries[dir]; !ok {
			t.entries[dir] = &entry{kind: kindDir, mode: 0o755}
		}
	}
	t.entries[p] = e
}

// dir adds a directory with the given mode and owner.
func (t *tree) dir(p string, mode int64, uid, gid int) {
	t.add(p, &entry{kind: kindDir, mode: mode, uid: uid, gid: gid})
}

// file adds a regular root-owned file with content data.
func (t *tree) file(p string, mode int64, data []byte) {
	t.add(p, &entry{kind: kindFile, mode: mode, data: data})
}

// hostFile copies a file of this machine (following symlinks) to p,
// keeping its permission bits.
func (t *tree) hostFile(p, host string) error {
	st, err := os.Stat(host)
	if err != nil {
		return fmt.Errorf("host file for %s: %w", p, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("host file %s for %s: not a regular file", host, p)
	}
	data, err := os.ReadFile(host)
	if err != nil {
		return fmt.Errorf("host file for %s: %w", p, err)
	}
	t.file(p, int64(st.Mode().Perm()), data)
	return nil
}

func (t *tree) symlink(p, target string) {
	t.add(p, &entry{kind: kindSymlink, mode: 0o777, link: target})
}

// hardlink adds p as a hard link to the regular file target of this tree.
func (t *tree) hardlink(p, target string) {
	t.add(p, &entry{kind: kindHardlink, link: clean(target)})
}

func (t *tree) has(p string) bool {
	_, ok := t.entries[clean(p)]
	return ok
}

// tarBytes renders the tree as an uncompressed tar stream: directories and
// files first in path order (parents precede children), hard links last so
// that every link names a file already written.
func (t *tree) tarBytes() ([]byte, error) {
	paths := make([]string, 0, len(t.entries))
	for p := range t.entries {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool {
		li := t.entries[paths[i]].kind == kindHardlink
		lj := t.entries[paths[j]].kind == kindHardlink
		if li != lj {
			return lj
		}
		return paths[i] < paths[j]
	})

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := t.entries[p]
		name := strings.TrimPrefix(p, "/")
		hdr := &tar.Header{
			Name:    name,
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		switch e.kind {
		case kindDir:
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case kindFile:
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(e.data))
		case kindSymlink:
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = e.link
		case kindHardlink:
			target, ok := t.entries[e.link]
			if !ok || target.kind != kindFile {
				return nil, fmt.Errorf("hard link %s: target %s is not a file of the layer", p, e.link)
			}
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = strings.TrimPrefix(e.link, "/")
			hdr.Mode = target.mode
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", p, err)
		}
		if e.kind == kindFile {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("tar data %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// layer turns the tree into a gzip-compressed OCI layer whose digests are
// computed once and whose compressed bytes are kept in memory.
func (t *tree) layer() (v1.Layer, error) {
	data, err := t.tarBytes()
	if err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithCompressedCaching, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	// Compute both digests now so that later concurrent readers only read.
	if _, err := l.Digest(); err != nil {
		return nil, fmt.Errorf("layer digest: %w", err)
	}
	if _, err := l.DiffID(); err != nil {
		return nil, fmt.Errorf("layer diff id: %w", err)
	}
	return l, nil
}
