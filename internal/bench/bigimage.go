package bench

import (
	"archive/tar"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The pull-size scenario's images are generated, not downloaded: N layers
// of files whose bytes follow from the layer's seed alone, half random
// (no compressor shrinks them) and half text drawn from a small word list
// (which gzip and zstd shrink to about a third), so that a pull moves,
// decompresses and writes a known amount of each kind.

// bigImage names one generated image.
type bigImage struct {
	SizeMiB     int    // uncompressed payload of all layers
	Layers      int    // layer count
	Compression string // "gzip" or "zstd"
}

// bigImageFile is the size of the files of a generated layer: big enough
// that the per-file cost of an unpack does not dominate, small enough for
// a layer to hold dozens of them.
const bigImageFile = 1 << 20

// ref is the upstream reference the runtimes pull (through their
// registry.k8s.io mirror, the test registry).
func (g bigImage) ref() string {
	return fmt.Sprintf("registry.k8s.io/crid-bench/big-%s:%dm-%dl", g.Compression, g.SizeMiB, g.Layers)
}

// layerBytes is the uncompressed payload of layer i: the size split evenly,
// the remainder in the last layer.
func (g bigImage) layerBytes(i int) int64 {
	total := int64(g.SizeMiB) << 20
	per := total / int64(g.Layers)
	if i == g.Layers-1 {
		return total - per*int64(g.Layers-1)
	}
	return per
}

// build returns the image; its layers are generated (and compressed, once
// each: the compressed bytes are kept until the image is dropped) as the
// push reads them.
func (g bigImage) build() (v1.Image, error) {
	comp := compression.GZip
	mt := types.OCILayer
	switch g.Compression {
	case "gzip":
	case "zstd":
		comp, mt = compression.ZStd, types.OCILayerZStd
	default:
		return nil, fmt.Errorf("compression %q: want gzip or zstd", g.Compression)
	}
	if g.Layers < 1 || g.SizeMiB < 1 {
		return nil, fmt.Errorf("image of %d MiB in %d layers: both must be positive", g.SizeMiB, g.Layers)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	layers := make([]v1.Layer, 0, g.Layers)
	for i := range g.Layers {
		seed := uint64(g.SizeMiB)<<32 | uint64(g.Layers)<<16 | uint64(i)
		size := g.layerBytes(i)
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return bigLayerTar(seed, i, size), nil
		}, tarball.WithCompression(comp), tarball.WithMediaType(mt), tarball.WithCompressedCaching)
		if err != nil {
			return nil, fmt.Errorf("layer %d of %s: %w", i, g.ref(), err)
		}
		layers = append(layers, l)
	}
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", g.ref(), err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", g.ref(), err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Cmd = []string{"/bin/true"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", g.ref(), err)
	}
	return img, nil
}

// bigLayerTar streams the uncompressed tar of one layer: a directory of
// bigImageFile-sized files (the last one shorter) holding size bytes.
func bigLayerTar(seed uint64, layer int, size int64) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		dir := fmt.Sprintf("big/%d/", layer)
		epoch := time.Unix(0, 0)
		err := tw.WriteHeader(&tar.Header{Name: "big/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch})
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch})
		}
		src := newMixedReader(seed)
		for f := 0; err == nil && size > 0; f++ {
			n := min(size, bigImageFile)
			size -= n
			err = tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("%sf%05d", dir, f), Typeflag: tar.TypeReg, Mode: 0o644, Size: n, ModTime: epoch})
			if err == nil {
				_, err = io.CopyN(tw, src, n)
			}
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// mixedBlock is the length of the alternating random and text runs.
const mixedBlock = 64 << 10

// words of the compressible half: 64 words, so 6 bits of choice per word
// of about 6 bytes.
var words = [64]string{
	"container", "runtime", "image", "layer", "snapshot", "overlay", "sandbox", "network",
	"kubelet", "cgroup", "namespace", "mount", "process", "signal", "monitor", "exit",
	"pull", "push", "registry", "manifest", "digest", "config", "index", "blob",
	"gzip", "zstd", "tar", "file", "directory", "symlink", "whiteout", "opaque",
	"pod", "node", "cluster", "volume", "secret", "service", "endpoint", "label",
	"start", "stop", "create", "remove", "list", "status", "stats", "exec",
	"attach", "log", "stream", "port", "forward", "update", "event", "metric",
	"alpha", "beta", "gamma", "delta", "error", "warning", "info", "debug",
}

// mixedReader yields alternating mixedBlock-long runs of random bytes and
// of words separated by spaces and newlines, both from one seeded ChaCha8.
type mixedReader struct {
	rng  *rand.ChaCha8
	buf  []byte
	off  int
	text bool
}

func newMixedReader(seed uint64) *mixedReader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	binary.LittleEndian.PutUint64(key[8:], 0x63726964) // "crid": apart from other users of the seed
	return &mixedReader{rng: rand.NewChaCha8(key), buf: make([]byte, 0, mixedBlock+16)}
}

func (m *mixedReader) Read(p []byte) (int, error) {
	if m.off == len(m.buf) {
		m.fill()
	}
	n := copy(p, m.buf[m.off:])
	m.off += n
	return n, nil
}

// fill makes the next run.
func (m *mixedReader) fill() {
	m.buf, m.off = m.buf[:0], 0
	if !m.text {
		m.buf = m.buf[:mixedBlock]
		_, _ = m.rng.Read(m.buf) // ChaCha8.Read never fails
	} else {
		for n := 0; len(m.buf) < mixedBlock; n++ {
			r := m.rng.Uint64()
			m.buf = append(m.buf, words[r&63]...)
			sep := byte(' ')
			if r>>6&15 == 0 {
				sep = '\n'
			}
			m.buf = append(m.buf, sep)
		}
		m.buf = m.buf[:mixedBlock]
	}
	m.text = !m.text
}

// registryRef is where ref lives on the test registry at addr: a mirror
// repository named after the upstream host, as test/images pushes its
// catalog (registry.k8s.io/x:t -> <addr>/registry.k8s.io/x:t). Not
// test/images' own MirrorReference: importing that package would link
// its whole image catalog into crid-bench for one string.
func registryRef(addr, ref string) (name.Tag, error) {
	t, err := name.NewTag(addr+"/"+ref, name.Insecure, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("mirror reference of %s on %s: %w", ref, addr, err)
	}
	return t, nil
}

// pushBigImage builds g and pushes it to the registry at addr, unless the
// registry has its tag already (the content follows from g alone, so an
// existing tag is the same image).
func pushBigImage(ctx context.Context, addr string, g bigImage) (bool, error) {
	t, err := registryRef(addr, g.ref())
	if err != nil {
		return false, err
	}
	_, err = remote.Head(t, remote.WithContext(ctx))
	if err == nil {
		return false, nil
	}
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusNotFound {
		return false, fmt.Errorf("look up %s on %s: %w", g.ref(), addr, err)
	}
	img, err := g.build()
	if err != nil {
		return false, err
	}
	if err := remote.Write(t, img, remote.WithContext(ctx), remote.WithJobs(4)); err != nil {
		return false, fmt.Errorf("push %s to %s: %w", g.ref(), addr, err)
	}
	return true, nil
}
