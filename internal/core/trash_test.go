package core

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func TestTrash(t *testing.T) {
	root := t.TempDir()
	tr := newTrash(slog.New(slog.NewTextHandler(io.Discard, nil)), root)
	// Deletions wait until the test lets them go: discard must return
	// with the files moved, not deleted.
	release := make(chan struct{})
	tr.remove = func(p string) error { <-release; return os.RemoveAll(p) }
	mk := func(dir string) string {
		if err := os.MkdirAll(filepath.Join(dir, "rw", "upper", "deep"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "rw", "upper", "deep", "f"), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	ctr := mk(filepath.Join(root, "containers", "c1"))
	for _, d := range []string{ctr, filepath.Join(root, "containers", "never-existed")} {
		if err := tr.discard(d); err != nil {
			t.Fatalf("discard %s: %v", d, err)
		}
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Fatalf("%s still in place after discard: %v", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "trash", "c1", "rw", "upper", "deep", "f")); err != nil {
		t.Fatalf("the container's files are not waiting in the trash: %v", err)
	}
	close(release)
	tr.wg.Wait()
	if es, _ := os.ReadDir(filepath.Join(root, "trash")); len(es) != 0 {
		t.Fatalf("trash not emptied: %v", es)
	}
	// A crash leaves something in the trash: the next start empties it.
	left := mk(filepath.Join(root, "trash", "c2"))
	tr.sweep()
	tr.wg.Wait()
	if _, err := os.Lstat(left); !os.IsNotExist(err) {
		t.Fatalf("sweep left %s: %v", left, err)
	}
}
