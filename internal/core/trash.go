package core

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// trash takes a removed container's directory (its writable layer) out of
// the way with one rename and deletes its files in the background. A
// writable layer can hold gigabytes; kubelet's container GC and pod
// deletion should not wait for the disk to free them (containerd leaves
// snapshots to its GC for the same reason). The trash dir sits in crid's
// root, beside the container dirs, so the rename stays on one filesystem.
// What a crash leaves there is emptied at the next start, so shutdown does
// not wait for the deletions either.
type trash struct {
	log    *slog.Logger
	dir    string
	remove func(string) error // os.RemoveAll; tests slow it down
	wg     sync.WaitGroup     // deletions in flight (tests wait on it)
	// freed, if set, is told the bytes each deletion freed (metrics).
	freed func(n int64)
}

func newTrash(log *slog.Logger, root string) *trash {
	return &trash{log: log, dir: filepath.Join(root, "trash"), remove: os.RemoveAll}
}

// discard moves dir (a directory with a unique name) into the trash and
// deletes it in the background; a dir that does not exist is already gone,
// one the rename cannot move is deleted right away.
func (t *trash) discard(dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.MkdirAll(t.dir, 0o700); err != nil {
		return fmt.Errorf("trash dir: %w", err)
	}
	target := filepath.Join(t.dir, filepath.Base(dir))
	if err := os.Rename(dir, target); err != nil {
		if errors.Is(err, syscall.EXDEV) {
			return os.RemoveAll(dir)
		}
		return fmt.Errorf("move %s to the trash: %w", dir, err)
	}
	t.empty(target)
	return nil
}

// empty deletes path in the background.
func (t *trash) empty(path string) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		var before int64
		if t.freed != nil {
			before = diskUsage(path)
		}
		if err := t.remove(path); err != nil {
			t.log.Warn("could not empty the trash", "path", path, "error", err)
		}
		if t.freed != nil {
			// What is left after a failed removal was not freed.
			t.freed(before - diskUsage(path))
		}
	}()
}

// sweep empties what earlier runs left in the trash.
func (t *trash) sweep() {
	es, err := os.ReadDir(t.dir)
	if err != nil {
		return // none yet
	}
	for _, e := range es {
		t.empty(filepath.Join(t.dir, e.Name()))
	}
}
