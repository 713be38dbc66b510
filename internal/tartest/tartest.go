// Package tartest reads tar streams for tests: the archives crid writes
// (checkpoints) and the image layers the tests build or pull.
package tartest

import (
	"archive/tar"
	"errors"
	"io"
	"testing"
)

// Read returns the entries of a tar stream: every entry's header by its
// name in the stream, and each regular file's content by name. An entry
// that appears twice is the later one. A stream that does not read as a
// tar fails t.
func Read(t testing.TB, r io.Reader) (hdrs map[string]*tar.Header, files map[string][]byte) {
	t.Helper()
	hdrs, files = map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hdrs, files
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		hdrs[h.Name] = h
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read tar entry %s: %v", h.Name, err)
		}
		files[h.Name] = b
	}
}
