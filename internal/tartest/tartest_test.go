package tartest

import (
	"archive/tar"
	"bytes"
	"testing"
)

func TestRead(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range []struct {
		h    tar.Header
		data string
	}{
		{tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, ""},
		{tar.Header{Name: "d/f", Typeflag: tar.TypeReg, Mode: 0o644}, "first"},
		{tar.Header{Name: "d/l", Typeflag: tar.TypeSymlink, Linkname: "f"}, ""},
		{tar.Header{Name: "d/f", Typeflag: tar.TypeReg, Mode: 0o600}, "second"},
		{tar.Header{Name: "empty", Typeflag: tar.TypeReg}, ""},
	} {
		e.h.Size = int64(len(e.data))
		if err := tw.WriteHeader(&e.h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	hdrs, files := Read(t, &buf)
	if len(hdrs) != 4 || hdrs["d/"].Typeflag != tar.TypeDir || hdrs["d/l"].Linkname != "f" || hdrs["d/f"].Mode != 0o600 {
		t.Errorf("headers = %v", hdrs)
	}
	if len(files) != 2 || string(files["d/f"]) != "second" || files["empty"] == nil {
		t.Errorf("files = %q, want the later d/f and the empty file", files)
	}
}
