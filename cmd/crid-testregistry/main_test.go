package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestListAndArchive(t *testing.T) {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	var out bytes.Buffer
	if err := run(ctx, []string{"list"}, &out, logger); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "registry.k8s.io/pause:3.10\tsha256:") {
		t.Errorf("list lacks pause:3.10:\n%s", out.String())
	}

	file := filepath.Join(t.TempDir(), "pause.tar")
	if err := run(ctx, []string{"archive", "--out", file, "--ref", "registry.k8s.io/pause:3.10"}, &out, logger); err != nil {
		t.Fatal(err)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(file) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || strings.Join(m[0].RepoTags, ",") != "registry.k8s.io/pause:3.10" {
		t.Errorf("archive manifest %+v", m)
	}

	if err := run(ctx, []string{"archive", "--out", file, "--ref", "example.com/nope:1"}, &out, logger); err == nil {
		t.Error("archive of an unknown reference succeeded")
	}
	if err := run(ctx, []string{"--addr", "0.0.0.0:0"}, &out, logger); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("non-loopback address: err %v", err)
	}
}
