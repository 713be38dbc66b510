package core

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func TestTrash(t *testing.T) {
	root, state := t.TempDir(), t.TempDir()
	tr := newTrash(slog.New(slog.NewTextHandler(io.Discard, nil)), root, state)
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
	bundle := mk(filepath.Join(state, "containers", "c1"))
	outside := mk(filepath.Join(t.TempDir(), "elsewhere"))
	for _, d := range []string{ctr, bundle, outside, filepath.Join(root, "containers", "never-existed")} {
		if err := tr.discard(d); err != nil {
			t.Fatalf("discard %s: %v", d, err)
		}
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Fatalf("%s still in place after discard: %v", d, err)
		}
	}
	tr.wg.Wait()
	for _, b := range []string{root, state} {
		if es, _ := os.ReadDir(filepath.Join(b, "trash")); len(es) != 0 {
			t.Fatalf("trash of %s not emptied: %v", b, es)
		}
	}
	// A crash leaves something in the trash: the next start empties it.
	left := mk(filepath.Join(root, "trash", "c2-deadbeef"))
	tr.sweep()
	tr.wg.Wait()
	if _, err := os.Lstat(left); !os.IsNotExist(err) {
		t.Fatalf("sweep left %s: %v", left, err)
	}
	// The trash dir itself is not a container dir of its base.
	if _, ok := tr.dirOf(root); ok {
		t.Fatal("the base itself must not go to the trash")
	}
}
