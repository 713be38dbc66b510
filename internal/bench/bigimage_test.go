package bench

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"testing"
)

// The generated layers must be what the scenario says: deterministic, of
// the size asked for, and partly compressible.
func TestBigLayerTar(t *testing.T) {
	const size = 3*bigImageFile + 1234
	read := func() []byte {
		rc := bigLayerTar(42, 1, size)
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := read(), read()
	if !bytes.Equal(a, b) {
		t.Fatal("two reads of one layer differ")
	}
	tr := tar.NewReader(bytes.NewReader(a))
	var files, total int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			files++
			total += h.Size
		}
	}
	if files != 4 || total != size {
		t.Fatalf("layer has %d files of %d bytes in all, want 4 of %d", files, total, size)
	}
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestSpeed)
	if _, err := zw.Write(a); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	// Half random, half text: gzip leaves between a half and all of it.
	if r := float64(z.Len()) / float64(len(a)); r < 0.5 || r > 0.8 {
		t.Fatalf("gzip ratio %.2f, want 0.5-0.8 (half incompressible, half text)", r)
	}
	if other := read2(t, 43); bytes.Equal(other[:4096], a[:4096]) {
		t.Fatal("two seeds give the same layer")
	}
}

func read2(t *testing.T, seed uint64) []byte {
	rc := bigLayerTar(seed, 1, 2*bigImageFile)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBigImageLayerBytes(t *testing.T) {
	g := bigImage{SizeMiB: 64, Layers: 20, Compression: "gzip"}
	var sum int64
	for i := range g.Layers {
		sum += g.layerBytes(i)
	}
	if sum != 64<<20 {
		t.Fatalf("layers hold %d bytes, want %d", sum, 64<<20)
	}
	if g.ref() != "registry.k8s.io/crid-bench/big-gzip:64m-20l" {
		t.Fatalf("ref %s", g.ref())
	}
}

func TestWriteTarRefusesEscapes(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "../x", Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	if err := writeTar(&buf, t.TempDir()); err == nil {
		t.Fatal("an entry outside the layer was written")
	}
	rc := bigLayerTar(1, 0, bigImageFile+5)
	defer rc.Close()
	d := t.TempDir()
	if err := writeTar(rc, d); err != nil {
		t.Fatal(err)
	}
	usage, err := diskUsage([]string{d})
	if err != nil {
		t.Fatal(err)
	}
	if usage < bigImageFile {
		t.Fatalf("wrote %d bytes, want at least %d", usage, bigImageFile)
	}
}

// The generated images live where the runtimes' registry.k8s.io mirror
// looks for them on the test registry.
func TestRegistryRef(t *testing.T) {
	r, err := registryRef("127.0.0.1:5000", bigImage{SizeMiB: 64, Layers: 20, Compression: "zstd"}.ref())
	if err != nil {
		t.Fatal(err)
	}
	if got := r.String(); got != "127.0.0.1:5000/registry.k8s.io/crid-bench/big-zstd:64m-20l" {
		t.Fatalf("mirror reference %s", got)
	}
	if r.Scheme() != "http" {
		t.Fatalf("scheme %s, want plain http for the loopback registry", r.Scheme())
	}
}
