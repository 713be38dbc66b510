package bench

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/pkg/archive/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"
)

// The floor of a pull: what any runtime must do to get an image's layers
// from the registry onto the disk, without a content store, snapshots,
// metadata or verification of the uncompressed content. crid-bench fetches
// the manifest and the layer blobs from the same registry the runtimes
// pull from, PullFloorConcurrency layers at a time (crid's and
// containerd's default max_concurrent_downloads), each streamed through:
//   - fetch: to /dev/null (the registry and the loopback);
//   - fetch+decompress: the decompressor both runtimes use
//     (containerd's archive/compression: Go's gzip, or unpigz when on
//     PATH; klauspost's zstd) to /dev/null;
//   - fetch+decompress+write: the tar's files written out, plainly (no
//     whiteouts, attributes or fsync), each layer into its own directory.
// Every layer is streamed end to end at once, so a runtime that pipelines
// download and unpack could reach these figures; one that downloads first
// and unpacks after cannot.

// floorTimes are the three floors of one image.
type floorTimes struct {
	fetch, decompress, write time.Duration
}

type floorMode int

const (
	floorFetch floorMode = iota
	floorDecompress
	floorWrite
)

func (b *Bench) pullFloor(ctx context.Context, g bigImage) (floorTimes, error) {
	var ft floorTimes
	for _, m := range []struct {
		mode floorMode
		out  *time.Duration
	}{{floorFetch, &ft.fetch}, {floorDecompress, &ft.decompress}, {floorWrite, &ft.write}} {
		dir := filepath.Join(b.opts.WorkDir, "pull-floor")
		d, err := timed(func() error { return b.floorOnce(ctx, g, m.mode, dir) })
		// The written files are not part of the floor's time: removed after.
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove floor files: %w", rmErr))
		}
		if err != nil {
			return ft, fmt.Errorf("pull floor of %s: %w", g.ref(), err)
		}
		*m.out = d
	}
	return ft, nil
}

// floorOnce fetches g's manifest and layers and does mode with each.
func (b *Bench) floorOnce(ctx context.Context, g bigImage, mode floorMode, dir string) error {
	t, err := registryRef(b.opts.Registry, g.ref())
	if err != nil {
		return err
	}
	img, err := remote.Image(t, remote.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("layers: %w", err)
	}
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(b.opts.PullFloorConcurrency)
	for i, l := range layers {
		eg.Go(func() error {
			if err := floorLayer(ectx, l, mode, filepath.Join(dir, fmt.Sprint(i))); err != nil {
				return fmt.Errorf("layer %d: %w", i, err)
			}
			return nil
		})
	}
	return eg.Wait()
}

func floorLayer(ctx context.Context, l v1.Layer, mode floorMode, dir string) error {
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	defer rc.Close()
	in := ctxReader{ctx, rc}
	if mode == floorFetch {
		if _, err := io.Copy(io.Discard, in); err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		return nil
	}
	ds, err := compression.DecompressStream(in)
	if err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	defer ds.Close()
	if mode == floorDecompress {
		if _, err := io.Copy(io.Discard, ds); err != nil {
			return fmt.Errorf("decompress: %w", err)
		}
		return nil
	}
	if err := writeTar(ds, dir); err != nil {
		return err
	}
	// Drain the end-of-archive padding, as a runtime verifying the diffID must.
	if _, err := io.Copy(io.Discard, ds); err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	return nil
}

// writeTar writes the directories and regular files of a tar stream under
// dir; the generated layers have nothing else.
func writeTar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		name := filepath.Clean(h.Name)
		if name == ".." || strings.HasPrefix(name, "../") || filepath.IsAbs(name) {
			return fmt.Errorf("tar entry %q leaves the layer", h.Name)
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("write tar: %w", err)
			}
		case tar.TypeReg:
			if err := writeFile(p, tr, h.FileInfo().Mode().Perm()); err != nil {
				return err
			}
		default:
			return fmt.Errorf("tar entry %q: type %c not written by the floor", h.Name, h.Typeflag)
		}
	}
}

func writeFile(p string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("write tar: %w", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write tar: %w", err)
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write tar: %s: %w", p, err)
	}
	return nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(b []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(b)
}
