package images

import (
	"archive/tar"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// WithFiller returns base with n layers appended, each one file of size
// random bytes (/filler/<seed>-<i>): content no compression shrinks, so
// that a pull moves and stores every byte, for disk-full and pull-size
// tests. The bytes follow from seed alone, so the same call makes the same
// image (and a registry stores it once); they are generated each time a
// layer is read, never held in memory.
func WithFiller(base v1.Image, seed uint64, n int, size int64) (v1.Image, error) {
	layers := make([]v1.Layer, 0, n)
	for i := range n {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return fillerTar(seed, i, size), nil
		}, tarball.WithCompressionLevel(gzip.BestSpeed))
		if err != nil {
			return nil, fmt.Errorf("filler layer %d: %w", i, err)
		}
		layers = append(layers, l)
	}
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		return nil, fmt.Errorf("filler image: %w", err)
	}
	return img, nil
}

// fillerTar streams the uncompressed tar of layer i of seed's filler.
func fillerTar(seed uint64, i int, size int64) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		name := fmt.Sprintf("filler/%d-%d", seed, i)
		err := tw.WriteHeader(&tar.Header{Name: "filler/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)})
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0)})
		}
		if err == nil {
			var key [32]byte
			binary.LittleEndian.PutUint64(key[0:], seed)
			binary.LittleEndian.PutUint64(key[8:], uint64(i))
			_, err = io.CopyN(tw, rand.NewChaCha8(key), size)
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}
