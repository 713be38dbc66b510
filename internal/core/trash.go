package core

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// trash takes a removed container's directories out of the way with one
// rename each and deletes their files in the background. A writable layer
// can hold gigabytes; kubelet's container GC and pod deletion should not
// wait for the disk to free them (containerd leaves snapshots to its GC
// for the same reason). Each base (crid's root and state dirs, possibly
// on different filesystems, and a rename cannot cross one) has its own
// trash dir beside what it holds; what a crash leaves there is emptied at
// the next start. So shutdown does not wait for the deletions either.
type trash struct {
	log   *slog.Logger
	wg    sync.WaitGroup // deletions in flight (tests wait on it)
	bases []string       // absolute, cleaned
}

func newTrash(log *slog.Logger, bases ...string) *trash {
	t := &trash{log: log}
	for _, b := range bases {
		t.bases = append(t.bases, filepath.Clean(b))
	}
	return t
}

// dirOf is the trash dir for path: that of the base holding it.
func (t *trash) dirOf(path string) (string, bool) {
	for _, b := range t.bases {
		if rel, err := filepath.Rel(b, path); err == nil && rel != "." && filepath.IsLocal(rel) {
			return filepath.Join(b, "trash"), true
		}
	}
	return "", false
}

// discard moves dir into its base's trash and deletes it in the
// background; a dir that does not exist is already gone. A dir outside
// every base, or one the rename cannot move, is deleted right away.
func (t *trash) discard(dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	tdir, ok := t.dirOf(dir)
	if !ok {
		return os.RemoveAll(dir)
	}
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		return fmt.Errorf("trash dir: %w", err)
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	target := filepath.Join(tdir, filepath.Base(dir)+"-"+hex.EncodeToString(suffix[:]))
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
		if err := os.RemoveAll(path); err != nil {
			t.log.Warn("could not empty the trash", "path", path, "error", err)
		}
	}()
}

// sweep empties what earlier runs left in the trash dirs.
func (t *trash) sweep() {
	for _, b := range t.bases {
		es, err := os.ReadDir(filepath.Join(b, "trash"))
		if err != nil {
			continue // none yet
		}
		for _, e := range es {
			t.empty(filepath.Join(b, "trash", e.Name()))
		}
	}
}
